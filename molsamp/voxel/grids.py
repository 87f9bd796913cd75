"""Molecules as voxel grids: one density channel per element, each atom a Gaussian of fixed width on a cubic grid
centred on the origin (VoxMol's representation, Pinheiro et al. 2023).

A batch of molecules is two padded tensors: ``types: [B, A]`` (channel index of each atom, -1 for padding) and
``positions: [B, A, 3]`` (Å). A Gaussian factorises over the three axes, so :meth:`VoxelGrid.voxelize` costs
B x A x 3 x size one-dimensional Gaussians and one contraction, on any torch device.
"""

from __future__ import annotations

__all__ = ["VoxelGrid", "pad_molecules", "augment"]

import dataclasses
import math
from collections.abc import Sequence

import numpy as np
import torch

from molsamp.errors import InputError


@dataclasses.dataclass(frozen=True)
class VoxelGrid:
    """A cubic grid of ``size``^3 voxels ``resolution`` Å apart, centred on the origin, with one channel per element
    of ``elements``; an atom is a Gaussian of standard deviation ``sigma`` (Å) and height 1 at its centre.

    The defaults keep VoxMol's QM9 channels (C, H, O, N, F) on a coarser grid, for a CPU: 24^3 voxels of 0.4 Å (a
    9.6 Å box that holds whole molecules; VoxMol: 32^3 of 0.25 Å, an 8 Å box that crops larger molecules), 2.4 times
    fewer voxels. Atoms are wider than VoxMol's (sigma 0.45 Å; its kernel exp(-d^2 / (0.93 r)^2), r = 0.5 Å, is
    sigma 0.329 Å), so that an atom still covers several voxels: the signal-to-noise ratio of an atom in noise s
    grows as (sigma / resolution)^(3/2) / s, and with VoxMol's atoms on 0.4 Å voxels it halves (a first denoiser
    trained so at s = 0.9 was still at the trivial loss of predicting an empty grid after 600 steps). Much wider
    atoms would merge the two carbons of a C-C triple bond (1.20 Å) into one peak: at 0.45 Å they are 2.7 sigma
    apart. Densities of atoms of one element add (VoxMol: 1 - prod(1 - rho)).
    """

    size: int = 24
    resolution: float = 0.4
    elements: tuple[str, ...] = ("C", "H", "O", "N", "F")
    sigma: float = 0.45

    @property
    def length(self) -> float:
        """Edge of the grid (Å)."""
        return self.size * self.resolution

    @property
    def shape(self) -> tuple[int, int, int, int]:
        """Shape of one molecule's grid: (channels, size, size, size)."""
        return (len(self.elements), self.size, self.size, self.size)

    def axis(self, device: torch.device | str | None = None, dtype: torch.dtype = torch.float32) -> torch.Tensor:
        """Coordinates of the voxel centres along one axis, ``[size]`` (Å)."""
        index = torch.arange(self.size, device=device, dtype=dtype)
        return (index - (self.size - 1) / 2) * self.resolution

    def channel(self, element: str) -> int:
        """The channel of an element symbol; :class:`InputError` for an element the grid does not hold."""
        if element not in self.elements:
            raise InputError(f"element {element!r} has no channel in this grid (it holds {', '.join(self.elements)})")
        return self.elements.index(element)

    def fits(self, positions: np.ndarray | torch.Tensor, shift: float = 0.0) -> bool:
        """Whether a molecule ``positions: [A, 3]`` (Å, centred) keeps every atom at least one voxel inside the grid
        in any orientation and after a shift of up to ``shift`` Å along each axis."""
        radius = float(np.linalg.norm(np.asarray(positions), axis=-1).max()) if len(positions) else 0.0
        return radius + math.sqrt(3) * shift <= self.length / 2 - self.resolution

    def voxelize(self, types: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
        """Density grids ``[B, channels, size, size, size]`` of molecules ``types: [B, A]`` (channel, -1 = none)
        at ``positions: [B, A, 3]`` (Å); differentiable with respect to the positions."""
        if types.shape != positions.shape[:2] or positions.shape[-1] != 3:
            raise InputError(f"types {tuple(types.shape)} and positions {tuple(positions.shape)} do not describe "
                             "the same [B, A] atoms in 3D")
        if bool((types >= len(self.elements)).any()):
            raise InputError(f"an atom type is >= the grid's {len(self.elements)} channels")
        axis = self.axis(positions.device, positions.dtype)
        profiles = torch.exp(-(positions[..., None] - axis) ** 2 / (2 * self.sigma**2))  # [B, A, 3, size]
        present = types >= 0
        one_hot = torch.nn.functional.one_hot(types.clamp(min=0), len(self.elements)).to(positions.dtype)
        one_hot = one_hot * present[..., None]
        x, y, z = profiles.unbind(2)
        return torch.einsum("bac,bai,baj,bak->bcijk", one_hot, x, y, z)


def pad_molecules(molecules: Sequence[tuple[Sequence[int], np.ndarray]], dtype: torch.dtype = torch.float32,
                  device: torch.device | str | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Padded ``types: [B, A]`` (-1 = none) and ``positions: [B, A, 3]`` (Å) from (channels, positions) pairs."""
    width = max((len(types) for types, _ in molecules), default=0)
    types = torch.full((len(molecules), width), -1, dtype=torch.long)
    positions = torch.zeros(len(molecules), width, 3, dtype=dtype)
    for row, (channels, xyz) in enumerate(molecules):
        types[row, :len(channels)] = torch.as_tensor(np.asarray(channels), dtype=torch.long)
        positions[row, :len(channels)] = torch.as_tensor(np.asarray(xyz), dtype=dtype)
    return types.to(device), positions.to(device)


def augment(types: torch.Tensor, positions: torch.Tensor, shift: float, generator: torch.Generator | None = None
            ) -> torch.Tensor:
    """Positions ``[B, A, 3]`` (Å) centred on each molecule's centroid, turned by a uniform random rotation and
    moved by a uniform random shift in [-shift, shift] Å along each axis (data augmentation)."""
    from molsamp.flows.rigid_bodies import random_rotations

    present = (types >= 0)[..., None].to(positions.dtype)
    centroid = (positions * present).sum(1, keepdim=True) / present.sum(1, keepdim=True).clamp(min=1)
    rotation = random_rotations(len(positions), generator, positions.dtype).to(positions.device)
    offset = (2 * torch.rand(len(positions), 1, 3, generator=generator, dtype=positions.dtype) - 1) * shift
    moved = torch.einsum("bij,baj->bai", rotation, positions - centroid) + offset.to(positions.device)
    return moved * present

