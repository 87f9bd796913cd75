"""Reference Langevin MD: trajectory files, energies, reproducibility, checkpoint/resume, bad inputs, sampling."""

import csv
import json
import os
import signal
import subprocess
import sys
import time

import mdtraj
import numpy as np
import pytest
import torch

import molsamp.md
from molsamp.errors import InputError
from molsamp.md import run_md
from molsamp.resumable import RunInterrupted
from molsamp.trajectories import load_trajectory
from molsamp.systems import System, load
from molsamp.targets import LennardJones


@pytest.fixture(scope="module")
def ala2():
    return load("ala2")


def partial_folder(output):
    return output.with_name(output.name + ".partial")


def test_ala2_frames_times_and_energies(ala2, tmp_path):
    path = run_md(ala2, tmp_path / "ala2.h5", duration=2.0, save_every=0.1, seed=1, platform="CPU")
    trajectory = mdtraj.load(str(path))
    assert trajectory.n_frames == 20 and trajectory.n_atoms == 22
    np.testing.assert_allclose(trajectory.time, np.arange(1, 21) * 0.1, atol=1e-6)
    assert not partial_folder(path).exists()

    loaded, energies = load_trajectory(path)
    np.testing.assert_array_equal(loaded.xyz, trajectory.xyz)
    assert energies.shape == (20,) and np.isfinite(energies).all()
    with ala2.target(n_workers=0, platform="CPU") as target:
        expected = target.energy(torch.as_tensor(trajectory.xyz, dtype=torch.float64)).numpy() * target.kT
    np.testing.assert_allclose(energies, expected, rtol=1e-3)
    assert energies.std() > 1.0  # kJ/mol: the frames really move


def test_same_seed_same_frames_other_seed_other_frames(ala2, tmp_path):
    def frames(name, seed):
        return mdtraj.load(str(run_md(ala2, tmp_path / name, 0.4, 0.1, seed=seed, platform="CPU"))).xyz

    first = frames("a.h5", seed=7)
    np.testing.assert_array_equal(frames("b.h5", seed=7), first)
    assert np.abs(frames("c.h5", seed=8) - first).max() > 1e-3


def test_dcd_with_energy_csv(ala2, tmp_path):
    path = run_md(ala2, tmp_path / "ala2.dcd", 0.5, 0.1, seed=2, platform="CPU")
    with open(tmp_path / "ala2.energies.csv") as file:
        rows = list(csv.reader(file))
    assert rows[0] == ["time_ps", "potential_energy_kJ_mol"] and len(rows) == 6

    trajectory, energies = load_trajectory(path, top=ala2)
    reference, reference_energies = load_trajectory(run_md(ala2, tmp_path / "ala2.h5", 0.5, 0.1, seed=2,
                                                           platform="CPU"))
    np.testing.assert_allclose(trajectory.xyz, reference.xyz, atol=1e-5)
    np.testing.assert_allclose(trajectory.time, [0.1, 0.2, 0.3, 0.4, 0.5])
    np.testing.assert_allclose(energies, reference_energies, rtol=1e-6)
    assert mdtraj.load(str(path), top=str(tmp_path / "ala2.h5")).n_frames == 5
    with pytest.raises(InputError, match="needs a topology"):
        load_trajectory(path)


def test_resume_after_sigkill_gives_the_uninterrupted_frames(ala2, tmp_path, monkeypatch):
    output = tmp_path / "killed.h5"
    arguments = f"{str(output)!r}, 10.0, save_every=0.1, seed=3, platform='CPU', checkpoint_every=5"
    code = f"from molsamp.systems import load; from molsamp.md import run_md; run_md(load('ala2'), {arguments})"
    process = subprocess.Popen([sys.executable, "-c", code])
    meta, deadline = partial_folder(output) / "meta.json", time.monotonic() + 120
    try:
        while process.poll() is None and time.monotonic() < deadline:
            if meta.is_file() and json.loads(meta.read_text())["frames"] >= 5:
                time.sleep(0.13)  # land between two checkpoints, with frames in the buffer
                break
            time.sleep(0.005)
        assert process.poll() is None, "the run ended before it could be killed"
        os.kill(process.pid, signal.SIGKILL)
    finally:
        process.kill()
        process.wait()
    done = json.loads(meta.read_text())["frames"]
    assert 5 <= done < 100 and not output.exists()

    steps = []
    original_step = molsamp.md.OpenMMEngine.step
    monkeypatch.setattr(molsamp.md.OpenMMEngine, "step", lambda self, n: (steps.append(n), original_step(self, n)))
    run_md(ala2, output, 10.0, save_every=0.1, seed=3, platform="CPU", checkpoint_every=5)
    assert sum(steps) <= (100 - done) * 50  # resumed, not restarted
    monkeypatch.undo()

    resumed = mdtraj.load(str(output))
    reference = mdtraj.load(str(run_md(ala2, tmp_path / "reference.h5", 10.0, save_every=0.1, seed=3,
                                       platform="CPU")))
    assert resumed.n_frames == reference.n_frames == 100 and not partial_folder(output).exists()
    np.testing.assert_allclose(resumed.time, reference.time)
    np.testing.assert_allclose(resumed.xyz, reference.xyz, atol=1e-4)


