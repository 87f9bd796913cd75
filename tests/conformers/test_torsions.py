"""Rotatable torsions: which bonds count, and conformers made by setting torsions keep bond lengths and angles."""

import math

import numpy as np
import pytest
import torch
from rdkit import Chem
from rdkit.Chem import AllChem

from molsamp.analysis import compute_dihedrals
from molsamp.conformers import rotatable_torsions, set_torsions
from molsamp.conformers.torsions import peptide_torsions, rotate_torsion
from molsamp.systems import load

IBUPROFEN = "CC(C)Cc1ccc(cc1)C(C)C(=O)O"


def with_hydrogens(smiles):
    return Chem.AddHs(Chem.MolFromSmiles(smiles))


def symbols(molecule, quad):
    return [molecule.GetAtomWithIdx(int(a)).GetSymbol() for a in quad]


def embedded(smiles, seed=7):
    """Molecule with explicit hydrogens and its RDKit ETKDG geometry in nm (no force field needed)."""
    molecule = with_hydrogens(smiles)
    assert AllChem.EmbedMolecule(molecule, randomSeed=seed) == 0
    return molecule, torch.as_tensor(molecule.GetConformer().GetPositions() / 10.0, dtype=torch.float64)


def wrapped(difference):
    return torch.remainder(difference + math.pi, 2 * math.pi) - math.pi


def test_butane_has_one_heavy_torsion_and_no_methyl_rotors():
    torsions = rotatable_torsions(with_hydrogens("CCCC"))
    assert len(torsions) == 1
    assert torsions.atoms.tolist() == [[0, 1, 2, 3]]
    assert torsions.heavy.tolist() == [True]
    assert len(torsions.moving[0]) == 7  # C2, C3 and their five hydrogens


def test_ethanol_hydroxyl_torsion_uses_the_hydrogen():
    molecule = with_hydrogens("CCO")
    torsions = rotatable_torsions(molecule)
    assert len(torsions) == 1
    assert symbols(molecule, torsions.atoms[0]) == ["C", "C", "O", "H"]
    assert torsions.heavy.tolist() == [False]
    assert symbols(molecule, torsions.moving[0]) == ["O", "H"]  # the smaller side moves


def test_ibuprofen_has_four_heavy_torsions_and_the_acid_hydroxyl():
    molecule = with_hydrogens(IBUPROFEN)
    torsions = rotatable_torsions(molecule)
    assert len(torsions) == 5 and torsions.heavy.sum() == 4
    (acid,) = torsions.atoms[~torsions.heavy]
    assert symbols(molecule, acid) == ["O", "C", "O", "H"]
    for quad in torsions.atoms:
        assert not molecule.GetBondBetweenAtoms(int(quad[1]), int(quad[2])).IsInRing()


@pytest.mark.parametrize("smiles, expected", [
    ("FC(F)(F)CCC", 1),  # the CF3 and CH3 rotors are excluded, the middle C-C bond is not
    ("CC(F)(F)F", 0),
    ("C1CCCCC1", 0),  # ring bonds
    ("c1ccccc1CC", 1),  # the ring-CH2 bond
    ("CCCC#CCCC", 2),  # the two CH2-CH2 bonds; nothing about the C-C#C-C axis
    ("CC", 0),
])
def test_excluded_bonds(smiles, expected):
    molecule = with_hydrogens(smiles)
    torsions = rotatable_torsions(molecule)
    assert len(torsions) == expected
    sp = Chem.HybridizationType.SP
    for quad in torsions.atoms:
        assert sp not in (molecule.GetAtomWithIdx(int(a)).GetHybridization() for a in quad[1:3])


@pytest.mark.parametrize("smiles, symmetry", [
    ("CCCC", [1]),
    ("CCc1ccccc1", [2]),  # a ring flip maps the molecule onto itself
    ("Fc1ccccc1CC", [1]),  # not with an ortho substituent
    ("c1ccc(cc1)-c1ccccc1", [2]),  # both ends two-fold: still two-fold
    ("CC(C)(C)c1ccccc1", [6]),  # three-fold tert-butyl on a two-fold ring
    ("CC(C)CC", [1]),  # an isopropyl's two methyls are not three equivalent neighbours
    ("CCN", [1]),  # a pyramidal NH2 has two equivalent hydrogens 120 degrees apart, not 180
    ("Nc1ccccc1", [2]),  # a planar NH2 on a ring: both ends two-fold
])
def test_symmetry_numbers(smiles, symmetry):
    torsions = rotatable_torsions(with_hydrogens(smiles))
    assert torsions.symmetry.tolist() == symmetry


