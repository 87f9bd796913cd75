"""Systems: built-ins load with the right physics, bad names and files give clear errors."""

import numpy as np
import openmm
import pytest

from molsamp.errors import InputError, SystemFileError, UnknownSystemError
from molsamp.systems import SYSTEMS_DIR, available, from_smiles, load


def forces_by_name(system):
    return {type(f).__name__ for f in system.openmm_system.getForces()}


def test_available_lists_the_builtins():
    assert {"ala2", "ala2-vacuum", "dw4", "lj13", "lj55", "ice-xi-16", "ice-xi-128"} <= set(available())


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


@pytest.mark.parametrize("name, molecules, edges", [("ice-xi-16", 16, [0.89846, 0.77808, 0.73358]),
                                                     ("ice-xi-128", 128, [1.79692, 1.55616, 1.46716])])
def test_ice_is_rigid_tip4pew_with_pme_at_constant_volume(name, molecules, edges):
    ice = load(name)
    assert ice.n_atoms == 4 * molecules and ice.temperature == 100.0
    np.testing.assert_array_equal(ice.box, np.diag(edges))
    assert ice.openmm_system.getNumConstraints() == 3 * molecules  # O-H, O-H, H-H: rigid, for MD
    assert all(ice.openmm_system.isVirtualSite(i) for i in range(3, ice.n_atoms, 4))
    nonbonded = next(f for f in ice.openmm_system.getForces() if isinstance(f, openmm.NonbondedForce))
    assert nonbonded.getNonbondedMethod() == openmm.NonbondedForce.PME
    cutoff = nonbonded.getCutoffDistance().value_in_unit(openmm.unit.nanometer)
    assert cutoff == pytest.approx(min(edges) / 2, abs=2e-5)
    assert nonbonded.getUseSwitchingFunction()
    assert nonbonded.getSwitchingDistance().value_in_unit(openmm.unit.nanometer) == pytest.approx(0.9 * cutoff)
    assert nonbonded.getUseDispersionCorrection() and nonbonded.getEwaldErrorTolerance() == 1e-4


@pytest.mark.parametrize("nonbonded, match", [
    ("{method: PME}", "needs a positive 'cutoff'"),
    ("{method: Reaction}", "method must be one of"),
    ("{method: PME, cutoff: 0.3, switch: 0.4}", "below the cutoff"),
    ("{method: PME, cutoff: 0.3, shift: 0.2}", "unknown keys"),
    ("{method: NoCutoff, cutoff: 0.3}", "NoCutoff takes no other options"),
])
def test_malformed_nonbonded_options_are_named(tmp_path, nonbonded, match):
    (tmp_path / "ice.pdb").write_text((SYSTEMS_DIR / "ice-xi-16.pdb").read_text())
    path = tmp_path / "ice.yaml"
    path.write_text(f"structure: ice.pdb\nforcefield: [tip4pew.xml]\nnonbonded: {nonbonded}\n")
    with pytest.raises(SystemFileError, match=f"key 'nonbonded': .*{match}"):
        load(path)


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
    ("smiles: CCO\nanalytic: lennard-jones\n", "exactly one of 'structure'.*'analytic' or 'smiles'"),
    ("smiles: CCO\nforcefield: [gaff2]\n", "key 'forcefield' must be one of"),
    ("smiles: CCO\nforcefield: openff\n", "key 'forcefield' must be one of"),
    ("smiles: CCO\nsolvent: tip3p\n", "key 'solvent' must be one of"),
    ("smiles: CCO\nconstraints: AllBonds\n", "key 'constraints' does not apply"),
    ("analytic: lennard-jones\nsolvent: obc2\n", "key 'solvent' applies only with 'smiles'"),
    ("structure: ala2.pdb\nforcefield: amber14-all.xml\n", "key 'forcefield' must be a list"),
    ("smiles: C[Si](C)(C)C\n", r"key 'smiles': molecule 'C\[Si\]\(C\)\(C\)C': element 'Si'"),
    ("smiles: CCO\nnonbonded: {method: PME, cutoff: 1.0}\n", "apply only with 'structure'"),
    ("structure: ala2.pdb\nforcefield: [amber14-all.xml]\nbox: [1.0, 1.0]\n", "key 'box' must be three"),
])
def test_malformed_yaml_names_file_and_key(tmp_path, monkeypatch, text, match):
    monkeypatch.setenv("MOLSAMP_CACHE", str(tmp_path))
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