def interrupt_after(monkeypatch, n_calls):
    """Make the torch engine raise KeyboardInterrupt on its ``n_calls + 1``-th ``step``."""
    calls = []
    original_step = molsamp.md._TorchEngine.step

    def step(self, n):
        if len(calls) == n_calls:
            raise KeyboardInterrupt
        calls.append(n)
        original_step(self, n)

    monkeypatch.setattr(molsamp.md._TorchEngine, "step", step)


def test_interrupted_analytic_run_resumes_extends_and_guards(tmp_path, monkeypatch):
    lj13, output = load("lj13"), tmp_path / "lj13.h5"
    interrupt_after(monkeypatch, 7)
    with pytest.raises(KeyboardInterrupt):
        run_md(lj13, output, 1.0, save_every=0.05, seed=4, checkpoint_every=3)
    monkeypatch.undo()
    assert json.loads((partial_folder(output) / "meta.json").read_text())["frames"] == 6
    for name in ("positions.f32", "energies.f64"):  # as if killed in the middle of appending the next frames
        with open(partial_folder(output) / name, "ab") as file:
            file.write(b"\xff" * 100)

    with pytest.raises(InputError, match="different run.*seed.*overwrite"):
        run_md(lj13, output, 1.0, save_every=0.05, seed=5)
    with pytest.raises(InputError, match="already has 6 frames"):
        run_md(lj13, output, 0.25, save_every=0.05, seed=4)
    run_md(lj13, output, 1.5, save_every=0.05, seed=4)  # resumed with a longer duration
    reference = run_md(lj13, tmp_path / "reference.h5", 1.5, save_every=0.05, seed=4)
    (resumed, energies), (expected, expected_energies) = load_trajectory(output), load_trajectory(reference)
    assert resumed.n_frames == 30
    np.testing.assert_allclose(resumed.time, expected.time)
    np.testing.assert_array_equal(resumed.xyz, expected.xyz)
    np.testing.assert_array_equal(energies, expected_energies)


@pytest.mark.parametrize("name, dim", [("lj13", 3), ("dw4", 2)])
def test_analytic_systems_write_padded_frames(name, dim, tmp_path):
    system = load(name)
    trajectory, energies = load_trajectory(run_md(system, tmp_path / f"{name}.h5", 0.2, 0.02, seed=0))
    assert trajectory.n_frames == 10 and trajectory.n_atoms == system.n_atoms
    assert np.isfinite(energies).all()
    assert (trajectory.xyz[..., 2] == 0).all() == (dim == 2)


def test_unwritable_or_missing_folder_is_an_input_error_before_md(ala2, tmp_path, monkeypatch):
    def no_md(*args, **kwargs):
        raise AssertionError("MD started")

    monkeypatch.setattr(molsamp.md, "OpenMMEngine", no_md)
    (tmp_path / "file").write_text("")
    for output in (tmp_path / "missing" / "out.h5", tmp_path / "file" / "out.h5"):
        with pytest.raises(InputError, match="does not exist"):
            run_md(ala2, output, 1.0, 0.1)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file"]


@pytest.mark.skipif(os.geteuid() == 0, reason="root can write into read-only folders")
def test_read_only_folder_is_an_input_error(ala2, tmp_path):
    folder = tmp_path / "read-only"
    folder.mkdir(mode=0o555)
    with pytest.raises(InputError, match="not writable"):
        run_md(ala2, folder / "out.h5", 1.0, 0.1)
    assert list(folder.iterdir()) == []


@pytest.mark.parametrize("kwargs, match", [
    ({"output": "out.xyz"}, r"unsupported suffix '\.xyz'"),
    ({"duration": -1.0}, "duration must be a positive"),
    ({"save_every": 0.003}, r"save_every \(0.003 ps\) must be a multiple of the timestep"),
    ({"duration": 1.05}, r"duration \(1.05 ps\) must be a multiple of save_every"),
    ({"checkpoint_every": 0}, "checkpoint_every"),
])
def test_bad_arguments(ala2, tmp_path, kwargs, match):
    arguments = {"output": "out.h5", "duration": 1.0, "save_every": 0.1, **kwargs}
    arguments["output"] = tmp_path / arguments["output"]
    with pytest.raises(InputError, match=match):
        run_md(ala2, **arguments)
    assert list(tmp_path.iterdir()) == []


