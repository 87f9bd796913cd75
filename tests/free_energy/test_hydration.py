"""End to end: a hydration free energy from SMILES on a tiny protocol, resumed window by window; clear errors."""

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from molsamp.errors import InputError, MolsampError
from molsamp.free_energy import (LambdaSchedule, PoorOverlapWarning, Protocol, hydration_free_energies,
                                 hydration_free_energy, sample_window)

TINY = Protocol(equilibration=0.4, window_equilibration=0.2, production=0.8, sample_every=0.2)
SHORT_SCHEDULE = LambdaSchedule((1.0, 0.5, 0.0, 0.0, 0.0), (1.0, 1.0, 1.0, 0.5, 0.0))


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    return tmp_path_factory.getbasetemp() / "molsamp-cache"


@pytest.fixture(scope="module")
def methane(cache, tmp_path_factory):
    workdir = tmp_path_factory.mktemp("solvation")
    options = dict(forcefield="gaff", schedule=SHORT_SCHEDULE, protocol=TINY, padding=1.0, workdir=workdir,
                   n_workers=1, cache_dir=cache, progress=False)
    return hydration_free_energy("C", **options), options


def test_record_has_the_result_and_how_it_was_made(methane):
    record, _ = methane
    json.dumps(record)
    assert np.isfinite(record["dG_kcal_mol"]) and record["dG_err_kcal_mol"] > 0
    assert (record["method"], record["forcefield"], record["water_model"]) == ("mbar", "gaff", "TIP3P")
    assert record["lambda_schedule"] == SHORT_SCHEDULE.to_dict()
    assert len(record["legs"]["solvent"]["neighbour_overlap"]) == 4
    assert record["energy_evaluations"] > record["md_steps"] > 0
    kcal_per_kT = 0.0019872 * TINY.temperature
    legs = record["legs"]
    assert record["dG_kcal_mol"] == pytest.approx((legs["vacuum"]["dF_kT"] - legs["solvent"]["dF_kT"]) * kcal_per_kT,
                                                  rel=1e-3)


def test_methane_vacuum_leg_is_zero(methane):
    """Methane's charges interact only through excluded 1-2 and 1-3 pairs: switching them off costs nothing."""
    record, _ = methane
    assert record["legs"]["vacuum"]["dF_kT"] == pytest.approx(0.0, abs=1e-6)


def test_rerun_reuses_every_finished_window(methane, monkeypatch):
    record, options = methane

    def no_sampling(*args, **kwargs):
        raise AssertionError("a finished window was sampled again")

    monkeypatch.setattr("molsamp.free_energy.hydration.sample_window", no_sampling)
    again = hydration_free_energy("C", **options)
    assert again["dG_kcal_mol"] == record["dG_kcal_mol"]


def test_interrupted_run_resumes_the_missing_windows(methane, tmp_path, monkeypatch):
    record, options = methane
    run = Path(record["workdir"])
    shutil.copytree(run, tmp_path / run.name)
    (tmp_path / run.name / "solvent" / "window-003.npz").unlink()
    sampled = []

    def counting_sample_window(leg, schedule, state, *args):
        sampled.append((leg.name, state))
        return sample_window(leg, schedule, state, *args)

    monkeypatch.setattr("molsamp.free_energy.hydration.sample_window", counting_sample_window)
    resumed = hydration_free_energy("C", **{**options, "workdir": tmp_path})
    assert sampled == [("solvent", 3)]
    assert record["reused_windows"] == 0 and resumed["reused_windows"] == 2 * len(SHORT_SCHEDULE) - 1
    assert abs(resumed["dG_kcal_mol"] - record["dG_kcal_mol"]) < 3 * record["dG_err_kcal_mol"]


@pytest.mark.parametrize("smiles, message", [("C1CC", "invalid SMILES 'C1CC'"), ("C[Si](C)(C)C", "element 'Si'")])
def test_bad_molecules_are_named(cache, tmp_path, smiles, message):
    with pytest.raises(MolsampError, match=message):
        hydration_free_energy(smiles, cache_dir=cache, workdir=tmp_path, progress=False)


