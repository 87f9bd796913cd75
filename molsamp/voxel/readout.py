"""Atoms and molecules out of voxel grids: peaks per element channel, sub-voxel refinement by fitting the grid's own
Gaussians, and bonds perceived from the 3D geometry (RDKit's xyz2mol, ``rdDetermineBonds``).

Reading a grid never raises for what the grid holds: an empty or all-noise grid gives no atoms, and atoms that make
no molecule give ``None``; the caller counts and skips them.
"""

from __future__ import annotations

__all__ = ["find_atoms", "molecule_from_atoms", "read_grid"]

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np
import torch

from molsamp.voxel.grids import VoxelGrid

if TYPE_CHECKING:
    from rdkit import Chem

MAX_ATOMS = 64
"""A grid with more peaks than this is noise, not a molecule (QM9 molecules have at most 29 atoms)."""


def find_atoms(density: torch.Tensor, grid: VoxelGrid, threshold: float = 0.25, refine_steps: int = 50
               ) -> tuple[torch.Tensor, torch.Tensor]:
    """Atoms of one molecule's grid ``density: [channels, size, size, size]``: channel indices ``[A]`` and positions
    ``[A, 3]`` (Å). Atoms are local maxima above ``threshold`` (atom heights are 1), placed at the peak of a
    parabola through the log-density of their neighbours along each axis, then moved together for
    ``refine_steps`` L-BFGS iterations to fit the grid by least squares (which undoes the pull of bonded
    neighbours). Returns empty tensors for a grid without peaks or with more than :data:`MAX_ATOMS`."""
    if density.shape != grid.shape:
        raise ValueError(f"a grid of shape {tuple(density.shape)} is not one of shape {grid.shape}")
    density = density.detach()
    pooled = torch.nn.functional.max_pool3d(density[None], 3, stride=1, padding=1)[0]
    peaks = (density >= pooled) & (density > threshold)
    peaks[:, [0, -1]] = peaks[:, :, [0, -1]] = peaks[:, :, :, [0, -1]] = False
    channel, *index = peaks.nonzero(as_tuple=True)
    if len(channel) == 0 or len(channel) > MAX_ATOMS:
        return channel[:0], density.new_zeros(0, 3)
    offsets = [_parabola_offset(density, channel, index, axis) for axis in range(3)]
    axis = grid.axis(density.device, density.dtype)
    positions = torch.stack([axis[i] + grid.resolution * o for i, o in zip(index, offsets)], -1)
    if refine_steps:
        positions = _fit(density, grid, channel, positions, refine_steps)
    return channel, positions


def _parabola_offset(density: torch.Tensor, channel: torch.Tensor, index: list, axis: int) -> torch.Tensor:
    """Sub-voxel offset (voxels, in [-0.5, 0.5]) of each peak along ``axis``: the vertex of the parabola through the
    log-densities at the peak and its two neighbours (exact for an isolated Gaussian)."""
    def log_density(shift: int) -> torch.Tensor:
        neighbour = [i + shift if a == axis else i for a, i in enumerate(index)]
        return torch.log(density[(channel, *neighbour)].clamp(min=1e-12))

    below, centre, above = log_density(-1), log_density(0), log_density(1)
    curvature = below - 2 * centre + above
    offset = 0.5 * (below - above) / torch.where(curvature < 0, curvature, -torch.ones_like(curvature))
    return offset.clamp(-0.5, 0.5)


def _fit(density: torch.Tensor, grid: VoxelGrid, channel: torch.Tensor, positions: torch.Tensor, steps: int
         ) -> torch.Tensor:
    """Positions that minimise the squared difference between the atoms' grid and ``density`` (L-BFGS)."""
    positions = positions.clone().requires_grad_()
    optimizer = torch.optim.LBFGS([positions], max_iter=steps, line_search_fn="strong_wolfe")

    def loss():
        optimizer.zero_grad()
        value = ((grid.voxelize(channel[None], positions[None])[0] - density) ** 2).sum()
        value.backward()
        return value

    with torch.enable_grad():
        optimizer.step(loss)
    return positions.detach()


def molecule_from_atoms(elements: Sequence[str], positions: np.ndarray) -> Chem.Mol | None:
    """The largest connected fragment of atoms ``elements`` at ``positions: [A, 3]`` (Å) as a neutral, sanitised
    RDKit molecule (hydrogens explicit, one conformer in Å), bonds from distances and bond orders from valences
    (RDKit's xyz2mol, ``rdDetermineBonds``); None when there are no atoms or no neutral assignment of bond orders
    exists (radicals, missing or extra hydrogens)."""
    from rdkit import Chem, RDLogger
    from rdkit.Chem import rdDetermineBonds
    from rdkit.Geometry import Point3D

    if len(elements) == 0:
        return None
    mol = Chem.RWMol()
    conformer = Chem.Conformer(len(elements))
    for i, (element, xyz) in enumerate(zip(elements, np.asarray(positions, dtype=float))):
        mol.AddAtom(Chem.Atom(element))
        conformer.SetAtomPosition(i, Point3D(*xyz))
    mol.AddConformer(conformer)
    RDLogger.DisableLog("rdApp.*")
    try:
        rdDetermineBonds.DetermineConnectivity(mol)
        fragments = Chem.GetMolFrags(mol, asMols=True, sanitizeFrags=False)
        largest = Chem.RWMol(max(fragments, key=lambda fragment: fragment.GetNumAtoms()))
        rdDetermineBonds.DetermineBondOrders(largest, charge=0, allowChargedFragments=False)
        Chem.SanitizeMol(largest)
    except (ValueError, RuntimeError):
        return None
    finally:
        RDLogger.EnableLog("rdApp.*")
    if any(atom.GetNumRadicalElectrons() for atom in largest.GetAtoms()):
        return None
    return largest.GetMol()


def read_grid(density: torch.Tensor, grid: VoxelGrid, threshold: float = 0.25
              ) -> tuple[list[str], np.ndarray, Chem.Mol | None]:
    """Everything one grid ``[channels, size, size, size]`` holds: the element symbols and positions ``[A, 3]`` (Å)
    of its atoms (:func:`find_atoms`) and the molecule they make (:func:`molecule_from_atoms`, None if none)."""
    channel, positions = find_atoms(density, grid, threshold)
    elements = [grid.elements[c] for c in channel.tolist()]
    positions = positions.cpu().numpy()
    return elements, positions, molecule_from_atoms(elements, positions)
