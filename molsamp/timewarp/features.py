"""Per-atom input features of the Timewarp model, from a topology alone, so one model serves any peptide."""

from __future__ import annotations

__all__ = ["atom_features", "N_FEATURES", "ELEMENTS", "RESIDUES", "BACKBONE_NAMES"]

from typing import TYPE_CHECKING

import torch

if TYPE_CHECKING:
    import mdtraj

ELEMENTS = ("H", "C", "N", "O", "S")
RESIDUES = ("ACE", "NME", "ALA", "ARG", "ASN", "ASP", "CYS", "GLN", "GLU", "GLY", "HIS", "ILE", "LEU", "LYS", "MET",
            "PHE", "PRO", "SER", "THR", "TRP", "TYR", "VAL")
BACKBONE_NAMES = ("N", "H", "CA", "HA", "C", "O")
N_FEATURES = len(ELEMENTS) + 1 + len(RESIDUES) + 1 + len(BACKBONE_NAMES) + 1 + 1
"""One-hot element, residue and backbone atom name (each with an 'other' slot), plus the residue's position along
the chain (0 at the first residue, 1 at the last)."""


def atom_features(topology: mdtraj.Topology) -> torch.Tensor:
    """``[N, N_FEATURES]`` float features of every atom of ``topology``."""
    n_residues = max(topology.n_residues - 1, 1)
    rows = []
    for atom in topology.atoms:
        row = torch.zeros(N_FEATURES)
        symbol = atom.element.symbol if atom.element is not None else ""
        row[ELEMENTS.index(symbol) if symbol in ELEMENTS else len(ELEMENTS)] = 1
        offset = len(ELEMENTS) + 1
        name = atom.residue.name
        row[offset + (RESIDUES.index(name) if name in RESIDUES else len(RESIDUES))] = 1
        offset += len(RESIDUES) + 1
        backbone = atom.name if atom.residue.name not in ("ACE", "NME") else ""
        row[offset + (BACKBONE_NAMES.index(backbone) if backbone in BACKBONE_NAMES else len(BACKBONE_NAMES))] = 1
        row[-1] = atom.residue.index / n_residues
        rows.append(row)
    return torch.stack(rows)
