"""Systems: built-ins load with the right physics, bad names and files give clear errors."""

import numpy as np
import openmm
import pytest

from molsamp.errors import SystemFileError, UnknownSystemError
from molsamp.systems import SYSTEMS_DIR, available, load


def forces_by_name(system):
    return {type(f).__name__ for f in system.openmm_system.getForces()}


def test_available_lists_the_builtins():
    assert {"ala2", "ala2-vacuum", "dw4", "lj13", "lj55"} <= set(available())


def test_ala2_is_ff14sb_in_obc2_with_hbond_constraints():
    ala2 = load("ala2")
    assert ala2.n_atoms == 22 and ala2.positions.shape == (22, 3)
    assert ala2.temperature == 300.0
    assert [r.name for r in ala2.topology.residues] == ["ACE", "ALA", "NME"]
    assert "GBSAOBCForce" in forces_by_name(ala2) or "CustomGBForce" in forces_by_name(ala2)
    nonbonded = next(f for f in ala2.openmm_system.getForces() if isinstance(f, openmm.NonbondedForce))
    assert nonbonded.getNonbondedMethod() == openmm.NonbondedForce.NoCutoff
    n_hydrogens = sum(atom.element.symbol == "H" for atom in ala2.topology.atoms)
    assert ala2.openmm_system.getNumConstraints() == n_hydrogens
    np.testing.assert_allclose(ala2.masses.sum(), 144.17, atol=0.05)  # C6H12N2O2 in amu


def test_ala2_vacuum_has_no_solvent_model():
    forces = forces_by_name(load("ala2-vacuum"))
    assert "GBSAOBCForce" not in forces and "CustomGBForce" not in forces


@pytest.mark.parametrize("name, n, dim", [("dw4", 4, 2), ("lj13", 13, 3), ("lj55", 55, 3)])
def test_analytic_systems(name, n, dim):
    system = load(name)
    assert system.openmm_system is None and system.positions.shape == (n, dim)
    target = system.target()
    assert (target.n_atoms, target.dim) == (n, dim)
    distances = np.linalg.norm(system.positions[:, None] - system.positions[None], axis=-1)
    assert distances[np.triu_indices(n, 1)].min() > 0.5  # start without overlaps


def test_load_by_path_equals_load_by_name():
    assert load(SYSTEMS_DIR / "lj13.yaml").n_atoms == load("lj13").n_atoms


def test_unknown_system_lists_the_available_ones():
    with pytest.raises(UnknownSystemError, match="unknown system 'ala3'.*ala2.*lj13"):
        load("ala3")


def test_missing_yaml_file_is_named(tmp_path):
    with pytest.raises(UnknownSystemError, match="missing.yaml"):
        load(tmp_path / "missing.yaml")


@pytest.mark.parametrize("text, match", [
    ("analytic: lennard-jones\ntemperatur: 1.0\n", "unknown key 'temperatur'"),
    ("analytic: lennard-jones\ntemperature: hot\n", "key 'temperature' has the wrong type"),
    ("analytic: harmonic\n", "key 'analytic' must be one of"),
    ("analytic: lennard-jones\nparameters: {n_particle: 3}\n", "key 'parameters'"),
    ("structure: ala2.pdb\n", "key 'forcefield' is required"),
    ("structure: nothere.pdb\nforcefield: [amber14-all.xml]\n", "key 'structure'"),
    ("structure: [unclosed\n", "not valid YAML"),
    ("- a list\n", "mapping"),
])
def test_malformed_yaml_names_file_and_key(tmp_path, text, match):
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(SystemFileError, match=match) as error:
        load(path)
    assert str(path) in str(error.value)


def test_bad_forcefield_file_is_reported(tmp_path):
    (tmp_path / "ala2.pdb").write_text((SYSTEMS_DIR / "ala2.pdb").read_text())
    path = tmp_path / "custom.yaml"
    path.write_text("structure: ala2.pdb\nforcefield: [no-such-forcefield.xml]\n")
    with pytest.raises(SystemFileError, match="forcefield"):
        load(path)