def test_a_ring_flip_turns_a_symmetric_torsion_by_half_a_period():
    """Swapping the ortho atoms of ethylbenzene's ring (a relabelling that leaves the molecule as it is) turns the
    torsion by pi, one symmetry period."""
    molecule, x = embedded("CCc1ccccc1")
    torsions = rotatable_torsions(molecule)
    (quad,) = torsions.atoms.tolist()
    ipso = 1 if molecule.GetAtomWithIdx(quad[1]).GetIsAromatic() else 2
    centre, outer = quad[ipso], quad[3 * (ipso - 1)]  # i with j, l with k
    (other_ortho,) = [n.GetIdx() for n in molecule.GetAtomWithIdx(centre).GetNeighbors()
                      if n.GetIdx() not in quad]
    flipped = [other_ortho if a == outer else a for a in quad]
    angles = compute_dihedrals(x[None], np.array([quad, flipped]))[0]
    assert abs(wrapped(angles[1] - angles[0]).abs().item() - math.pi) < 0.1


def test_set_torsions_reaches_the_requested_angles_and_keeps_bonds_and_angles():
    molecule, base = embedded(IBUPROFEN)
    torsions = rotatable_torsions(molecule)
    generator = torch.Generator().manual_seed(0)
    angles = (torch.rand((16, len(torsions)), generator=generator, dtype=torch.float64) * 2 - 1) * math.pi
    x = set_torsions(base, torsions, angles)
    assert x.shape == (16, molecule.GetNumAtoms(), 3)
    dihedrals = compute_dihedrals(x, torsions.atoms)
    assert wrapped(dihedrals - angles).abs().max() < 1e-6
    # Bond lengths (1-2 distances) and bond angles (1-3 distances) are those of the base geometry.
    topological = Chem.GetDistanceMatrix(molecule)
    for separation in (1, 2):
        i, j = np.nonzero(np.triu(topological == separation))
        distances = (x[:, i] - x[:, j]).norm(dim=-1)
        reference = (base[i] - base[j]).norm(dim=-1)
        assert (distances - reference).abs().max() < 1e-6, f"{separation + 1}-atom distances changed"


def test_set_torsions_at_the_current_angles_changes_nothing():
    molecule, base = embedded("CCCO")
    torsions = rotatable_torsions(molecule)
    current = compute_dihedrals(base[None], torsions.atoms)
    torch.testing.assert_close(set_torsions(base, torsions, current)[0], base, atol=1e-9, rtol=0)


def test_no_torsions_gives_copies_of_the_base():
    molecule, base = embedded("C1CCCCC1")
    x = set_torsions(base, rotatable_torsions(molecule), torch.zeros(3, 0))
    assert x.shape == (3, *base.shape) and torch.equal(x[2], base)


def test_peptide_torsions_turn_one_side_of_each_backbone_and_side_chain_bond():
    system = load("peptide:M")
    torsions = peptide_torsions(system.topology)
    names = [[system.topology.atom(int(a)).name for a in quad] for quad in torsions.atoms]
    assert names == [["C", "N", "CA", "C"], ["N", "CA", "C", "N"], ["N", "CA", "CB", "CG"],
                     ["CA", "CB", "CG", "SD"], ["CB", "CG", "SD", "CE"]]  # phi, psi, chi1-chi3
    x = torch.as_tensor(system.positions, dtype=torch.float64)[None]
    for t, quad in enumerate(torsions.atoms):
        turned = rotate_torsion(x, torsions, t, torch.tensor([0.7], dtype=torch.float64))
        change = compute_dihedrals(turned, torsions.atoms) - compute_dihedrals(x, torsions.atoms)
        change = torch.remainder(change + math.pi, 2 * math.pi) - math.pi
        expected = torch.zeros(len(torsions), dtype=torch.float64)
        expected[t] = 0.7
        assert torch.allclose(change[0], expected, atol=1e-9)  # that torsion alone turns
        moved = (turned[0] - x[0]).norm(dim=-1) > 1e-9
        assert set(np.flatnonzero(moved.numpy())) <= set(torsions.moving[t]) and quad[2] in torsions.moving[t]


def test_proline_ring_torsions_are_left_out():
    topology = load("peptide:P").topology
    assert [[topology.atom(int(a)).name for a in quad] for quad in peptide_torsions(topology).atoms] == [
        ["N", "CA", "C", "N"]]
    with pytest.raises(ValueError, match="unknown peptide torsions"):
        peptide_torsions(topology, kinds=("omega",))
