"""Molecular graphs for the torsion model: RDKit atoms and bonds as torch-geometric data."""

from __future__ import annotations

__all__ = ["ATOM_FEATURES", "BOND_FEATURES", "molecule_graph"]

from typing import TYPE_CHECKING

import torch

if TYPE_CHECKING:
    from rdkit import Chem
    from torch_geometric.data import Data

    from molsamp.conformers.torsions import Torsions

_ELEMENTS = (1, 6, 7, 8, 9, 15, 16, 17, 35, 53)
_HYBRIDISATIONS = ("SP", "SP2", "SP3")
ATOM_FEATURES = len(_ELEMENTS) + 1 + 6 + 3 + len(_HYBRIDISATIONS) + 1 + 2 + 1 + 4
"""Length of an atom's feature vector."""
BOND_FEATURES = 6
"""Length of a bond's feature vector: single, double, triple, aromatic, conjugated, in ring."""


def _one_hot(value, choices, other: bool = True) -> list[float]:
    hot = [float(value == c) for c in choices]
    return hot + [float(value not in choices)] if other else hot


def _atom_features(atom: Chem.Atom) -> list[float]:
    return (
        _one_hot(atom.GetAtomicNum(), _ELEMENTS)
        + _one_hot(min(atom.GetDegree(), 5), range(6), other=False)
        + _one_hot(atom.GetFormalCharge(), (-1, 0, 1), other=False)
        + _one_hot(str(atom.GetHybridization()), _HYBRIDISATIONS)
        + [float(atom.GetIsAromatic()), float(atom.IsInRing()), float(atom.IsInRingSize(5) or atom.IsInRingSize(6))]
        + _one_hot(min(atom.GetTotalNumHs(), 3), range(4), other=False)
    )


def _bond_features(bond: Chem.Bond) -> list[float]:
    kind = str(bond.GetBondType())
    return [float(kind == "SINGLE"), float(kind == "DOUBLE"), float(kind == "TRIPLE"), float(kind == "AROMATIC"),
            float(bond.GetIsConjugated()), float(bond.IsInRing())]


def molecule_graph(mol: Chem.Mol, torsions: Torsions) -> Data:
    """Graph of ``mol`` (explicit hydrogens) with its torsions: ``x [N, ATOM_FEATURES]``, ``edge_index [2, 2E]``,
    ``edge_attr [2E, BOND_FEATURES]`` (both directions) and ``torsion_index [4, T]`` (atom indices; laid out like
    ``edge_index`` so that torch-geometric batches offset and concatenate it the same way)."""
    from torch_geometric.data import Data

    x = torch.tensor([_atom_features(a) for a in mol.GetAtoms()], dtype=torch.float32)
    pairs, features = [], []
    for bond in mol.GetBonds():
        i, j, f = bond.GetBeginAtomIdx(), bond.GetEndAtomIdx(), _bond_features(bond)
        pairs += [(i, j), (j, i)]
        features += [f, f]
    edge_index = torch.tensor(pairs, dtype=torch.long).reshape(-1, 2).T.contiguous()
    edge_attr = torch.tensor(features, dtype=torch.float32).reshape(-1, BOND_FEATURES)
    torsion_index = torch.as_tensor(torsions.atoms, dtype=torch.long).reshape(-1, 4).T.contiguous()
    return Data(x=x, edge_index=edge_index, edge_attr=edge_attr, torsion_index=torsion_index)
