"""A batch SDF written molecule by molecule keeps every finished molecule through a crash at any moment, resumes
without losing or repeating one, and refuses to mix runs with different settings."""

import json
import os

import pytest
from rdkit import Chem
from rdkit.Chem import AllChem

from molsamp.conformers.io import ResumableSDF, sdf_text
from molsamp.errors import InputError

SETTINGS = {"n": 2, "mode": "md-jumps", "molecules": [["ethanol", "CCO", "CCO"], ["propanol", "CCCO", "CCCO"]]}


def ensemble(smiles, name, n=2):
    """``n`` embedded conformers of ``smiles`` named ``name``."""
    molecule = Chem.AddHs(Chem.MolFromSmiles(smiles))
    AllChem.EmbedMultipleConfs(molecule, n, randomSeed=1)
    molecule.SetProp("_Name", name)
    return molecule


ETHANOL, PROPANOL = sdf_text(ensemble("CCO", "ethanol")), sdf_text(ensemble("CCCO", "propanol"))


def names(path):
    return [record.GetProp("_Name") for record in Chem.SDMolSupplier(str(path), removeHs=False)]


def test_a_batch_is_written_molecule_by_molecule(tmp_path):
    writer = ResumableSDF(tmp_path / "out.sdf")
    assert writer.start(SETTINGS) == [] and not (tmp_path / "out.sdf").exists()
    writer.add({"name": "ethanol", "n": 2}, ETHANOL)
    assert names(tmp_path / "out.sdf.partial") == ["ethanol", "ethanol"]  # on disk before the next molecule starts
    writer.add({"name": "propanol", "n": 2}, PROPANOL)
    assert writer.finish() == tmp_path / "out.sdf"
    assert names(tmp_path / "out.sdf") == ["ethanol"] * 2 + ["propanol"] * 2
    assert json.loads((tmp_path / "out.sdf.json").read_text()) == [{"name": "ethanol", "n": 2},
                                                                   {"name": "propanol", "n": 2}]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.sdf", "out.sdf.json"]


@pytest.mark.parametrize("torn_tail", [PROPANOL[: len(PROPANOL) // 2], PROPANOL],
                         ids=["killed while writing", "killed before recording the molecule as finished"])
def test_a_run_killed_at_any_moment_resumes_without_losing_or_repeating_a_molecule(tmp_path, torn_tail):
    writer = ResumableSDF(tmp_path / "out.sdf")
    writer.start(SETTINGS)
    writer.add({"name": "ethanol", "n": 2}, ETHANOL)
    with open(tmp_path / "out.sdf.partial", "a") as partial:  # what a kill -9 during the next molecule leaves
        partial.write(torn_tail)
    again = ResumableSDF(tmp_path / "out.sdf")
    assert again.start(SETTINGS) == [{"name": "ethanol", "n": 2}]
    assert (tmp_path / "out.sdf.partial").read_text() == ETHANOL  # the unfinished tail is cut off
    again.add({"name": "propanol", "n": 2}, PROPANOL)
    again.finish()
    assert (tmp_path / "out.sdf").read_text() == ETHANOL + PROPANOL


def test_a_failed_molecule_is_recorded_without_records(tmp_path):
    writer = ResumableSDF(tmp_path / "out.sdf")
    writer.start(SETTINGS)
    failed = {"name": "ethanol", "n": 0, "error": "invalid SMILES"}
    writer.add(failed)
    assert ResumableSDF(tmp_path / "out.sdf").start(SETTINGS) == [failed]


def test_a_run_with_other_settings_is_refused_not_mixed(tmp_path):
    writer = ResumableSDF(tmp_path / "out.sdf")
    writer.start(SETTINGS)
    writer.add({"name": "ethanol", "n": 2}, ETHANOL)
    with pytest.raises(InputError, match=r"out.sdf.partial' holds an unfinished run with other settings \(changed: "
                                         r"molecules, n\); rerun with the same arguments .* --overwrite"):
        ResumableSDF(tmp_path / "out.sdf").start({**SETTINGS, "n": 3, "molecules": SETTINGS["molecules"][:1]})
    assert (tmp_path / "out.sdf.partial").read_text() == ETHANOL  # untouched
    fresh = ResumableSDF(tmp_path / "out.sdf", overwrite=True)
    assert fresh.start({**SETTINGS, "n": 3}) == [] and (tmp_path / "out.sdf.partial").read_text() == ""


def test_outputs_are_checked_before_any_work(tmp_path):
    (tmp_path / "out.sdf").write_text("keep")
    with pytest.raises(InputError, match="output '.*out.sdf' exists; pass --overwrite"):
        ResumableSDF(tmp_path / "out.sdf")
    (tmp_path / "other.sdf.json").write_text("keep")
    with pytest.raises(InputError, match="output '.*other.sdf.json' exists"):
        ResumableSDF(tmp_path / "other.sdf")
    with pytest.raises(InputError, match="folder '.*missing' does not exist"):
        ResumableSDF(tmp_path / "missing" / "out.sdf")
    ResumableSDF(tmp_path / "out.sdf", overwrite=True)  # allowed, and nothing is touched until start
    assert (tmp_path / "out.sdf").read_text() == "keep"


@pytest.mark.parametrize("progress, partial, message", [
    ("{not json", "", "progress file '.*out.sdf.partial.json' is damaged"),
    (None, ETHANOL, "out.sdf.partial' exists without its progress file 'out.sdf.partial.json'"),
    (json.dumps({"settings": SETTINGS, "length": 10**6, "records": [{}]}), ETHANOL, "is shorter than its progress"),
])
def test_damaged_unfinished_runs_are_named(tmp_path, progress, partial, message):
    if progress is not None:
        (tmp_path / "out.sdf.partial.json").write_text(progress)
    (tmp_path / "out.sdf.partial").write_text(partial)
    with pytest.raises(InputError, match=message):
        ResumableSDF(tmp_path / "out.sdf").start(SETTINGS)


def test_files_get_the_usual_permissions(tmp_path):
    previous = os.umask(0o022)
    try:
        writer = ResumableSDF(tmp_path / "out.sdf")
        writer.start(SETTINGS)
        writer.add({"name": "ethanol", "n": 2}, ETHANOL)
        writer.finish()
    finally:
        os.umask(previous)
    assert {p.name: p.stat().st_mode & 0o777 for p in tmp_path.iterdir()} == {"out.sdf": 0o644,
                                                                              "out.sdf.json": 0o644}
