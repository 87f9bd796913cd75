"""The RDKit ETKDG baseline and the torsion plot of an ensemble against it."""

import numpy as np
import pytest
from rdkit import Chem

from molsamp.analysis import compute_dihedrals
from molsamp.conformers.etkdg import etkdg_conformers, plot_torsions_against_etkdg
from molsamp.errors import InputError


def butane() -> Chem.Mol:
    molecule = Chem.AddHs(Chem.MolFromSmiles("CCCC"))
    molecule.SetProp("_Name", "butane")
    return molecule


def test_etkdg_conformers_are_distinct_and_repeat_with_the_seed():
    positions = etkdg_conformers(butane(), 20, seed=0)
    assert positions.shape == (20, 14, 3)
    dihedrals = compute_dihedrals(positions / 10.0, [[0, 1, 2, 3]]).numpy()
    assert np.ptp(dihedrals) > 1.0  # seed 0 is passed on as 1: not 20 copies of one conformer
    np.testing.assert_array_equal(positions, etkdg_conformers(butane(), 20, seed=0))


def test_plot_draws_the_ensemble_against_etkdg(tmp_path):
    ensemble = butane()
    for x in etkdg_conformers(ensemble, 10, seed=3):
        conformer = Chem.Conformer(ensemble.GetNumAtoms())
        for i, position in enumerate(x.tolist()):
            conformer.SetAtomPosition(i, position)
        ensemble.AddConformer(conformer, assignId=True)
    path = plot_torsions_against_etkdg(ensemble, tmp_path / "butane.png")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_plot_refuses_a_molecule_without_rotatable_torsions(tmp_path):
    benzene = Chem.AddHs(Chem.MolFromSmiles("c1ccccc1"))
    benzene.SetProp("_Name", "benzene")
    with pytest.raises(InputError, match="benzene.*no heavy-atom rotatable torsion"):
        plot_torsions_against_etkdg(benzene, tmp_path / "benzene.png")
