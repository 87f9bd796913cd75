"""Rigid molecules as rigid bodies: one reference point (nm) and one unit quaternion per molecule, to and from atom
positions, with the molecule's geometry kept exactly.

A unit quaternion q = (w, x, y, z) rotates the molecule's body-frame coordinates into the lab frame; q and -q are
the same rotation (the unit sphere S^3 covers SO(3) twice), so a density over orientations is a density over S^3
that is the same at q and -q. :func:`matrix_to_quaternion` returns the representative with w >= 0.
"""

from __future__ import annotations

__all__ = ["quaternion_to_matrix", "matrix_to_quaternion", "check_unit_quaternions", "RigidBodies"]

import torch

from molsamp.errors import InputError


def check_unit_quaternions(q: torch.Tensor, atol: float = 1e-6) -> None:
    """:class:`InputError` unless every quaternion of ``q: [..., 4]`` has norm 1 to ``atol``."""
    if q.shape[-1] != 4:
        raise InputError(f"quaternions have shape {tuple(q.shape)}; the last axis must hold 4 numbers (w, x, y, z)")
    error = (q.norm(dim=-1) - 1).abs()
    if bool((error > atol).any()):
        raise InputError(f"quaternions must have norm 1: one is off by {float(error.max()):.3g} "
                         "(normalise them first)")


def quaternion_to_matrix(q: torch.Tensor) -> torch.Tensor:
    """Rotation matrices ``[..., 3, 3]`` of unit quaternions ``q: [..., 4]`` (w, x, y, z); R(q) = R(-q)."""
    w, x, y, z = q.unbind(-1)
    rows = [1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y),
            2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x),
            2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)]
    return torch.stack(rows, -1).reshape(*q.shape[:-1], 3, 3)


def matrix_to_quaternion(rotation: torch.Tensor) -> torch.Tensor:
    """Unit quaternions ``[..., 4]`` with w >= 0 of rotation matrices ``[..., 3, 3]``: the unit eigenvector of the
    largest eigenvalue of Bar-Itzhack's symmetric 4 x 4 matrix, accurate for every rotation (no division by a small
    trace)."""
    r = rotation
    k = torch.stack([
        torch.stack([r[..., 0, 0] + r[..., 1, 1] + r[..., 2, 2], r[..., 2, 1] - r[..., 1, 2],
                     r[..., 0, 2] - r[..., 2, 0], r[..., 1, 0] - r[..., 0, 1]], -1),
        torch.stack([r[..., 2, 1] - r[..., 1, 2], r[..., 0, 0] - r[..., 1, 1] - r[..., 2, 2],
                     r[..., 0, 1] + r[..., 1, 0], r[..., 0, 2] + r[..., 2, 0]], -1),
        torch.stack([r[..., 0, 2] - r[..., 2, 0], r[..., 0, 1] + r[..., 1, 0],
                     r[..., 1, 1] - r[..., 0, 0] - r[..., 2, 2], r[..., 1, 2] + r[..., 2, 1]], -1),
        torch.stack([r[..., 1, 0] - r[..., 0, 1], r[..., 0, 2] + r[..., 2, 0], r[..., 1, 2] + r[..., 2, 1],
                     r[..., 2, 2] - r[..., 0, 0] - r[..., 1, 1]], -1),
    ], -2) / 3
    q = torch.linalg.eigh(k).eigenvectors[..., -1]
    return torch.where(q[..., :1] < 0, -q, q)


class RigidBodies:
    """M copies of one rigid molecule of A atoms: reference points ``[B, M, 3]`` and unit quaternions ``[B, M, 4]``
    to atom positions ``[B, M * A, 3]`` (molecule by molecule, atoms in the body's order), and back.

    Args:
        body: the molecule's atom coordinates ``[A, 3]`` (nm) in its body frame, the reference point at the origin.
    """

    def __init__(self, body: torch.Tensor) -> None:
        body = torch.as_tensor(body)
        if body.ndim != 2 or body.shape[1] != 3 or len(body) < 3:
            raise InputError(f"a rigid body needs at least 3 atoms in 3D, got coordinates of shape {tuple(body.shape)}")
        self.body = body

    def atoms(self, centres: torch.Tensor, quaternions: torch.Tensor) -> torch.Tensor:
        """Atom positions ``[B, M * A, 3]`` of molecules at ``centres: [B, M, 3]`` turned by unit ``quaternions:
        [B, M, 4]``."""
        check_unit_quaternions(quaternions)
        rotated = torch.einsum("bmij,aj->bmai", quaternion_to_matrix(quaternions), self.body.to(quaternions))
        return (centres[:, :, None, :] + rotated).flatten(1, 2)

    def bodies(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Reference points ``[B, M, 3]`` and quaternions (w >= 0) ``[B, M, 4]`` of atom positions ``x: [B, M * A,
        3]``: the best rigid fit of the body to each molecule (Kabsch), exact when the molecules are rigid copies
        of the body."""
        n_atoms = len(self.body)
        if x.shape[1] % n_atoms:
            raise InputError(f"{x.shape[1]} atoms are not whole molecules of {n_atoms} atoms")
        molecules = x.reshape(len(x), -1, n_atoms, 3)
        body = self.body.to(x)
        body_mean = body.mean(0)
        mean = molecules.mean(2)
        covariance = torch.einsum("bmai,aj->bmij", molecules - mean[:, :, None], body - body_mean)
        u, _, vt = torch.linalg.svd(covariance)
        sign = torch.sign(torch.linalg.det(u @ vt))  # a proper rotation, never a reflection
        flip = torch.ones_like(covariance[..., 0])
        flip[..., 2] = sign
        rotation = u @ torch.diag_embed(flip) @ vt
        centres = mean - torch.einsum("bmij,j->bmi", rotation, body_mean)
        return centres, matrix_to_quaternion(rotation)
