"""Parallel chains written as one trajectory (frame t holds every chain's state after step t): the combined
topology, reading them back, their pooled phi/psi effective sample size, and the summary JSON of a run. Used by the
peptide torsion-jump chains (:mod:`molsamp.peptide_jumps`) and the Timewarp chains (:mod:`molsamp.timewarp.chains`).
"""

from __future__ import annotations

__all__ = ["chain_topology", "load_chains", "chain_phi_psi", "chain_ess", "capped_ess", "write_chain_summary"]

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import mdtraj


def chain_topology(topology: mdtraj.Topology, n_chains: int) -> mdtraj.Topology:
    """``n_chains`` copies of ``topology`` in one topology: chain c's atoms come c-th."""
    joined = topology.copy()
    for _ in range(n_chains - 1):
        joined = joined.join(topology)
    return joined


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
    """Positions ``[steps, chains, atoms, 3]`` (nm) of a trajectory of ``n_chains`` chains per frame."""
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
