"""Parallel Timewarp chains on a peptide: checkpointed, resumable, written as one mdtraj trajectory
(:mod:`molsamp.chains`)."""

from __future__ import annotations

__all__ = ["DEFAULT_MODEL", "run_chains"]

import io
import os
from typing import TYPE_CHECKING

import numpy as np
import torch

from molsamp.shipped import MODELS_DIR
from molsamp.timewarp.features import atom_features
from molsamp.timewarp.model import TimewarpFlow
from molsamp.chains import chain_topology, write_chain_summary
from molsamp.kernels import ChainState, MetropolisHastings
from molsamp.timewarp.sampler import Exploration, TimewarpDistribution, TimewarpProposal

if TYPE_CHECKING:
    from molsamp.systems import System
    from molsamp.targets import OpenMMTarget


DEFAULT_MODEL = MODELS_DIR / "timewarp-peptides.pt"
"""The shipped pretrained checkpoint (see its model card beside it)."""


class _ChainEngine:
    """One frame = one step of every chain: Metropolis-Hastings with the flow (or the biased exploration filter)."""

    def __init__(self, system: System, model: TimewarpFlow, target: OpenMMTarget, n_chains: int, seed: int,
                 exploration: float | None, state: bytes | None) -> None:
        self.target = target
        distribution = TimewarpDistribution(model.double().eval(), atom_features(system.topology).double())
        self.kernel = (MetropolisHastings(TimewarpProposal(distribution), target) if exploration is None
                       else Exploration(distribution, target, exploration))
        self.generator = torch.Generator().manual_seed(seed)
        if state is None:
            x = torch.as_tensor(system.positions, dtype=torch.float64).expand(n_chains, -1, -1).clone()
            self.state = ChainState.start(x, target)
            self.accepted = torch.zeros(n_chains, dtype=torch.long)
            self.steps = 0
        else:
            saved = torch.load(io.BytesIO(state), weights_only=True)
            self.state = ChainState(saved["x"], saved["u"])
            self.accepted, self.steps = saved["accepted"], saved["steps"]
            self.generator.set_state(saved["rng"])

    def step(self, n: int) -> None:
        for _ in range(n):
            self.state = self.kernel.step(self.state, self.generator)
            self.accepted += self.kernel.last_accepted.long()
            self.steps += 1

    def observe(self) -> tuple[np.ndarray, float]:
        return self.state.x.reshape(-1, 3).numpy(), float(self.state.u.mean()) * self.target.kT

    def save_state(self) -> bytes:
        buffer = io.BytesIO()
        torch.save({"x": self.state.x, "u": self.state.u, "accepted": self.accepted, "steps": self.steps,
                    "rng": self.generator.get_state()}, buffer)
        return buffer.getvalue()


def run_chains(system: System, model: TimewarpFlow, output: str | os.PathLike, n_steps: int, n_chains: int = 16,
               seed: int = 0, exploration: float | None = None, n_workers: int | None = None,
               platform: str | None = None, checkpoint_every: int = 100, progress: bool | None = None,
               overwrite: bool = False, plot: bool = False) -> dict:
    """``n_chains`` chains of ``n_steps`` Metropolis-Hastings steps with the flow as proposal, exact for the
    Boltzmann distribution of ``system`` (OpenMM energies through :class:`~molsamp.targets.OpenMMTarget`).

    ``exploration`` = a threshold (kT) replaces Metropolis-Hastings by accepting every proposal whose energy rises
    by less than it: fast discovery of states, BIASED, labelled so in the summary. ``output`` (.h5) gets one frame
    per step holding every chain (see :func:`~molsamp.chains.load_chains`); ``<output>.json`` gets the summary
    (:func:`~molsamp.chains.write_chain_summary`: acceptance, wall time, phi/psi ESS, Ramachandran populations; ``plot`` adds a PNG).
    An interrupted run resumes from ``<output>.partial`` when called again with the same settings; Ctrl-C
    checkpoints and raises :class:`~molsamp.resumable.RunInterrupted`.
    """
    from molsamp.errors import InputError
    from molsamp.resumable import run_resumable

    if system.openmm_system is None or system.openmm_system.getNumConstraints() > 0:
        raise InputError(f"system {system.name!r}: Timewarp chains need an OpenMM system without constraints (a "
                         "constrained bond has no energy term, so Metropolis-Hastings would let it drift); load it "
                         "with constraints=None")
    meta = {"system": system.name, "n_atoms": system.n_atoms, "n_chains": n_chains, "seed": int(seed),
            "exploration": exploration, "model": model.config, "sampler": "timewarp"}
    engines: list[_ChainEngine] = []
    with system.target(n_workers=n_workers, platform=platform) as target:
        def make_engine(state: bytes | None) -> _ChainEngine:
            engines.append(_ChainEngine(system, model, target, n_chains, seed, exploration, state))
            return engines[-1]

        run = run_resumable(make_engine, output, n_steps, 1, 1.0, chain_topology(system.topology, n_chains), meta,
                            checkpoint_every=checkpoint_every, progress=progress, overwrite=overwrite,
                            rate_unit="steps/s")
    engine = engines[-1]
    summary = {"system": system.name, "sampler": "timewarp exploration (BIASED)" if exploration else "timewarp MH",
               "n_chains": n_chains, "n_steps": n_steps, "seed": seed,
               "acceptance": float(engine.accepted.sum()) / max(engine.steps * n_chains, 1),
               "acceptance_per_chain": (engine.accepted.double() / max(engine.steps, 1)).tolist(),
               "wall_time_s": run.wall_time_s, "trajectory": str(output)}
    return write_chain_summary(summary, system.topology, plot)
