"""Neural TI of a small rigid solute in water, end to end on a tiny budget: the record, resuming from the work
folder, and molecules outside the method's scope."""

import json

import pytest

from molsamp.errors import InputError
from molsamp.free_energy.mbar import MIN_OVERLAP
from molsamp.free_energy.neural_hydration import NeuralTISettings, neural_ti_hydration

TINY = NeuralTISettings(box=1.6, pressure_equilibration=1.0, end_frames=16, interval=0.2, equilibration=0.5, steps=6, batch_size=4,
                        plain_nodes=4, plain_pairs=4, windows=2, window_frames=8)


def test_a_tiny_run_gives_a_record_and_a_rerun_reuses_every_stage(tmp_path):
    record = neural_ti_hydration("C", TINY, workdir=tmp_path, progress=False)
    assert record["method"] == "neural-ti" and record["waters"] > 50
    assert record["dG_kcal_mol"] == record["estimates_kcal_mol"]["ti_along_learned_path"][0]
    assert set(record["estimates_kcal_mol"]) == {"ti_along_learned_path", "mbar_along_learned_path", "plain",
                                                 "running"}
    assert record["path"]["times"][0] == 0.0 and record["path"]["times"][-1] == 1.0
    assert record["end_state_md_steps"] == 2 * (250 + 16 * 100)
    poor_overlap = record["path"]["worst_neighbour_overlap"] < MIN_OVERLAP  # said to the user, never silent
    assert len(record["warnings"]) == poor_overlap and all("more --windows" in note for note in record["warnings"])
    json.dumps(record, allow_nan=False)
    again = neural_ti_hydration("C", TINY, workdir=tmp_path, progress=False)
    assert again["dG_kcal_mol"] == record["dG_kcal_mol"]
    assert again["estimates_kcal_mol"]["plain"] == record["estimates_kcal_mol"]["plain"]
    assert again["wall_time_s"] < record["wall_time_s"] / 2


@pytest.mark.parametrize("smiles, reason", [("CCC", "three bonds"), ("C[NH3+]", "charged")])
def test_a_molecule_outside_the_scope_is_a_clear_error(tmp_path, smiles, reason):
    with pytest.raises(InputError, match=reason):
        neural_ti_hydration(smiles, TINY, workdir=tmp_path, progress=False)