def test_one_bad_molecule_does_not_stop_a_batch(methane, cache):
    _, options = methane
    records = hydration_free_energies(["C1CC", "C"], **{k: v for k, v in options.items()})
    assert "invalid SMILES" in records[0]["error"] and records[0]["smiles"] == "C1CC"
    assert np.isfinite(records[1]["dG_kcal_mol"])


def test_unknown_method_is_refused():
    with pytest.raises(MolsampError, match="method must be one of"):
        hydration_free_energy("C", method="fep+")


def test_too_small_a_box_is_refused(cache, tmp_path):
    with pytest.raises(InputError, match="too small for the 0.9 nm cutoff"):
        hydration_free_energy("C", padding=0.5, cache_dir=cache, workdir=tmp_path, progress=False)


def test_windows_run_on_a_local_dask_cluster(methane, tmp_path):
    """The same calculation with every window a task on two worker processes agrees within the errors."""
    record, options = methane
    clustered = hydration_free_energy("C", **{**options, "workdir": tmp_path, "n_workers": 2})
    assert len(list(tmp_path.glob("*/solvent/window-*.npz"))) == len(SHORT_SCHEDULE)
    assert abs(clustered["dG_kcal_mol"] - record["dG_kcal_mol"]) < 4 * np.hypot(clustered["dG_err_kcal_mol"],
                                                                               record["dG_err_kcal_mol"])


def test_a_schedule_with_a_gap_warns_and_says_so_in_the_record(cache, tmp_path):
    gap = LambdaSchedule((1.0, 0.0, 0.0), (1.0, 1.0, 0.0))  # sterics off in one step: no overlap
    with pytest.warns(PoorOverlapWarning, match="C, solvent leg: states 1 and 2 overlap only"):
        record = hydration_free_energy("C", forcefield="gaff", schedule=gap, protocol=TINY, padding=1.0,
                                       workdir=tmp_path, n_workers=1, cache_dir=cache, progress=False)
    assert any(note.startswith("solvent leg: states 1 and 2") for note in record["warnings"])


@pytest.mark.parametrize("field, value, message", [
    ("production", 0.0, "protocol production must be positive, got 0 ps"),
    ("production", -5.0, "protocol production must be positive, got -5 ps"),
    ("temperature", -10.0, "protocol temperature must be positive, got -10 K"),
    ("temperature", float("nan"), "protocol temperature must be positive, got nan K"),
    ("pressure", 0.0, "protocol pressure must be positive, got 0 bar"),
    ("timestep", 0.0, "protocol timestep must be positive, got 0 ps"),
    ("sample_every", -1.0, "protocol sample_every must be positive, got -1 ps"),
    ("equilibration", -1.0, "protocol equilibration must be non-negative, got -1 ps"),
    ("window_equilibration", -0.1, "protocol window_equilibration must be non-negative, got -0.1 ps"),
    ("friction", -1.0, "protocol friction must be non-negative, got -1 1/ps"),
])
def test_a_protocol_refuses_nonphysical_values(field, value, message):
    with pytest.raises(InputError) as error:
        Protocol(**{field: value})
    assert str(error.value) == message


def test_a_protocol_may_skip_equilibration_and_friction():
    protocol = Protocol(equilibration=0.0, window_equilibration=0.0, friction=0.0)
    assert protocol.steps(protocol.equilibration) == 0


@pytest.mark.parametrize("options, message", [
    ({"padding": 0.0}, "padding must be positive, got 0 nm"),
    ({"padding": -1.0}, "padding must be positive, got -1 nm"),
    ({"n_workers": 0}, "the number of workers must be at least 1, got 0"),
])
def test_bad_options_are_refused_before_any_work(tmp_path, options, message):
    with pytest.raises(InputError, match=message):
        hydration_free_energies(["CCO"], cache_dir=tmp_path / "cache", workdir=tmp_path / "runs", progress=False,
                                **options)
    assert list(tmp_path.iterdir()) == []  # nothing parametrised, nothing sampled
