"""Parallel chains of MD with torsion jumps on a peptide: checkpointed, resumable, written like the Timewarp chains.

Each round of every chain runs ``md_steps`` of OpenMM Langevin MD, then offers each backbone and side-chain torsion
(phi, psi, chi1-chi4; :func:`~molsamp.conformers.torsions.peptide_torsions`) a jump to a uniformly drawn angle,
accepted by Metropolis-Hastings on the full energy (the sampler of :mod:`molsamp.conformers.md_jumps`). A jump turns
one side of the bond rigidly, a volume-preserving map, so the chains sample the Boltzmann distribution of every
coordinate, up to the integrator's time-step error that plain MD shares. The jumps cross the Ramachandran barriers
(alpha_R to beta, and to alpha_L) that MD crosses every tens of ps to ns. Nothing here is learned: a flat proposal
over each torsion, the defensive end of the conformer sampler's model-plus-flat blend.
"""

from __future__ import annotations

__all__ = ["run_jump_chains"]

import io
import os
from typing import TYPE_CHECKING

import numpy as np
import torch

from molsamp.conformers.md_jumps import TorsionJumpChain
from molsamp.conformers.model import TorsionMixture
from molsamp.conformers.torsions import peptide_torsions
from molsamp.errors import InputError

if TYPE_CHECKING:
    from molsamp.systems import System


class _JumpChainsEngine:
    """One step = one round of every chain (``md_steps`` of MD, then a jump offer per torsion)."""

    def __init__(self, system: System, n_chains: int, md_steps: int, burn_in: int, seed: int, platform: str,
                 state: bytes | None) -> None:
        torsions = peptide_torsions(system.topology)
        proposal = TorsionMixture.uniform(len(torsions))
        self.n_torsions = len(torsions)
        self.target = system.target(n_workers=0, platform=platform)
        self.chains = [TorsionJumpChain(system, torsions, proposal, seed + c, platform, md_steps, self.target)
                       for c in range(n_chains)]
        if state is None:
            for chain in self.chains:
                chain.start()
                for _ in range(burn_in):
                    chain.round()
                chain.reset_counts()
        else:
            for chain, saved in zip(self.chains, torch.load(io.BytesIO(state), weights_only=True)):
                chain.load_state(saved)

    def step(self, n: int) -> None:
        for _ in range(n):
            for chain in self.chains:
                chain.round()

    def observe(self) -> tuple[np.ndarray, float]:
        """Every chain's positions (nm) in one frame and their mean potential energy (kJ/mol)."""
        positions = torch.cat([chain.state.x[0] for chain in self.chains]).numpy()
        return positions, float(torch.cat([chain.state.u for chain in self.chains]).mean()) * self.target.kT

    def save_state(self) -> bytes:
        buffer = io.BytesIO()
        torch.save([chain.save_state() for chain in self.chains], buffer)
        return buffer.getvalue()

    @property
    def acceptance(self) -> list[float]:
        return [chain.accepted / max(chain.offered, 1) for chain in self.chains]


def run_jump_chains(system: System, output: str | os.PathLike, n_rounds: int, n_chains: int = 16,
                    md_steps: int = 50, burn_in: int = 10, seed: int = 0, platform: str | None = None,
                    checkpoint_every: int = 100, progress: bool | None = None, overwrite: bool = False,
                    plot: bool = False) -> dict:
    """``n_chains`` chains of ``n_rounds`` rounds of MD with torsion jumps (after ``burn_in`` rounds each from a
    start resampled among uniformly drawn torsions), exact for the Boltzmann distribution of ``system``.

    ``output`` (.h5) gets one frame per round holding every chain (read it with
    :func:`molsamp.chains.load_chains`); ``<output>.json`` gets the summary
    (:func:`~molsamp.chains.write_chain_summary`: jump acceptance, wall time, phi/psi ESS, Ramachandran
    populations; ``plot`` adds a PNG). An interrupted run resumes from ``<output>.partial`` when called again with the
    same settings; Ctrl-C checkpoints and raises :class:`~molsamp.resumable.RunInterrupted`.
    """
    from molsamp.resumable import run_resumable
    from molsamp.openmm_pool import select_platform
    from molsamp.chains import chain_topology, write_chain_summary

    if system.openmm_system is None:
        raise InputError(f"system {system.name!r} has no OpenMM system: MD with torsion jumps needs one")
    if min(n_rounds, n_chains, md_steps) < 1 or burn_in < 0:
        raise InputError(f"need n_rounds, n_chains, md_steps >= 1 and burn_in >= 0; got {n_rounds}, {n_chains}, "
                         f"{md_steps}, {burn_in}")
    platform = select_platform(platform, system.openmm_system)
    meta = {"system": system.name, "n_atoms": system.n_atoms, "n_chains": n_chains, "seed": int(seed),
            "md_steps": md_steps, "burn_in": burn_in, "platform": platform, "sampler": "torsion-jumps"}
    engines: list[_JumpChainsEngine] = []

    def make_engine(state: bytes | None) -> _JumpChainsEngine:
        engines.append(_JumpChainsEngine(system, n_chains, md_steps, burn_in, seed, platform, state))
        return engines[-1]

    run = run_resumable(make_engine, output, n_rounds, 1, md_steps * system.timestep,
                        chain_topology(system.topology, n_chains), meta, checkpoint_every=checkpoint_every,
                        progress=progress, overwrite=overwrite, rate_unit="rounds/s")
    engine = engines[-1]
    engine.target.close()
    acceptance = engine.acceptance
    summary = {"system": system.name, "sampler": "MD + torsion jumps (MH)", "n_chains": n_chains,
               "n_steps": n_rounds, "md_steps": md_steps, "seed": seed,
               "torsions": engine.n_torsions, "acceptance": float(np.mean(acceptance)),
               "acceptance_per_chain": acceptance, "wall_time_s": run.wall_time_s, "trajectory": str(output)}
    return write_chain_summary(summary, system.topology, plot)
