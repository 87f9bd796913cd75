"""Stereo: unassigned stereocentres are counted, enumerated in a fixed order, and the one sampled is stated."""

import re
import warnings

import pytest
from rdkit import Chem

from molsamp.errors import InputError
from molsamp.stereo import StereoWarning, expand_stereo, resolve_stereo, stereoisomers, unassigned_stereo
from molsamp.systems import from_smiles


def stereo_from_3d(molecule):
    """Canonical isomeric SMILES with the stereo read from the molecule's 3D conformer alone."""
    molecule = Chem.RemoveHs(molecule)
    for atom in molecule.GetAtoms():
        atom.SetChiralTag(Chem.ChiralType.CHI_UNSPECIFIED)
    for bond in molecule.GetBonds():
        bond.SetStereo(Chem.BondStereo.STEREONONE)
    Chem.AssignStereochemistryFrom3D(molecule)
    return Chem.MolToSmiles(molecule)


@pytest.mark.parametrize("smiles, count", [
    ("CC(O)CC", 1), ("CC=CC", 1), ("C[C@H](O)CC", 0), ("C/C=C/C", 0), ("CC(O)C(N)C", 2), ("C[C@H](O)C(N)C", 1),
    ("CCO", 0), ("c1ccccc1", 0), ("C1=CCCCC1", 0),  # a double bond in a six-membered ring is always cis
])
def test_unassigned_stereo_counts_centres_and_double_bonds(smiles, count):
    assert unassigned_stereo(smiles) == count


@pytest.mark.parametrize("smiles, isomers", [
    ("CC(O)CC", ["CC[C@@H](C)O", "CC[C@H](C)O"]),
    ("CC=CC", ["C/C=C/C", "C/C=C\\C"]),
    ("CC(O)C(N)C", ["C[C@@H](N)[C@@H](C)O", "C[C@H](N)[C@@H](C)O", "C[C@H](N)[C@H](C)O", "C[C@H](O)[C@@H](C)N"]),
    ("CC(O)C(O)C", ["C[C@@H](O)[C@@H](C)O", "C[C@H](O)[C@@H](C)O", "C[C@H](O)[C@H](C)O"]),  # one is meso
    ("C[C@H](O)C(N)C", ["C[C@H](N)[C@H](C)O", "C[C@H](O)[C@@H](C)N"]),  # the assigned centre is kept: 2 of the 4
    ("OCC", ["CCO"]),
])
def test_all_gives_every_isomer_sorted_and_first_the_first(smiles, isomers):
    assert stereoisomers(smiles, "all") == isomers
    assert stereoisomers(smiles) == stereoisomers(smiles, "first") == isomers[:1]
    assert all(unassigned_stereo(isomer) == 0 and stereoisomers(isomer, "all") == [isomer] for isomer in isomers)


def test_isomers_do_not_depend_on_how_the_smiles_is_written():
    spellings = ["CC(O)C(N)C", "NC(C)C(C)O", "OC(C)C(C)N", "C(C)(O)C(C)N"]
    assert len({tuple(stereoisomers(smiles, "all")) for smiles in spellings * 3}) == 1


def test_expand_stereo_names_each_isomer_and_passes_bad_smiles_through():
    pairs = [("butanol", "CC(O)CC"), ("ethanol", "CCO"), ("broken", "C1CC"), ("diol", "CC(O)C(O)C")]
    assert expand_stereo(pairs, "all") == [
        ("butanol [isomer 1/2]", "CC(O)CC", "CC[C@@H](C)O"), ("butanol [isomer 2/2]", "CC(O)CC", "CC[C@H](C)O"),
        ("ethanol", "CCO", "CCO"), ("broken", "C1CC", "C1CC"),
        ("diol [isomer 1/3]", "CC(O)C(O)C", "C[C@@H](O)[C@@H](C)O"),
        ("diol [isomer 2/3]", "CC(O)C(O)C", "C[C@H](O)[C@@H](C)O"),
        ("diol [isomer 3/3]", "CC(O)C(O)C", "C[C@H](O)[C@H](C)O"),
    ]
    assert expand_stereo(pairs) == [("butanol", "CC(O)CC", "CC[C@@H](C)O"), ("ethanol", "CCO", "CCO"),
                                    ("broken", "C1CC", "C1CC"), ("diol", "CC(O)C(O)C", "C[C@@H](O)[C@@H](C)O")]


def test_resolve_stereo_warns_when_it_chooses_and_refuses_all():
    with pytest.warns(StereoWarning, match=r"molecule 'CC\(O\)CC' leaves stereo unassigned; sampling "
                                           r"CC\[C@@H\]\(C\)O, the first of its 2 stereoisomers"):
        assert resolve_stereo("CC(O)CC") == "CC[C@@H](C)O"
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert resolve_stereo("C[C@@H](O)CC", "all") == resolve_stereo("CC[C@@H](C)O") == "CC[C@@H](C)O"
    with pytest.raises(InputError, match=r"molecule 'CC\(O\)CC' has 2 stereoisomers and a system is one of them"):
        resolve_stereo("CC(O)CC", "all")


@pytest.mark.parametrize("call", [lambda: stereoisomers("CCO", "random"), lambda: resolve_stereo("CCO", "any"),
                                  lambda: expand_stereo([("x", "CCO")], "every")])
def test_bad_mode_is_an_input_error(call):
    with pytest.raises(InputError, match=r"stereo must be one of \['first', 'all'\], got '\w+'"):
        call()


@pytest.mark.parametrize("smiles, message", [("C1CC", "invalid SMILES 'C1CC'"), ("", "non-empty")])
def test_bad_smiles_is_an_input_error(smiles, message):
    with pytest.raises(InputError, match=message):
        unassigned_stereo(smiles)
    with pytest.raises(InputError, match=message):
        stereoisomers(smiles, "all")


@pytest.mark.parametrize("smiles, isomer", [("CC(O)CC", "CC[C@@H](C)O"), ("CC=CC", "C/C=C/C")])
def test_from_smiles_samples_the_first_isomer_says_so_and_embeds_it(tmp_path, smiles, isomer):
    with pytest.warns(StereoWarning, match=re.escape(f"sampling {isomer}")):
        system = from_smiles(smiles, cache_dir=tmp_path)
    assert system.smiles == isomer and system.description.startswith(f"{isomer}: GAFF2/AM1-BCC")
    assert stereo_from_3d(system.molecule) == isomer  # the conformer, the system's positions, has that stereo
    other = stereoisomers(smiles, "all")[1]
    assert stereo_from_3d(from_smiles(other, cache_dir=tmp_path).molecule) == other
    entries = [path.name for path in (tmp_path / "forcefields").iterdir()]
    assert len(entries) == 2 and entries[0][:14] == entries[1][:14]  # InChIKeys: same skeleton, other stereo
    with pytest.raises(InputError, match="2 stereoisomers"):
        from_smiles(smiles, cache_dir=tmp_path, stereo="all")

