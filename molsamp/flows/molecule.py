"""What an E(3)-equivariant flow needs to know about a molecule: which atoms are identical (exchanged by a symmetry of
the bond graph) and which mirror image is the molecule.

The flow's density q is invariant under reflections (its prior is, and its field is E(3)-equivariant), so it puts
equal mass on a configuration and its mirror image, the enantiomer. :class:`Handedness` folds it onto the molecule's
own stereoisomer: a draw x whose stereocentres are all inverted relative to the reference structure is mirrored,
x -> -x. The folded density is exactly 2 q(x) on the configurations of the right handedness at every centre, 0 on the
all-inverted ones, and q(x) on mixed ones (another diastereomer, which the target gives zero weight), so importance
weights stay exact.
"""

from __future__ import annotations

__all__ = ["atom_classes", "Handedness", "StereoisomerTarget"]

import math

import mdtraj
import numpy as np
import torch


def _graph_molecule(topology: mdtraj.Topology):
    """An RDKit molecule with the elements and bonds of ``topology`` (all bonds single: only the graph counts)."""
    from rdkit import Chem

    molecule = Chem.RWMol()
    for atom in topology.atoms:
        molecule.AddAtom(Chem.Atom(atom.element.symbol))
    for a, b in topology.bonds:
        molecule.AddBond(a.index, b.index, Chem.BondType.SINGLE)
    molecule.UpdatePropertyCache(strict=False)
    Chem.FastFindRings(molecule)
    return molecule


def atom_classes(topology: mdtraj.Topology) -> list[int]:
    """The symmetry class ``[N]`` (0, 1, ...) of each atom: atoms of one class are exchanged by an automorphism of
    the bond graph with its elements (the three hydrogens of a methyl group), so exchanging them changes neither the
    molecule nor a force field's energy. Raises ValueError for a topology without bonds."""
    from rdkit import Chem

    if topology.n_bonds == 0:
        raise ValueError("the topology has no bonds: atom classes need the bond graph")
    ranks = list(Chem.CanonicalRankAtoms(_graph_molecule(topology), breakTies=False, includeChirality=False))
    renumber = {rank: k for k, rank in enumerate(sorted(set(ranks)))}
    return [renumber[rank] for rank in ranks]


class Handedness:
    """The handedness of a molecule's stereocentres in a reference structure, and the fold of a reflection-invariant
    flow onto it.

    A stereocentre is an atom with four bonded neighbours in four different :func:`atom_classes` (the alpha carbon of
    an L-amino acid); its handedness in a configuration is the sign of the triple product of the bonds to its first
    three neighbours.

    Args:
        topology: the molecule's atoms and bonds.
        reference: positions ``[N, 3]`` of the molecule's own stereoisomer.
    """

    def __init__(self, topology: mdtraj.Topology, reference: np.ndarray) -> None:
        classes = atom_classes(topology)
        neighbours: list[list[int]] = [[] for _ in range(topology.n_atoms)]
        for a, b in topology.bonds:
            neighbours[a.index].append(b.index)
            neighbours[b.index].append(a.index)
        self.centres = [(atom, tuple(sorted(bonded)[:3])) for atom, bonded in enumerate(neighbours)
                        if len(bonded) == 4 and len({classes[n] for n in bonded}) == 4]
        self.reference = self.signs(torch.as_tensor(np.asarray(reference), dtype=torch.float64)[None])[0]

    def signs(self, x: torch.Tensor) -> torch.Tensor:
        """``[B, C]``: +1 or -1, the handedness of each stereocentre in ``x: [B, N, 3]``."""
        if not self.centres:
            return torch.ones(len(x), 0, dtype=x.dtype, device=x.device)
        centre = torch.as_tensor([c for c, _ in self.centres], device=x.device)
        bonded = torch.as_tensor([n for _, n in self.centres], device=x.device)
        bonds = x[:, bonded] - x[:, centre, None]  # [B, C, 3, 3]
        return torch.sign(torch.linalg.det(bonds))

    def matches(self, x: torch.Tensor) -> torch.Tensor:
        """``[B]`` bool: every stereocentre of ``x: [B, N, 3]`` has the reference's handedness."""
        return (self.signs(x) == self.reference.to(x)).all(1)

    def fold(self, x: torch.Tensor, log_q: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Draws ``x: [B, N, 3]`` of a reflection-invariant density with log-densities ``log_q: [B]``, mirrored where
        every stereocentre is inverted, with the log-densities of the folded distribution (see the module). Without
        stereocentres, unchanged."""
        if not self.centres:
            return x, log_q
        inverted = (self.signs(x) == -self.reference.to(x)).all(1)
        x = torch.where(inverted[:, None, None], -x, x)
        return x, log_q + math.log(2.0) * self.matches(x).to(log_q)


class StereoisomerTarget:
    """``target`` restricted to the stereoisomer of ``handedness``: the same reduced energy on configurations with
    the reference's handedness at every stereocentre, +inf elsewhere (the other stereoisomers are other molecules)."""

    def __init__(self, target, handedness: Handedness) -> None:
        self.target, self.handedness = target, handedness
        self.event_shape, self.kT = target.event_shape, target.kT

    def energy(self, x: torch.Tensor) -> torch.Tensor:
        u = self.target.energy(x)
        return torch.where(self.handedness.matches(x).to(u.device), u, torch.full_like(u, math.inf))
