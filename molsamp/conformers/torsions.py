"""Rotatable torsions of a molecule and conformers made by setting them on a base geometry."""

from __future__ import annotations

__all__ = ["Torsions", "rotatable_torsions", "peptide_torsions", "PEPTIDE_TORSIONS", "set_torsions", "rotate_torsion"]

import dataclasses
import math
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np
import torch

from molsamp.analysis import compute_dihedrals

if TYPE_CHECKING:
    import mdtraj
    from rdkit import Chem

PEPTIDE_TORSIONS = ("phi", "psi", "chi1", "chi2", "chi3", "chi4")
"""The peptide torsions mdtraj names: backbone phi and psi, side-chain chi1 to chi4."""


@dataclasses.dataclass(frozen=True)
class Torsions:
    """The rotatable torsions of a molecule.

    Attributes:
        atoms: ``[T, 4]`` atom indices (i, j, k, l) of each torsion; the bond j-k rotates.
        moving: for each torsion, the indices of the atoms on the k side of its bond (those that move with it).
        heavy: ``[T]`` True where all four atoms are heavy atoms (the torsions usually compared between ensembles).
        symmetry: ``[T]`` rotational symmetry number of each torsion: turning it by 2 pi / symmetry maps the molecule
            onto itself (2 for a phenyl ring flip, 3 for a tert-butyl, 6 for both ends; 1 for most), so its
            Boltzmann marginal has that period (see :func:`molsamp.analysis.fold_torsions`).
    """

    atoms: np.ndarray
    moving: tuple[np.ndarray, ...]
    heavy: np.ndarray
    symmetry: np.ndarray

    def __len__(self) -> int:
        return len(self.atoms)


def _priority(atom: Chem.Atom) -> tuple:
    """Order of preference for the outer atoms i and l: heavy first, then heavier, then lower index."""
    return (atom.GetAtomicNum() == 1, -atom.GetAtomicNum(), atom.GetIdx())


def _is_symmetric_rotor(atom: Chem.Atom, exclude: int) -> bool:
    """True for a centre whose other neighbours are three identical terminal atoms (CH3, CF3, NH3+)."""
    others = [n for n in atom.GetNeighbors() if n.GetIdx() != exclude]
    return len(others) == 3 and all(n.GetDegree() == 1 for n in others) and len({n.GetAtomicNum() for n in others}) == 1


def _end_symmetry(atom: Chem.Atom, exclude: int, ranks: list[int]) -> int:
    """2 for a planar (sp2) end whose two other neighbours are equivalent, 3 for an sp3 end with three; else 1."""
    from rdkit import Chem

    others = {ranks[n.GetIdx()] for n in atom.GetNeighbors() if n.GetIdx() != exclude}
    count, hybridisation = atom.GetDegree() - 1, atom.GetHybridization()
    planar = hybridisation == Chem.HybridizationType.SP2 or atom.GetIsAromatic()
    if len(others) == 1 and ((count == 2 and planar) or (count == 3 and hybridisation == Chem.HybridizationType.SP3)):
        return count
    return 1


def _side(neighbours: Sequence[Sequence[int]], j: int, k: int) -> np.ndarray:
    """Atoms reachable from k without crossing the bond j-k (``neighbours[a]``: the atoms bonded to a); it holds j
    when the bond is in a ring."""
    seen, frontier = {k}, [k]
    while frontier:
        atom = frontier.pop()
        for index in neighbours[atom]:
            if index not in seen and not (atom == k and index == j):
                seen.add(index)
                frontier.append(index)
    return np.array(sorted(seen))


def rotatable_torsions(mol: Chem.Mol) -> Torsions:
    """Torsions about the rotatable bonds of ``mol`` (with explicit hydrogens).

    A bond is rotatable when it is a single bond outside rings, both of its atoms have other neighbours, neither is
    linear (sp), and neither end is a symmetric rotor (methyl, CF3, NH3+) whose rotation changes nothing. Polar
    hydrogens (OH, SH, NH) count: their torsions use the hydrogen as the outer atom. Amide bonds count too.
    """
    from rdkit import Chem

    ranks = list(Chem.CanonicalRankAtoms(mol, breakTies=False))
    neighbours = [[n.GetIdx() for n in atom.GetNeighbors()] for atom in mol.GetAtoms()]
    atoms, moving, heavy, symmetry = [], [], [], []
    for bond in mol.GetBonds():
        if bond.GetBondType() != Chem.BondType.SINGLE or bond.IsInRing():
            continue
        begin, end = bond.GetBeginAtom(), bond.GetEndAtom()
        if min(begin.GetDegree(), end.GetDegree()) < 2:
            continue
        if Chem.HybridizationType.SP in (begin.GetHybridization(), end.GetHybridization()):
            continue
        if _is_symmetric_rotor(begin, end.GetIdx()) or _is_symmetric_rotor(end, begin.GetIdx()):
            continue
        j, k = begin.GetIdx(), end.GetIdx()
        side_k, side_j = _side(neighbours, j, k), _side(neighbours, k, j)
        if len(side_k) > len(side_j):  # move the smaller side
            j, k, side_k = k, j, side_j
        i = min((n for n in mol.GetAtomWithIdx(j).GetNeighbors() if n.GetIdx() != k), key=_priority).GetIdx()
        l = min((n for n in mol.GetAtomWithIdx(k).GetNeighbors() if n.GetIdx() != j), key=_priority).GetIdx()
        atoms.append((i, j, k, l))
        moving.append(side_k)
        heavy.append(all(mol.GetAtomWithIdx(a).GetAtomicNum() > 1 for a in (i, j, k, l)))
        symmetry.append(math.lcm(_end_symmetry(begin, end.GetIdx(), ranks), _end_symmetry(end, begin.GetIdx(), ranks)))
    return Torsions(np.array(atoms, dtype=np.int64).reshape(-1, 4), tuple(moving), np.array(heavy, dtype=bool),
                    np.array(symmetry, dtype=np.int64))


