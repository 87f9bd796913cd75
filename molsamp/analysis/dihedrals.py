"""Dihedral (torsion) angles of batched positions, differentiable, in the sign convention of mdtraj."""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from molsamp.analysis._tensor import as_tensor
from molsamp.errors import InputError

__all__ = ["compute_dihedrals", "backbone_dihedral_indices", "fold_torsions"]


def compute_dihedrals(x, indices, device: torch.device | str | None = None) -> Tensor:
    """Dihedral angles of atom quadruples.

    Parameters
    ----------
    x : array or Tensor, shape=(B, N, 3)
        Positions in nm. Floating tensors keep their dtype and device; anything else becomes float64.
    indices : array, shape=(M, 4), dtype=int
        Atom indices (i, j, k, l) of each dihedral, rotation about the bond j-k.
    device : torch.device, optional
        Where to compute; default: the device of ``x`` (CPU for numpy input).

    Returns
    -------
    angles : Tensor, shape=(B, M)
        Radians in (-pi, pi], equal to ``mdtraj.compute_dihedrals`` (without periodic images).
        Computed as atan2, so gradients are finite for every non-degenerate geometry.

    Examples
    --------
    >>> x = torch.tensor([[[1.0, 0, 0], [0, 0, 0], [0, 0, 1], [0, 1, 1]]], dtype=torch.float64)
    >>> compute_dihedrals(x, [[0, 1, 2, 3]])
    tensor([[1.5708]], dtype=torch.float64)
    """
    x = as_tensor(x, device, "x")
    if x.ndim != 3 or x.shape[-1] != 3:
        raise InputError(f"x has shape {tuple(x.shape)}; expected (B, N, 3) positions in nm")
    index = torch.as_tensor(np.asarray(indices), device=x.device)
    if index.numel() == 0:
        return x.new_zeros(x.shape[0], 0)
    if index.ndim != 2 or index.shape[1] != 4 or index.is_floating_point():
        raise InputError(f"indices has shape {tuple(index.shape)}; expected (M, 4) integer atom indices")
    if index.min() < 0 or index.max() >= x.shape[1]:
        raise InputError(f"indices must lie in [0, {x.shape[1]}) for {x.shape[1]} atoms")

    p = x[:, index.long()]  # [B, M, 4, 3]
    b1 = p[..., 1, :] - p[..., 0, :]
    b2 = p[..., 2, :] - p[..., 1, :]
    b3 = p[..., 3, :] - p[..., 2, :]
    c1 = torch.linalg.cross(b2, b3, dim=-1)
    c2 = torch.linalg.cross(b1, b2, dim=-1)
    sine = (b1 * c1).sum(-1) * torch.linalg.vector_norm(b2, dim=-1)
    cosine = (c1 * c2).sum(-1)
    return torch.atan2(sine, cosine)


def backbone_dihedral_indices(topology) -> dict[str, np.ndarray]:
    """Atom quadruples of the protein backbone torsions phi and psi.

    Parameters
    ----------
    topology : mdtraj.Topology
        Atoms named as in PDB/Amber residue templates (N, CA, C).

    Returns
    -------
    indices : dict
        ``"phi"`` (C[i-1], N, CA, C) and ``"psi"`` (N, CA, C, N[i+1]), each an int array of
        shape (M, 4), selected by mdtraj's own ``indices_phi``/``indices_psi``; (0, 4) when absent.
    """
    from mdtraj.geometry.dihedral import indices_phi, indices_psi

    return {
        "phi": np.asarray(indices_phi(topology), dtype=np.int64).reshape(-1, 4),
        "psi": np.asarray(indices_psi(topology), dtype=np.int64).reshape(-1, 4),
    }


def fold_torsions(angles, symmetry) -> np.ndarray:
    """Torsion angles ``[B, T]`` (rad) of rotors with rotational symmetry numbers ``[T]`` mapped to one period and
    stretched over (-pi, pi]: the angle of exp(i n theta). Angles that differ by a symmetry turn (a phenyl ring
    flip) become equal, so ensembles that differ only by such turns have the same folded histograms."""
    angles, symmetry = np.asarray(angles, dtype=np.float64), np.asarray(symmetry)
    if angles.shape[-1:] != symmetry.shape:
        raise InputError(f"{angles.shape[-1]} torsions but {symmetry.size} symmetry numbers")
    return np.angle(np.exp(1j * symmetry * angles))
