"""Sets of small molecules with 3D coordinates, stored flat: the training and test molecules of the voxel models.

A :class:`MoleculeSet` is one ``.npz`` file: atomic numbers and positions (Å) of all atoms back to back, the offset
of each molecule's first atom, and each molecule's canonical SMILES (bonds perceived from its geometry, no stereo).
"""

from __future__ import annotations

__all__ = ["MoleculeSet"]

import dataclasses
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from molsamp.errors import InputError
from molsamp.voxel.grids import VoxelGrid, pad_molecules


@dataclasses.dataclass(frozen=True)
class MoleculeSet:
    """Molecules ``i`` = atoms ``offsets[i]:offsets[i + 1]`` of ``atomic_numbers: [atoms]`` and ``positions:
    [atoms, 3]`` (Å), with ``smiles: [molecules]``."""

    atomic_numbers: np.ndarray
    positions: np.ndarray
    offsets: np.ndarray
    smiles: np.ndarray

    def __len__(self) -> int:
        return len(self.offsets) - 1

    def molecule(self, i: int) -> tuple[list[str], np.ndarray]:
        """Element symbols and positions ``[A, 3]`` (Å) of molecule ``i``."""
        from rdkit import Chem

        atoms = slice(self.offsets[i], self.offsets[i + 1])
        table = Chem.GetPeriodicTable()
        return [table.GetElementSymbol(int(z)) for z in self.atomic_numbers[atoms]], self.positions[atoms]

    def batch(self, indices: Sequence[int], grid: VoxelGrid, dtype: torch.dtype = torch.float32,
              device: torch.device | str | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Padded channel indices ``[B, A]`` (-1 = none) and positions ``[B, A, 3]`` (Å) of the molecules
        ``indices``, for :meth:`VoxelGrid.voxelize`."""
        molecules = []
        for i in indices:
            symbols, positions = self.molecule(int(i))
            molecules.append(([grid.channel(s) for s in symbols], positions))
        return pad_molecules(molecules, dtype, device)

    def save(self, path: str | Path) -> None:
        """Write the set as a compressed ``.npz`` (atomically)."""
        from molsamp.files import atomic_path

        with atomic_path(Path(path)) as temporary:
            with open(temporary, "wb") as handle:
                np.savez_compressed(handle, **dataclasses.asdict(self))

    @classmethod
    def load(cls, path: str | Path) -> MoleculeSet:
        """The set written by :meth:`save`; :class:`InputError` if ``path`` is not one."""
        try:
            with np.load(path) as data:
                return cls(**{field.name: data[field.name] for field in dataclasses.fields(cls)})
        except (OSError, KeyError, ValueError) as error:
            raise InputError(f"{str(path)!r} is not a molecule set (.npz with atomic_numbers, positions, offsets, "
                             f"smiles): {error}") from error

    @classmethod
    def from_molecules(cls, molecules: Sequence[tuple[Sequence[int], np.ndarray]], smiles: Sequence[str]
                       ) -> MoleculeSet:
        """A set from (atomic numbers, positions ``[A, 3]`` Å) pairs and their SMILES."""
        sizes = [len(numbers) for numbers, _ in molecules]
        return cls(np.concatenate([np.asarray(n, dtype=np.int8) for n, _ in molecules]),
                   np.concatenate([np.asarray(x, dtype=np.float32) for _, x in molecules]),
                   np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64), np.asarray(smiles, dtype=str))
