"""Training pairs (x(t), x(t + tau)) from MD trajectories, and the random rotations that teach the model rotation
equivariance."""

from __future__ import annotations

__all__ = ["TransitionPairs", "pairs_from_trajectory", "pairs_from_md", "superpose"]

import dataclasses
import os

import numpy as np
import torch

from molsamp.errors import InputError


@dataclasses.dataclass(frozen=True)
class TransitionPairs:
    """Pairs of one peptide: ``x0[i]`` and ``x1[i]`` (``[P, N, 3]``, nm) are ``tau`` ps apart on one trajectory;
    ``features`` ``[N, F]`` describe its atoms."""

    name: str
    features: torch.Tensor
    x0: torch.Tensor
    x1: torch.Tensor
    tau: float

    def __len__(self) -> int:
        return len(self.x0)


def superpose(mobile: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
    """``mobile`` ``[B, N, 3]`` rotated and translated onto ``reference`` (least-squares, Kabsch; no reflection)."""
    mobile_centre, reference_centre = mobile.mean(1, keepdim=True), reference.mean(1, keepdim=True)
    a, b = mobile - mobile_centre, reference - reference_centre
    u, _, vt = torch.linalg.svd(a.transpose(1, 2) @ b)
    sign = torch.sign(torch.linalg.det(u @ vt))
    u = torch.cat([u[..., :2], u[..., 2:] * sign[:, None, None]], -1)
    return a @ (u @ vt) + reference_centre


def pairs_from_trajectory(name: str, xyz: np.ndarray, features: torch.Tensor, frame_interval: float, tau: float,
                          stride: int = 1) -> TransitionPairs:
    """Every ``stride``-th frame paired with the frame ``tau`` ps later, from frames ``frame_interval`` ps apart.

    The later frame is superposed on the earlier one: the energy does not depend on where the peptide is or how it
    is turned, so the proposal need not learn the overall diffusion (about 2 nm in 100 ps in implicit water), only
    the change of shape. Metropolis-Hastings stays exact for any proposal density."""
    lag = int(round(tau / frame_interval))
    if lag < 1 or abs(lag * frame_interval - tau) > 1e-6 * tau:
        raise InputError(f"tau {tau} ps is not a whole number of frame intervals ({frame_interval} ps)")
    if len(xyz) <= lag:
        raise InputError(f"{name}: {len(xyz)} frames are too few for tau = {tau} ps ({lag} frames)")
    x = torch.as_tensor(np.asarray(xyz), dtype=torch.float32)
    start = torch.arange(0, len(x) - lag, stride)
    return TransitionPairs(name, features.float(), x[start], superpose(x[start + lag], x[start]), tau)


def pairs_from_md(system: str, trajectory: str | os.PathLike, tau: float, stride: int = 1) -> TransitionPairs:
    """Pairs from an MD trajectory (written by :func:`molsamp.md.run_md`) of the built-in or peptide ``system``."""
    from molsamp.trajectories import load_trajectory
    from molsamp.systems import load
    from molsamp.timewarp.features import atom_features

    topology = load(system).topology
    traj, _ = load_trajectory(trajectory, top=topology)
    if traj.n_atoms != topology.n_atoms:
        raise InputError(f"trajectory {str(trajectory)!r} has {traj.n_atoms} atoms, system {system!r} has "
                         f"{topology.n_atoms}")
    interval = float(traj.time[1] - traj.time[0]) if traj.n_frames > 1 else 1.0
    return pairs_from_trajectory(system, traj.xyz, atom_features(topology), interval, tau, stride)
