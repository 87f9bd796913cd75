"""The RDKit ETKDG baseline: conformers embedded by distance geometry, and an ensemble's torsions drawn against
theirs."""

from __future__ import annotations

__all__ = ["etkdg_conformers", "plot_torsions_against_etkdg"]

import os
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from molsamp.errors import InputError

if TYPE_CHECKING:
    from rdkit import Chem


def etkdg_conformers(molecule: Chem.Mol, n: int, seed: int = 0, minimise: bool = False) -> np.ndarray:
    """Positions ``[n, N, 3]`` (Å) of ``n`` RDKit ETKDG conformers of ``molecule`` (explicit hydrogens), optionally
    MMFF94-minimised. RDKit reads seed 0 as "the same conformer n times", so RDKit gets ``seed + 1``."""
    from rdkit import Chem
    from rdkit.Chem import AllChem

    mol = Chem.Mol(molecule)
    mol.RemoveAllConformers()
    ids = list(AllChem.EmbedMultipleConfs(mol, numConfs=n, randomSeed=seed + 1))
    if not ids:
        raise InputError(f"molecule {Chem.MolToSmiles(mol)!r}: RDKit ETKDG could not embed a conformer")
    if minimise:
        AllChem.MMFFOptimizeMoleculeConfs(mol)
    return np.stack([mol.GetConformer(i).GetPositions() for i in ids])


def plot_torsions_against_etkdg(ensemble: Chem.Mol, path: str | os.PathLike, seed: int = 0) -> Path:
    """Write a PNG of each heavy-atom rotatable torsion's distribution in ``ensemble`` (an RDKit Mol whose
    conformers carry ``molsamp_log_weight``, as :func:`~molsamp.conformers.generate` returns) against as many
    RDKit ETKDG conformers. :class:`InputError` if the molecule has no heavy-atom rotatable torsion."""
    from molsamp.analysis import compute_dihedrals, plot_torsion_marginals
    from molsamp.conformers.torsions import rotatable_torsions

    torsions = rotatable_torsions(ensemble)
    quads = torsions.atoms[torsions.heavy]
    if len(quads) == 0:
        raise InputError(f"molecule {ensemble.GetProp('_Name')!r} has no heavy-atom rotatable torsion to plot")
    conformers = ensemble.GetConformers()
    positions = np.stack([conformer.GetPositions() for conformer in conformers]) / 10.0
    log_weights = np.array([conformer.GetDoubleProp("molsamp_log_weight") if conformer.HasProp("molsamp_log_weight")
                            else 0.0 for conformer in conformers])
    reference = etkdg_conformers(ensemble, len(conformers), seed) / 10.0
    symbols = [atom.GetSymbol() for atom in ensemble.GetAtoms()]
    labels = ["-".join(f"{symbols[i]}{i}" for i in quad) for quad in quads.tolist()]
    return plot_torsion_marginals(compute_dihedrals(positions, quads), path,
                                  reference=compute_dihedrals(reference, quads), labels=labels,
                                  log_weights=log_weights, legend=("molsamp", "RDKit ETKDG"))