def test_smiles_yaml_file_loads(tmp_path, monkeypatch):
    monkeypatch.setenv("MOLSAMP_CACHE", str(tmp_path / "cache"))
    path = tmp_path / "acetate.yaml"
    path.write_text("description: acetate in vacuum\nsmiles: CC(=O)[O-]\nforcefield: gaff\nsolvent: vacuum\n"
                    "temperature: 310\ntimestep: 0.001\n")
    acetate = load(path)
    assert (acetate.name, acetate.description, acetate.n_atoms) == ("acetate", "acetate in vacuum", 7)
    assert (acetate.temperature, acetate.timestep, acetate.friction) == (310.0, 0.001, 1.0)
    assert acetate.molecule.GetNumAtoms() == 7 and acetate.positions.shape == (7, 3) and acetate.smiles == "CC(=O)[O-]"
    assert "GBSAOBCForce" not in forces_by_name(acetate)
    assert (tmp_path / "cache" / "forcefields").is_dir()


def test_from_smiles_defaults_to_gaff2_in_obc2(tmp_path, recwarn):
    ethanol = from_smiles("OCC", cache_dir=tmp_path, name="ethanol")
    assert ethanol.name == "ethanol" and ethanol.description == "CCO: GAFF2/AM1-BCC, obc2"
    assert ethanol.smiles == "CCO" and not recwarn.list  # the canonical SMILES sampled; no stereo to decide
    assert "GBSAOBCForce" in forces_by_name(ethanol)
    assert (ethanol.temperature, ethanol.timestep, ethanol.friction) == (300.0, 0.002, 1.0)
    assert [r.name for r in ethanol.topology.residues] == ["MOL"]
    # positions (nm) are the molecule's conformer (Å)
    np.testing.assert_allclose(ethanol.positions * 10, ethanol.molecule.GetConformer().GetPositions())


def test_constraints_can_be_dropped_for_metropolis_hastings_targets():
    flexible = load("ala2", constraints=None)
    assert load("ala2").openmm_system.getNumConstraints() == 12 and flexible.openmm_system.getNumConstraints() == 0
    assert load("peptide:G", constraints=None).openmm_system.getNumConstraints() == 0
    with pytest.raises(InputError, match="constraints can only be chosen"):
        load("dw4", constraints=None)


def test_hydrogen_mass_repartitioning_keeps_the_total():
    from molsamp.systems import repartition_hydrogen_mass

    ala2 = load("ala2", constraints=None)
    heavy_hydrogens = repartition_hydrogen_mass(ala2, 3.0, timestep=0.002)
    hydrogens = [atom.index for atom in ala2.topology.atoms if atom.element.symbol == "H"]
    assert np.allclose(heavy_hydrogens.masses[hydrogens], 3.0)
    assert heavy_hydrogens.masses.sum() == pytest.approx(ala2.masses.sum())
    assert heavy_hydrogens.openmm_system.getParticleMass(hydrogens[0])._value == pytest.approx(3.0)
    assert ala2.openmm_system.getParticleMass(hydrogens[0])._value == pytest.approx(1.008)  # the original is kept


@pytest.mark.parametrize("key, value, rule", [
    ("timestep", "0", "positive"), ("timestep", "-1", "positive"), ("timestep", ".inf", "positive"),
    ("temperature", "-300", "positive"), ("temperature", "0", "positive"), ("temperature", ".nan", "positive"),
    ("friction", "-1", "non-negative"),
])
def test_nonphysical_numbers_in_yaml_name_file_and_key(tmp_path, key, value, rule):
    path = tmp_path / "bad.yaml"
    path.write_text(f"analytic: lennard-jones\n{key}: {value}\n")
    with pytest.raises(SystemFileError, match=f"key '{key}' must be a {rule} number") as error:
        load(path)
    assert str(path) in str(error.value)


def test_zero_friction_is_allowed(tmp_path):
    path = tmp_path / "newtonian.yaml"
    path.write_text("analytic: lennard-jones\nfriction: 0\n")
    assert load(path).friction == 0.0