def test_existing_output_needs_overwrite(tmp_path):
    dw4, output = load("dw4"), tmp_path / "dw4.h5"
    output.write_text("keep me")
    with pytest.raises(InputError, match="exists.*overwrite"):
        run_md(dw4, output, 0.1, 0.01)
    assert output.read_text() == "keep me"
    run_md(dw4, output, 0.1, 0.01, overwrite=True)
    assert mdtraj.load(str(output)).n_frames == 10


def lennard_jones_pair(oscillator_scale, temperature, timestep, friction):
    """Two LJ particles of masses 1 and 3 (unequal, so a wrong mass in the thermostat shows)."""
    topology = mdtraj.Topology()
    residue = topology.add_residue("UNL", topology.add_chain())
    for i in range(2):
        topology.add_atom(f"P{i}", mdtraj.element.virtual, residue)
    return System(name="lj2", topology=topology, positions=np.array([[0.0, 0.0, 0.0], [1.1, 0.0, 0.0]]),
                  temperature=temperature, masses=np.array([1.0, 3.0]), timestep=timestep, friction=friction,
                  analytic=LennardJones(n_particles=2, oscillator_scale=oscillator_scale, temperature=temperature))


def pair_distance_moments(k, temperature):
    """Mean and variance of r under p(r) ~ r^2 exp(-(LJ(r) + k r^2 / 4) / T), by quadrature."""
    r = np.linspace(0.6, 6.0, 200_001)
    log_p = 2 * np.log(r) - (r**-12 - 2 * r**-6 + k * r**2 / 4) / temperature
    p = np.exp(log_p - log_p.max())
    p /= np.trapezoid(p, r)
    mean = np.trapezoid(r * p, r)
    return mean, np.trapezoid((r - mean) ** 2 * p, r)


def check_pair_distance_distribution(tmp_path, duration, mean_tolerance, variance_tolerance):
    k, temperature = 10.0, 1.0
    system = lennard_jones_pair(k, temperature, timestep=0.01, friction=4.0)
    trajectory, _ = load_trajectory(run_md(system, tmp_path / "lj2.h5", duration, save_every=0.05, seed=11))
    r = np.linalg.norm(trajectory.xyz[:, 0] - trajectory.xyz[:, 1], axis=-1)
    mean, variance = pair_distance_moments(k, temperature)  # 1.0695, 0.0241
    assert r.mean() == pytest.approx(mean, abs=mean_tolerance)
    assert r.var() == pytest.approx(variance, abs=variance_tolerance)


def test_langevin_samples_the_lennard_jones_pair_distance(tmp_path):
    # r decorrelates in about 0.6 time units, so 250 units give ~400 independent samples: standard errors
    # ~0.0075 on the mean of r and ~0.0025 on its variance (block averages over seeds 11-13); the tolerances are 4 of
    # those. A thermostat 25% too hot moves the mean by 0.04 and the variance by 0.013.
    check_pair_distance_distribution(tmp_path, duration=250.0, mean_tolerance=0.03, variance_tolerance=0.01)


@pytest.mark.slow
def test_langevin_samples_the_lennard_jones_pair_distance_long(tmp_path):
    # 10x longer: standard errors ~0.0024 (mean) and ~0.0008 (variance), tolerances 4 of those; this also bounds
    # BAOAB's discretisation bias at this step.
    check_pair_distance_distribution(tmp_path, duration=2500.0, mean_tolerance=0.01, variance_tolerance=0.0035)


def sigint_during_step(monkeypatch, n_calls, signals=1, engine=molsamp.md._TorchEngine):
    """Send this process ``signals`` Ctrl-C (SIGINT) at the start of the engine's ``n_calls + 1``-th ``step``."""
    calls = []
    original_step = engine.step

    def step(self, n):
        if len(calls) == n_calls:
            for _ in range(signals):
                os.kill(os.getpid(), signal.SIGINT)
        calls.append(n)
        original_step(self, n)

    monkeypatch.setattr(engine, "step", step)


