"""Hydration free energies of a SMILES with an unassigned stereocentre: one stated isomer, parametrised as such."""

import json
from pathlib import Path

import pytest

from molsamp.free_energy import LambdaSchedule, Protocol, hydration_free_energy
from molsamp.free_energy.hydration import _prepare
from molsamp.stereo import StereoWarning

TINY = Protocol(equilibration=0.4, window_equilibration=0.2, production=0.8, sample_every=0.2)


def test_setup_parametrises_the_first_isomer_and_keeps_it_with_the_windows(tmp_path):
    settings = {"forcefield": "gaff2", "charges": "am1bcc-fast", "padding_nm": 1.0, "seed": 0}
    with pytest.warns(StereoWarning, match=r"'CC\(O\)CC' leaves stereo unassigned; sampling CC\[C@@H\]\(C\)O"):
        job = _prepare("CC(O)CC", settings, tmp_path / "work", tmp_path / "cache")
    assert (job.smiles, job.isomeric_smiles) == ("CC(O)CC", "CC[C@@H](C)O")
    saved = json.loads((job.folder / "settings.json").read_text())
    assert (saved["smiles"], saved["isomeric_smiles"]) == ("CC(O)CC", "CC[C@@H](C)O")
    entries = (tmp_path / "cache" / "forcefields").iterdir()
    assert [(entry / "smiles.txt").read_text().strip() for entry in entries] == ["CC[C@@H](C)O"]  # built from it


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore::molsamp.free_energy.PoorOverlapWarning")  # two lambda states only
def test_record_states_the_isomer_sampled(tmp_path):
    with pytest.warns(StereoWarning):
        record = hydration_free_energy("CC(O)CC", forcefield="gaff", charges="am1bcc-fast", protocol=TINY,
                                       schedule=LambdaSchedule((1.0, 0.0, 0.0), (1.0, 1.0, 0.0)), padding=1.0,
                                       n_workers=1, cache_dir=tmp_path, workdir=tmp_path / "work", progress=False)
    assert (record["smiles"], record["isomeric_smiles"]) == ("CC(O)CC", "CC[C@@H](C)O")
    assert json.loads((Path(record["workdir"]) / "settings.json").read_text())["isomeric_smiles"] == "CC[C@@H](C)O"
