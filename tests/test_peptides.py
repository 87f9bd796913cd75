"""Peptides from sequence: Amber names (peptide:A is ala2), every residue builds, charged, templated and L."""

import numpy as np
import openmm
import pytest
import torch

from molsamp.analysis import backbone_dihedral_indices
from molsamp.errors import InputError, UnknownSystemError
from molsamp.peptides import AMINO_ACIDS, from_sequence
from molsamp.systems import load

THREE_LETTER = dict(A="ALA", C="CYS", D="ASP", E="GLU", F="PHE", G="GLY", H="HIS", I="ILE", K="LYS", L="LEU",
                    M="MET", N="ASN", P="PRO", Q="GLN", R="ARG", S="SER", T="THR", V="VAL", W="TRP", Y="TYR")
CHARGE = dict(K=1, R=1, D=-1, E=-1)


@pytest.fixture(scope="module")
def ala2():
    return load("ala2")


def atom_labels(system):
    return [(atom.residue.name, atom.name) for atom in system.topology.atoms]


def bond_graph(system):
    return {frozenset((bond[0].index, bond[1].index)) for bond in system.topology.bonds}


def energy(system, positions):
    with system.target(n_workers=0, platform="Reference") as target:  # deterministic, double precision
        return float(target.energy(torch.as_tensor(positions[None], dtype=torch.float64))[0])


def net_charge(system):
    nonbonded = next(f for f in system.openmm_system.getForces() if isinstance(f, openmm.NonbondedForce))
    return sum(nonbonded.getParticleParameters(i)[0]._value for i in range(nonbonded.getNumParticles()))


def signed_volume(positions, centre, a, b, c):
    """Sign of the volume spanned by a, b, c seen from centre: the handedness of a stereocentre."""
    return np.sign(np.linalg.det(positions[[a, b, c]] - positions[centre]))


def index(system, residue, name):
    return system.topology.select(f"resid {residue} and name {name}")[0]


def test_peptide_a_is_alanine_dipeptide(ala2):
    peptide = load("peptide:A")
    assert peptide.name == "peptide:A" and "ACE-A-NME" in peptide.description
    assert atom_labels(peptide) == atom_labels(ala2)  # same Amber names, residues and atom order
    assert bond_graph(peptide) == bond_graph(ala2)
    np.testing.assert_allclose(peptide.masses, ala2.masses)
    assert (peptide.temperature, peptide.timestep, peptide.friction) == (300.0, 0.002, 1.0)
    assert peptide.openmm_system.getNumConstraints() == ala2.openmm_system.getNumConstraints()
    # Same force field parameters: both systems give the same energy at the same positions.
    assert energy(peptide, peptide.positions) == pytest.approx(energy(ala2, peptide.positions), abs=1e-6)
    assert not np.allclose(peptide.positions, ala2.positions)


def omegas(system):
    """Peptide-bond dihedrals (degrees) CA-C-N-CA, with ACE's CH3 and NME's C in place of CA."""
    import mdtraj

    n = system.topology.n_residues
    alpha = ["CH3", *["CA"] * (n - 2), "C"]
    quadruples = [[index(system, r, alpha[r]), index(system, r, "C"), index(system, r + 1, "N"),
                   index(system, r + 1, alpha[r + 1])] for r in range(n - 1)]
    trajectory = mdtraj.Trajectory(system.positions[None], system.topology)
    return np.degrees(mdtraj.compute_dihedrals(trajectory, quadruples)[0])


def test_building_is_deterministic():
    np.testing.assert_array_equal(from_sequence("A", seed=3).positions, from_sequence("A", seed=3).positions)


