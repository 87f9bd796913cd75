"""Quality of generated molecules, as in the EDM and VoxMol evaluations on QM9.

- Atom and molecule stability (Hoogeboom et al. 2022, ``qm9/bond_analyze.py``): each atom pair gets a bond order
  from its distance alone (single below the tabulated single-bond length + 10 pm, double below double + 5 pm,
  triple below triple + 3 pm); an atom is stable when its bond orders add up to its valence (H 1, C 4, N 3, O 2,
  F 1), a molecule when all its atoms are.
- Validity: the read-out molecule's largest fragment gets neutral bond orders and sanitises in RDKit
  (:func:`~molsamp.voxel.readout.molecule_from_atoms`); uniqueness: distinct canonical SMILES among the valid; novelty: valid SMILES not in the training set.
"""

from __future__ import annotations

__all__ = ["VALENCE", "bond_order", "stable_atoms", "quality_report"]

from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from rdkit import Chem

VALENCE = {"H": 1, "C": 4, "N": 3, "O": 2, "F": 1}
"""Valence of each element in EDM's stability check."""

_SINGLE = {("H", "H"): 74, ("H", "C"): 109, ("H", "N"): 101, ("H", "O"): 96, ("H", "F"): 92, ("C", "C"): 154,
           ("C", "N"): 147, ("C", "O"): 143, ("C", "F"): 135, ("N", "N"): 145, ("N", "O"): 140, ("N", "F"): 136,
           ("O", "O"): 148, ("O", "F"): 142, ("F", "F"): 142}
_DOUBLE = {("C", "C"): 134, ("C", "N"): 129, ("C", "O"): 120, ("N", "N"): 125, ("N", "O"): 121, ("O", "O"): 121}
_TRIPLE = {("C", "C"): 120, ("C", "N"): 116, ("C", "O"): 113, ("N", "N"): 110}
_MARGINS = (10, 5, 3)
"""EDM's bond lengths (pm) and margins (pm) for single, double and triple bonds."""


def _length(table: dict, a: str, b: str) -> float | None:
    return table.get((a, b), table.get((b, a)))


def bond_order(a: str, b: str, distance: float) -> int:
    """EDM's bond order (0-3) between elements ``a`` and ``b`` at ``distance`` (Å)."""
    picometres = 100 * distance
    order = 0
    for value, (table, margin) in enumerate(zip((_SINGLE, _DOUBLE, _TRIPLE), _MARGINS), start=1):
        length = _length(table, a, b)
        if length is None or picometres >= length + margin:
            break
        order = value
    return order


def stable_atoms(elements: Sequence[str], positions: np.ndarray) -> np.ndarray:
    """Which atoms ``[A]`` (bool) of a molecule (``positions: [A, 3]``, Å) have bond orders adding up to their
    valence (an element without a valence, or a pair without a tabulated length, is never stable)."""
    positions = np.asarray(positions, dtype=float)
    distances = np.linalg.norm(positions[:, None] - positions[None], axis=-1)
    total = np.zeros(len(elements), dtype=int)
    for i in range(len(elements)):
        for j in range(i + 1, len(elements)):
            if _length(_SINGLE, elements[i], elements[j]) is not None:
                order = bond_order(elements[i], elements[j], distances[i, j])
                total[i] += order
                total[j] += order
    return np.array([VALENCE.get(e, -1) == t for e, t in zip(elements, total)], dtype=bool)


def quality_report(atoms: Sequence[tuple[Sequence[str], np.ndarray]], molecules: Sequence[Chem.Mol | None],
                   training_smiles: Iterable[str] = ()) -> dict:
    """Atom stability, molecule stability, validity, uniqueness and novelty (fractions) of generated molecules:
    ``atoms`` the (elements, positions Å) read from each grid (empty for a grid with no atoms), ``molecules`` the
    largest fragments read from them (None where none was perceived). Fractions of all generated grids except uniqueness (of the
    valid) and novelty (of the unique valid); ``unreadable`` counts grids that gave no molecule."""
    from rdkit import Chem

    n = len(atoms)
    stable = [stable_atoms(e, x) for e, x in atoms]
    n_atoms = sum(len(s) for s in stable)
    valid = [Chem.MolToSmiles(Chem.RemoveHs(m), isomericSmiles=False) for m in molecules if m is not None]
    unique = set(valid)
    known = set(training_smiles)
    return {"n": n, "atom_stability": sum(int(s.sum()) for s in stable) / max(n_atoms, 1),
            "molecule_stability": sum(bool(len(s) and s.all()) for s in stable) / max(n, 1),
            "validity": len(valid) / max(n, 1), "uniqueness": len(unique) / max(len(valid), 1),
            "novelty": len(unique - known) / max(len(unique), 1) if known else None,
            "unreadable": sum(m is None for m in molecules)}
