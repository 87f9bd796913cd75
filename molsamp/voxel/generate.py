"""3D molecules from a trained denoiser: walk-jump chains over voxel grids, then read-out of each jump.

Chains start as VoxMol's do (each voxel N(0, sigma^2) + U(0, 1)) and each gives ``ceil(n / chains)`` molecules,
one per jump. A grid that holds no molecule is kept as ``None`` and counted, never an error.
"""

from __future__ import annotations

__all__ = ["GeneratedMolecules", "generate"]

import dataclasses
import math
import os
import time
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch

from molsamp.voxel.readout import read_grid
from molsamp.voxel.training import Denoiser
from molsamp.voxel.walk_jump import walk_jump

if TYPE_CHECKING:
    from rdkit import Chem


@dataclasses.dataclass
class GeneratedMolecules:
    """What :func:`generate` made: the atoms read from each grid (element symbols, positions ``[A, 3]`` Å; empty
    for an empty grid), the molecule perceived from them (its largest fragment, None where none), and the wall
    time (s) of sampling and read-out."""

    atoms: list[tuple[list[str], np.ndarray]]
    molecules: list[Chem.Mol | None]
    seconds: float

    def report(self, training_smiles: Iterable[str] = ()) -> dict:
        """:func:`~molsamp.voxel.metrics.quality_report` plus ``seconds_per_molecule``."""
        from molsamp.voxel.metrics import quality_report

        return quality_report(self.atoms, self.molecules, training_smiles) | {
            "seconds_per_molecule": self.seconds / max(len(self.atoms), 1)}

    def relax(self, forcefield: str = "gaff2", solvent: str = "obc2", progress: bool | None = None) -> dict:
        """Minimise every molecule read in the project's force field (:func:`~molsamp.voxel.relax.relax`), in
        place: each relaxed molecule carries ``energy_kj_mol`` and ``relax_rmsd_angstrom`` (properties written to
        the SDF). Returns the median energy and RMSD and the count of molecules that could not be parametrised
        (kept unrelaxed)."""
        import sys

        from tqdm import tqdm

        from molsamp.errors import MolsampError
        from molsamp.voxel.relax import relax

        energies, moved, failed = [], [], 0
        show = sys.stderr.isatty() if progress is None else progress
        for index, molecule in enumerate(tqdm(self.molecules, desc="relaxing", disable=not show)):
            if molecule is None:
                continue
            try:
                relaxed, energy, rmsd = relax(molecule, forcefield, solvent)
            except (MolsampError, RuntimeError):
                failed += 1
                continue
            relaxed.SetDoubleProp("energy_kj_mol", energy)
            relaxed.SetDoubleProp("relax_rmsd_angstrom", rmsd)
            self.molecules[index] = relaxed
            energies.append(energy)
            moved.append(rmsd)
        return {"relaxed": len(energies), "relax_failed": failed,
                "median_energy_kj_mol": float(np.median(energies)) if energies else None,
                "median_relax_rmsd_angstrom": float(np.median(moved)) if moved else None}

    def write_sdf(self, path: str | os.PathLike) -> int:
        """Write the molecules that were read (hydrogens explicit, Å) to an SDF, each named by its grid's index and
        carrying its SMILES; returns how many were written."""
        from rdkit import Chem

        from molsamp.conformers.io import write_sdf

        records = []
        for index, molecule in enumerate(self.molecules):
            if molecule is not None:
                record = Chem.Mol(molecule)
                record.SetProp("_Name", f"generated-{index}")
                record.SetProp("smiles", Chem.MolToSmiles(Chem.RemoveHs(molecule), isomericSmiles=False))
                records.append(record)
        write_sdf(records, Path(path))
        return len(records)


def generate(denoiser: Denoiser, n: int, measurements: int = 1, walk_steps: int = 100, chains: int = 25,
             step_size: float = 0.5, friction: float = 1.0, threshold: float = 0.25, seed: int = 0,
             device: torch.device | str | None = None, progress: bool | None = None) -> GeneratedMolecules:
    """``n`` molecules from ``chains`` parallel walk-jump chains on ``denoiser``'s smoothed density, with
    ``measurements`` measurements (at most the number it was trained for) and ``walk_steps`` walk steps per
    measurement between jumps (see :func:`~molsamp.voxel.walk_jump.walk_jump`); atoms are read out above
    ``threshold`` (VoxMol's 0.25; :func:`~molsamp.voxel.readout.find_atoms`)."""
    from molsamp.errors import InputError

    if not 1 <= measurements <= denoiser.measurements:
        raise InputError(f"measurements must be between 1 and {denoiser.measurements} (what the denoiser was "
                         f"trained for), got {measurements}")
    if n < 1 or chains < 1:
        raise InputError(f"n and chains must be positive, got n={n}, chains={chains}")
    device = torch.device(device or "cpu")
    denoiser = denoiser.to(device).eval()
    grid, sigma = denoiser.grid, denoiser.sigma
    generator = torch.Generator().manual_seed(seed)
    chains = min(chains, n)
    shape = (chains, *grid.shape)
    start = sigma * torch.randn(shape, generator=generator) + torch.rand(shape, generator=generator)
    began = time.perf_counter()
    grids = walk_jump(denoiser, start.to(device), sigma, measurements, walk_steps, math.ceil(n / chains),
                      step_size, friction, generator, progress)
    grids = grids.reshape(-1, *grid.shape)[:n].cpu()
    atoms, molecules = [], []
    for density in grids:
        elements, positions, molecule = read_grid(density, grid, threshold)
        atoms.append((elements, positions))
        molecules.append(molecule)
    return GeneratedMolecules(atoms, molecules, time.perf_counter() - began)
