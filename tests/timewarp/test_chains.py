"""Timewarp chains on ala2: one mdtraj frame per step holding every chain, a summary, resume, and refusals."""

import json
import os
import signal

import mdtraj
import numpy as np
import pytest
import torch

from molsamp.errors import InputError
from molsamp.resumable import RunInterrupted
from molsamp.systems import load
from molsamp.timewarp import TimewarpFlow
from molsamp.chains import chain_ess, load_chains
from molsamp.timewarp.chains import run_chains
from molsamp.kernels import MetropolisHastings


@pytest.fixture(scope="module")
def ala2():
    return load("ala2", constraints=None)


def small_flow():
    torch.manual_seed(0)
    flow = TimewarpFlow(hidden=16, heads=2, layers=1, couplings=2)
    with torch.no_grad():
        flow.log_step.fill_(-7.0)  # 0.001 nm steps: some proposals are accepted even untrained
    return flow


def test_chains_write_every_step_of_every_chain(tmp_path, ala2):
    summary = run_chains(ala2, small_flow(), tmp_path / "chain.h5", n_steps=12, n_chains=3, n_workers=0,
                         progress=False)
    xyz = load_chains(tmp_path / "chain.h5", 3)
    assert xyz.shape == (12, 3, 22, 3)
    assert mdtraj.load(str(tmp_path / "chain.h5")).topology.n_residues == 9  # three copies of ACE-ALA-NME
    assert json.loads((tmp_path / "chain.h5.json").read_text()) == summary
    assert summary["sampler"] == "timewarp MH" and 0 < summary["acceptance"] <= 1
    moved = (xyz[1:] != xyz[:-1]).any(axis=(2, 3))
    assert moved.sum() == round(summary["acceptance"] * 36)  # a chain's frame changes exactly when it accepts


def test_exploration_is_labelled_biased(tmp_path, ala2):
    summary = run_chains(ala2, small_flow(), tmp_path / "explore.h5", n_steps=3, n_chains=2, n_workers=0,
                         exploration=1000.0, progress=False)
    assert "BIASED" in summary["sampler"] and summary["acceptance"] == 1.0


def test_an_interrupted_run_resumes_to_the_same_chain(tmp_path, ala2, monkeypatch):
    options = dict(n_steps=8, n_chains=2, n_workers=0, progress=False, checkpoint_every=2)
    run_chains(ala2, small_flow(), tmp_path / "straight.h5", **options)
    calls = []

    original = MetropolisHastings.step

    def crashing_step(*args):
        calls.append(1)
        if len(calls) == 6:
            raise KeyboardInterrupt  # killed during step 6: steps 1-4 are checkpointed
        return original(*args)

    monkeypatch.setattr(MetropolisHastings, "step", crashing_step)
    with pytest.raises(KeyboardInterrupt):
        run_chains(ala2, small_flow(), tmp_path / "resumed.h5", **options)
    assert (tmp_path / "resumed.h5.partial").is_dir()
    run_chains(ala2, small_flow(), tmp_path / "resumed.h5", **options)
    assert len(calls) == 6 + 4  # only the missing steps ran again
    assert (load_chains(tmp_path / "resumed.h5", 2) == load_chains(tmp_path / "straight.h5", 2)).all()
    with pytest.raises(InputError, match="exists"):
        run_chains(ala2, small_flow(), tmp_path / "straight.h5", **options)


def test_ctrl_c_checkpoints_the_step_reached_and_a_truncated_checkpoint_is_named(tmp_path, ala2, monkeypatch):
    options = dict(n_steps=8, n_chains=2, n_workers=0, progress=False)
    calls = []

    original = MetropolisHastings.step

    def interrupted_step(*args):
        calls.append(1)
        if len(calls) == 3:
            os.kill(os.getpid(), signal.SIGINT)
        return original(*args)

    monkeypatch.setattr(MetropolisHastings, "step", interrupted_step)
    with pytest.raises(RunInterrupted, match="interrupted after 3 of 8 frames"):
        run_chains(ala2, small_flow(), tmp_path / "chain.h5", **options)
    state = tmp_path / "chain.h5.partial" / "state.bin"
    state.write_bytes(state.read_bytes()[:-8])
    with pytest.raises(InputError, match=r"is damaged \(state.bin checksum mismatch\)"):
        run_chains(ala2, small_flow(), tmp_path / "chain.h5", **options)


def test_chain_ess_counts_independent_draws_and_distrusts_stuck_or_separated_chains():
    rng = np.random.default_rng(0)
    independent = rng.uniform(-np.pi, np.pi, size=(400, 4, 2))
    assert 0.7 * 1600 < chain_ess(independent).min() <= 1600
    stuck = np.broadcast_to(independent[:1], (400, 4, 2)).copy()
    stuck[200:, 0] = independent[1, 0]  # one chain moves once
    np.testing.assert_array_equal(chain_ess(stuck), [1.0, 1.0])  # the start they share is not a sample
    apart = np.linspace(-2.5, 2.5, 4)[None, :, None] + 0.05 * rng.normal(size=(400, 4, 2))
    assert chain_ess(apart).max() < 10  # each chain moves every step, but only within its own state


def test_constrained_systems_are_refused(tmp_path):
    with pytest.raises(InputError, match="without constraints"):
        run_chains(load("ala2"), small_flow(), tmp_path / "chain.h5", n_steps=2, n_chains=2, n_workers=0)