def peptide_torsions(topology: mdtraj.Topology, kinds: Sequence[str] = PEPTIDE_TORSIONS) -> Torsions:
    """The ``kinds`` of torsions of a peptide (see :data:`PEPTIDE_TORSIONS`), with mdtraj's atom quadruples, in
    that order and residue by residue; each turns the atoms on its k side. Torsions about ring bonds (proline's phi
    and chi) cannot turn and are left out."""
    from mdtraj.geometry import dihedral

    unknown = set(kinds) - set(PEPTIDE_TORSIONS)
    if unknown:
        raise ValueError(f"unknown peptide torsions {sorted(unknown)}; known: {', '.join(PEPTIDE_TORSIONS)}")
    neighbours = [[] for _ in range(topology.n_atoms)]
    for a, b in topology.bonds:
        neighbours[a.index].append(b.index)
        neighbours[b.index].append(a.index)
    atoms, moving = [], []
    for kind in kinds:
        for quad in np.asarray(getattr(dihedral, f"indices_{kind}")(topology), dtype=np.int64).reshape(-1, 4):
            side = _side(neighbours, int(quad[1]), int(quad[2]))
            if quad[1] not in side:
                atoms.append(quad)
                moving.append(side)
    heavy = np.array([all(topology.atom(int(a)).element.symbol != "H" for a in quad) for quad in atoms], dtype=bool)
    return Torsions(np.array(atoms, dtype=np.int64).reshape(-1, 4), tuple(moving), heavy,
                    np.ones(len(atoms), dtype=np.int64))


def _rotate(x: torch.Tensor, origin: torch.Tensor, axis: torch.Tensor, angle: torch.Tensor) -> torch.Tensor:
    """Rotate points ``x: [B, M, 3]`` by ``angle: [B]`` (rad) about ``axis: [B, 3]`` through ``origin: [B, 3]``."""
    u = axis / axis.norm(dim=-1, keepdim=True)
    v = x - origin[:, None]
    cos, sin = torch.cos(angle)[:, None, None], torch.sin(angle)[:, None, None]
    u = u[:, None].expand_as(v)
    rotated = v * cos + torch.cross(u, v, dim=-1) * sin + u * (u * v).sum(-1, keepdim=True) * (1 - cos)
    return rotated + origin[:, None]


def set_torsions(positions: torch.Tensor, torsions: Torsions, angles: torch.Tensor) -> torch.Tensor:
    """Conformers ``[B, N, 3]`` with the torsions set to ``angles: [B, T]`` (rad), bond lengths and angles kept.

    ``positions`` is the base geometry ``[N, 3]`` or a batch ``[B, N, 3]`` (nm). Each torsion's k side is rotated
    rigidly about its bond; setting one torsion leaves the others unchanged, so the order does not matter.
    """
    angles = torch.as_tensor(angles, dtype=positions.dtype, device=positions.device)
    x = positions.expand(len(angles), *positions.shape[-2:]).clone()
    for t, quad in enumerate(torsions.atoms):
        x = rotate_torsion(x, torsions, t, angles[:, t] - compute_dihedrals(x, quad[None])[:, 0])
    return x


def rotate_torsion(positions: torch.Tensor, torsions: Torsions, t: int, angle: torch.Tensor) -> torch.Tensor:
    """Conformers ``[B, N, 3]`` with torsion ``t`` turned by ``angle: [B]`` (rad): its k side rotated rigidly about
    its bond (a volume-preserving map that keeps every bond length and angle)."""
    j, k = int(torsions.atoms[t][1]), int(torsions.atoms[t][2])
    side = torch.as_tensor(torsions.moving[t], device=positions.device)
    x = positions.clone()
    x[:, side] = _rotate(x[:, side], x[:, k], x[:, k] - x[:, j], angle)
    return x