@pytest.mark.parametrize("letter", AMINO_ACIDS)
def test_every_residue_builds_charged_templated_and_l(letter, ala2):
    peptide = load(f"peptide:{letter}")  # createSystem would fail on a residue without a template
    assert [r.name for r in peptide.topology.residues] == ["ACE", THREE_LETTER[letter], "NME"]
    u = energy(peptide, peptide.positions)
    assert np.isfinite(u) and u < peptide.n_atoms  # minimised: below 1 kT per atom (ala2: -2.6)
    assert net_charge(peptide) == pytest.approx(CHARGE.get(letter, 0), abs=1e-4)
    assert np.all(np.abs(omegas(peptide)) > 150.0)  # trans peptide bonds
    if letter == "H":  # neutral HIE: hydrogen on NE2, none on ND1
        names = {atom.name for atom in peptide.topology.residue(1).atoms}
        assert "HE2" in names and "HD1" not in names
    if letter != "G":  # L: the same handedness at CA as ala2's alanine
        x, y = peptide.positions, ala2.positions
        assert signed_volume(x, *(index(peptide, 1, n) for n in ("CA", "N", "C", "CB"))) \
            == signed_volume(y, *(index(ala2, 1, n) for n in ("CA", "N", "C", "CB")))


@pytest.mark.parametrize("letter, smiles, cip", [
    ("I", "[CH3:4][CH2:3][C@H:2]([CH3:5])[C@H:1](N)C(=O)O", ("S", "S")),  # L-Ile: CA 1, CB 2, CG1 3, CD1 4, CG2 5
    ("T", "[CH3:5][C@@H:2]([OH:3])[C@H:1](N)C(=O)O", ("S", "R")),  # L-Thr: CA 1, CB 2, OG1 3, CG2 5
])
def test_beta_carbon_stereo_of_ile_and_thr(letter, smiles, cip):
    from rdkit import Chem
    from rdkit.Chem import AllChem, rdCIPLabeler

    reference = Chem.AddHs(Chem.MolFromSmiles(smiles))
    rdCIPLabeler.AssignCIPLabels(reference)
    mapped = {a.GetAtomMapNum(): a for a in reference.GetAtoms() if a.GetAtomMapNum()}
    assert (mapped[1].GetProp("_CIPCode"), mapped[2].GetProp("_CIPCode")) == cip
    AllChem.EmbedMolecule(reference, randomSeed=1)
    expected = signed_volume(reference.GetConformer().GetPositions(), *(mapped[k].GetIdx() for k in (2, 1, 3, 5)))
    peptide = load(f"peptide:{letter}")
    gamma = "CG1" if letter == "I" else "OG1"
    assert signed_volume(peptide.positions, *(index(peptide, 1, n) for n in ("CB", "CA", gamma, "CG2"))) == expected
    if letter == "I":  # CD1 hangs on CG1
        assert {index(peptide, 1, "CG1"), index(peptide, 1, "CD1")} in bond_graph(peptide)


def test_peptide_bonds_are_trans_even_where_etkdg_makes_them_cis():
    assert np.all(np.abs(omegas(load("peptide:PPPP"))) > 150.0)  # ETKDG's seed 0 makes one Pro-Pro bond cis


def test_four_residues_have_their_backbone_dihedrals():
    peptide = load("peptide:AKDW")
    assert [r.name for r in peptide.topology.residues] == ["ACE", "ALA", "LYS", "ASP", "TRP", "NME"]
    assert net_charge(peptide) == pytest.approx(0.0, abs=1e-4)
    assert energy(peptide, peptide.positions) < peptide.n_atoms and np.all(np.abs(omegas(peptide)) > 150.0)
    indices = backbone_dihedral_indices(peptide.topology)
    assert indices["phi"].shape == indices["psi"].shape == (4, 4)
    atoms = list(peptide.topology.atoms)
    assert [[atoms[i].name for i in quadruple] for quadruple in indices["phi"]] == [["C", "N", "CA", "C"]] * 4
    assert [[atoms[i].name for i in quadruple] for quadruple in indices["psi"]] == [["N", "CA", "C", "N"]] * 4
    assert atoms[indices["phi"][0, 0]].residue.name == "ACE" and atoms[indices["psi"][-1, -1]].residue.name == "NME"


@pytest.mark.parametrize("sequence", ["", "AKDWA", "AXK", "ak", "A K", "B"])
def test_bad_sequences_name_the_sequence_and_the_letters(sequence):
    with pytest.raises(UnknownSystemError, match=f"'peptide:{sequence}'.*ACDEFGHIKLMNPQRSTVWY"):
        load(f"peptide:{sequence}")
    with pytest.raises(InputError, match=f"peptide sequence '{sequence}'.*1 to 4.*ACDEFGHIKLMNPQRSTVWY"):
        from_sequence(sequence)