def test_ctrl_c_checkpoints_the_frame_in_progress_and_the_rerun_matches_an_uninterrupted_run(tmp_path, monkeypatch):
    lj13, output = load("lj13"), tmp_path / "lj13.h5"
    sigint_during_step(monkeypatch, 7)
    with pytest.raises(RunInterrupted) as stop:
        run_md(lj13, output, 1.0, save_every=0.05, seed=4, checkpoint_every=3)
    monkeypatch.undo()
    assert str(stop.value) == (f"interrupted after 8 of 20 frames, saved in {str(partial_folder(output))!r}; run the "
                               "same command again to resume")
    assert json.loads((partial_folder(output) / "meta.json").read_text())["frames"] == 8  # not 6, the last regular one
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler

    run_md(lj13, output, 1.0, save_every=0.05, seed=4, checkpoint_every=3)
    (resumed, energies), (expected, expected_energies) = (
        load_trajectory(output), load_trajectory(run_md(lj13, tmp_path / "reference.h5", 1.0, 0.05, seed=4)))
    np.testing.assert_array_equal(resumed.xyz, expected.xyz)
    np.testing.assert_array_equal(energies, expected_energies)


def test_a_second_ctrl_c_stops_at_once(tmp_path, monkeypatch):
    output = tmp_path / "lj13.h5"
    sigint_during_step(monkeypatch, 7, signals=2)
    with pytest.raises(KeyboardInterrupt) as stop:
        run_md(load("lj13"), output, 1.0, save_every=0.05, seed=4, checkpoint_every=3)
    assert not isinstance(stop.value, RunInterrupted)
    assert json.loads((partial_folder(output) / "meta.json").read_text())["frames"] == 6


def interrupted_run(system, output, monkeypatch, engine):
    """A real partial folder: ``system`` stopped by Ctrl-C after 8 of 20 frames (checkpointed every 3)."""
    sigint_during_step(monkeypatch, 7, engine=engine)
    with pytest.raises(RunInterrupted):
        run_md(system, output, 2.0, save_every=0.1, seed=4, checkpoint_every=3)
    monkeypatch.undo()
    return partial_folder(output)


def flip_byte(path, offset):
    data = bytearray(path.read_bytes())
    data[offset] ^= 0xFF
    path.write_bytes(bytes(data))


DAMAGES = {
    "state.bin truncated": (lambda p: os.truncate(p / "state.bin", (p / "state.bin").stat().st_size - 16),
                            "state.bin checksum mismatch"),
    "state.bin corrupted": (lambda p: flip_byte(p / "state.bin", -100), "state.bin checksum mismatch"),
    "state.bin missing": (lambda p: (p / "state.bin").unlink(), "state.bin is missing"),
    "positions corrupted": (lambda p: flip_byte(p / "positions.f32", 200), "positions.f32 checksum mismatch"),
    "positions truncated": (lambda p: os.truncate(p / "positions.f32", 13 * 3 * 4 * 5), "positions.f32 is short"),
    "energies corrupted": (lambda p: flip_byte(p / "energies.f64", 7 * 8 + 3), "energies.f64 checksum mismatch"),
    "meta.json corrupted": (lambda p: (p / "meta.json").write_text('{"system": "lj1'), "meta.json is not valid JSON"),
}


@pytest.mark.parametrize("damage", DAMAGES)
def test_a_damaged_partial_run_is_named_and_overwrite_discards_it(tmp_path, monkeypatch, damage):
    lj13, output = load("lj13"), tmp_path / "lj13.h5"
    partial = interrupted_run(lj13, output, monkeypatch, molsamp.md._TorchEngine)
    harm, what = DAMAGES[damage]
    harm(partial)
    with pytest.raises(InputError) as error:
        run_md(lj13, output, 2.0, save_every=0.1, seed=4, checkpoint_every=3)
    assert str(error.value) == (f"partial run {str(partial)!r} is damaged ({what}); delete it or pass "
                                "overwrite=True (--overwrite) to discard it")
    run_md(lj13, output, 2.0, save_every=0.1, seed=4, checkpoint_every=3, overwrite=True)
    assert load_trajectory(output)[0].n_frames == 20 and not partial.exists()


def test_a_truncated_openmm_state_is_named_not_loaded(ala2, tmp_path, monkeypatch):
    output = tmp_path / "ala2.h5"
    partial = interrupted_run(ala2, output, monkeypatch, molsamp.md.OpenMMEngine)
    blob = (partial / "state.bin").read_bytes()
    (partial / "state.bin").write_bytes(blob[:len(blob) // 2])
    with pytest.raises(InputError, match=r"ala2.h5.partial' is damaged \(state.bin checksum mismatch\)"):
        run_md(ala2, output, 2.0, save_every=0.1, seed=4, checkpoint_every=3)
