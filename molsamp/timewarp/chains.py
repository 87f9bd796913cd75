"""Parallel Timewarp chains on a peptide: checkpointed, resumable, written as one mdtraj trajectory."""

from __future__ import annotations

__all__ = ["DEFAULT_MODEL", "run_chains", "load_chains", "chain_topology", "chain_phi_psi", "chain_ess",
           "capped_ess", "write_chain_summary"]

import io
import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch

from molsamp.shipped import MODELS_DIR
from molsamp.timewarp.features import atom_features
from molsamp.timewarp.model import TimewarpFlow
from molsamp.kernels import ChainState, MetropolisHastings
from molsamp.timewarp.sampler import Exploration, TimewarpDistribution, TimewarpProposal

if TYPE_CHECKING:
    import mdtraj

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


def chain_topology(topology: mdtraj.Topology, n_chains: int) -> mdtraj.Topology:
    """``n_chains`` copies of ``topology`` in one topology: chain c's atoms come c-th."""
    joined = topology.copy()
    for _ in range(n_chains - 1):
        joined = joined.join(topology)
    return joined


def run_chains(system: System, model: TimewarpFlow, output: str | os.PathLike, n_steps: int, n_chains: int = 16,
               seed: int = 0, exploration: float | None = None, n_workers: int | None = None,
               platform: str | None = None, checkpoint_every: int = 100, progress: bool | None = None,
               overwrite: bool = False, plot: bool = False) -> dict:
    """``n_chains`` chains of ``n_steps`` Metropolis-Hastings steps with the flow as proposal, exact for the
    Boltzmann distribution of ``system`` (OpenMM energies through :class:`~molsamp.targets.OpenMMTarget`).

    ``exploration`` = a threshold (kT) replaces Metropolis-Hastings by accepting every proposal whose energy rises
    by less than it: fast discovery of states, BIASED, labelled so in the summary. ``output`` (.h5) gets one frame
    per step holding every chain (see :func:`load_chains`); ``<output>.json`` gets the summary
    (:func:`write_chain_summary`: acceptance, wall time, phi/psi ESS, Ramachandran populations; ``plot`` adds a PNG).
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


def write_chain_summary(summary: dict, topology: mdtraj.Topology, plot: bool = False) -> dict:
    """``summary`` of a chain run (with its ``trajectory``, ``n_chains``, ``system``, ``sampler`` and
    ``wall_time_s``) completed from the chains and written to ``<trajectory>.json``: the pooled phi/psi ESS
    (:func:`chain_ess`, of the first residue with both, ``topology`` being one chain's), ESS per second of sampling
    wall time (the smaller of the two; every session of a resumed run counts), the Ramachandran populations and,
    with ``plot``, the path of a Ramachandran plot written as ``<trajectory stem>.png``."""
    from molsamp.analysis import plot_ramachandran, ramachandran_populations
    from molsamp.files import atomic_write

    trajectory = Path(summary["trajectory"])
    angles = chain_phi_psi(load_chains(trajectory, summary["n_chains"]), topology)
    phi, psi = angles[..., 0].ravel(), angles[..., 1].ravel()
    ess = chain_ess(angles)
    summary = {**summary, "ess_phi_psi": ess.tolist(), "ess_per_s": float(ess.min()) / summary["wall_time_s"],
               "populations": ramachandran_populations(phi, psi)}
    if plot:
        path = plot_ramachandran(phi, psi, trajectory.with_suffix(".png"),
                                 title=f"{summary['system']}: {summary['sampler']}")
        summary["plot"] = str(path)
    atomic_write(Path(str(trajectory) + ".json"), json.dumps(summary, indent=1) + "\n")
    return summary


def load_chains(path: str | os.PathLike, n_chains: int) -> np.ndarray:
    """Positions ``[steps, chains, atoms, 3]`` (nm) of a trajectory written by :func:`run_chains`."""
    import mdtraj

    xyz = mdtraj.load(str(path)).xyz
    return xyz.reshape(len(xyz), n_chains, -1, 3)


def chain_phi_psi(xyz: np.ndarray, topology: mdtraj.Topology) -> np.ndarray:
    """phi and psi (rad) of the first residue that has both, ``[steps, chains, 2]``, from :func:`load_chains`
    positions and the topology of one chain."""
    from molsamp.analysis import backbone_dihedral_indices, compute_dihedrals

    indices = backbone_dihedral_indices(topology)
    quads = np.stack([indices["phi"][0], indices["psi"][0]])
    steps, chains = xyz.shape[:2]
    angles = compute_dihedrals(xyz.reshape(steps * chains, -1, 3), quads).numpy()
    return angles.reshape(steps, chains, 2)


def capped_ess(series_ess: Callable[[np.ndarray], float], values: np.ndarray) -> float:
    """Sum over the chains of ``values [T, C, ...]`` of ``series_ess(chain)``, each at most the number of moves the
    chain made (0 for a chain that never moved: the start all chains share is not a draw from the target), where
    the autocorrelation of a chain that barely moved says little. For per-chain estimators such as Timewarp's TICA
    ESS; :func:`chain_ess` pools the chains instead."""
    return float(sum(min(series_ess(values[:, c]), n) for c, n in enumerate(_chain_moves(values)) if n > 0))


def _chain_moves(values: np.ndarray) -> np.ndarray:
    """How many times each chain of ``values [T, C, ...]`` changed state ``[C]``."""
    steps = np.diff(values, axis=0).reshape(len(values) - 1, values.shape[1], -1)
    return np.any(steps != 0, axis=2).sum(0)


def chain_ess(angles: np.ndarray) -> np.ndarray:
    """Effective sample size of phi and psi ``[2]`` of chains ``angles [T, C, 2]``: the chains that moved pooled as
    Stan pools them (sine and cosine, see :func:`~molsamp.analysis.torsion_ess`), so chains that sit in different
    states count as few samples; at most the number of moves those chains made (0 if none moved: the start all
    chains share is not a draw from the target)."""
    from molsamp.analysis import torsion_ess

    moves = _chain_moves(angles)
    if not moves.any():
        return np.zeros(angles.shape[2])
    pooled = torsion_ess(np.ascontiguousarray(angles[:, moves > 0].transpose(1, 0, 2))).numpy()
    return np.minimum(pooled, moves.sum())
