"""Parallel MD chains with torsion jumps on peptides: one frame per round holding every chain, resume, and (slow)
the Ramachandran distribution of ala2 against the 20 ns MD reference."""

import json
import os
import signal
import time
from pathlib import Path

import mdtraj
import numpy as np
import pytest

from molsamp.analysis import ramachandran_js
from molsamp.conformers.md_jumps import TorsionJumpChain
from molsamp.errors import InputError
from molsamp.resumable import RunInterrupted
from molsamp.peptide_jumps import run_jump_chains
from molsamp.systems import load
from molsamp.chains import chain_phi_psi, load_chains

REFERENCE = Path(__file__).resolve().parent.parent / "data" / "peptides" / "references" / "ala2.npz"


@pytest.fixture(scope="module")
def ala2():
    return load("ala2")


def test_chains_write_every_round_of_every_chain(tmp_path, ala2):
    summary = run_jump_chains(ala2, tmp_path / "chain.h5", 5, n_chains=3, md_steps=10, burn_in=2, progress=False)
    xyz = load_chains(tmp_path / "chain.h5", 3)
    assert xyz.shape == (5, 3, 22, 3)
    assert mdtraj.load(str(tmp_path / "chain.h5")).topology.n_residues == 9
    assert json.loads((tmp_path / "chain.h5.json").read_text()) == summary
    assert summary["torsions"] == 2 and len(summary["acceptance_per_chain"]) == 3
    assert np.isclose(summary["acceptance"], np.mean(summary["acceptance_per_chain"]))
    assert (xyz[1:] != xyz[:-1]).any(axis=(2, 3)).all()  # MD moves every chain every round


def test_an_interrupted_run_resumes_to_the_same_chains(tmp_path, ala2, monkeypatch):
    options = dict(n_rounds=6, n_chains=2, md_steps=10, burn_in=1, progress=False, checkpoint_every=2)
    run_jump_chains(ala2, tmp_path / "straight.h5", **options)
    rounds, original = [], TorsionJumpChain.round

    def crashing_round(self):
        rounds.append(1)
        if len(rounds) == 2 * (1 + 5):  # burn-in, then killed during round 5: rounds 1-4 are checkpointed
            raise KeyboardInterrupt
        return original(self)

    monkeypatch.setattr(TorsionJumpChain, "round", crashing_round)
    with pytest.raises(KeyboardInterrupt):
        run_jump_chains(ala2, tmp_path / "resumed.h5", **options)
    monkeypatch.setattr(TorsionJumpChain, "round", original)
    run_jump_chains(ala2, tmp_path / "resumed.h5", **options)
    np.testing.assert_array_equal(load_chains(tmp_path / "resumed.h5", 2), load_chains(tmp_path / "straight.h5", 2))


def test_bad_options_are_refused(tmp_path, ala2):
    with pytest.raises(InputError, match="need n_rounds, n_chains, md_steps >= 1"):
        run_jump_chains(ala2, tmp_path / "chain.h5", 0)


def slowed_rounds(monkeypatch, seconds, sigint_at=None):
    """Make every chain round take ``seconds`` longer, and send this process Ctrl-C (SIGINT) at round call
    ``sigint_at`` (counting the burn-in rounds; chains take turns)."""
    calls, original = [], TorsionJumpChain.round

    def round(self):
        calls.append(1)
        if len(calls) == sigint_at:
            os.kill(os.getpid(), signal.SIGINT)
        time.sleep(seconds)
        return original(self)

    monkeypatch.setattr(TorsionJumpChain, "round", round)


def test_ctrl_c_saves_the_round_reached_and_the_summary_counts_the_wall_time_of_both_sessions(tmp_path, ala2,
                                                                                              monkeypatch):
    options = dict(n_rounds=6, n_chains=2, md_steps=10, burn_in=1, progress=False, checkpoint_every=4)
    run_jump_chains(ala2, tmp_path / "straight.h5", **options)
    output, partial = tmp_path / "resumed.h5", tmp_path / "resumed.h5.partial"
    slowed_rounds(monkeypatch, 0.1, sigint_at=2 * (1 + 3))  # burn-in, then Ctrl-C during round 3 of 6
    with pytest.raises(RunInterrupted, match=r"^interrupted after 3 of 6 frames, saved in .*resumed.h5.partial"):
        run_jump_chains(ala2, output, **options)
    first_session = json.loads((partial / "meta.json").read_text())
    assert first_session["frames"] == 3 and first_session["wall_time_s"] >= 8 * 0.1

    slowed_rounds(monkeypatch, 0.1)
    start = time.perf_counter()
    summary = run_jump_chains(ala2, output, **options)
    second_session = time.perf_counter() - start
    np.testing.assert_array_equal(load_chains(output, 2), load_chains(tmp_path / "straight.h5", 2))
    assert first_session["wall_time_s"] + 6 * 0.1 <= summary["wall_time_s"]
    assert summary["wall_time_s"] <= first_session["wall_time_s"] + second_session
    assert summary["ess_per_s"] == min(summary["ess_phi_psi"]) / summary["wall_time_s"]
    assert json.loads((tmp_path / "resumed.h5.json").read_text()) == summary


def test_a_damaged_chain_checkpoint_is_named(tmp_path, ala2, monkeypatch):
    options = dict(n_rounds=6, n_chains=2, md_steps=10, burn_in=0, progress=False)
    output, partial = tmp_path / "chain.h5", tmp_path / "chain.h5.partial"
    slowed_rounds(monkeypatch, 0.0, sigint_at=2 * 2)
    with pytest.raises(RunInterrupted):
        run_jump_chains(ala2, output, **options)
    monkeypatch.undo()
    with open(partial / "positions.f32", "r+b") as file:  # one coordinate of the first frame
        file.write(b"\x00\x00\x80\x7f")
    with pytest.raises(InputError, match=r"chain.h5.partial' is damaged \(positions.f32 checksum mismatch\); "
                                         r"delete it or pass overwrite=True \(--overwrite\)"):
        run_jump_chains(ala2, output, **options)
    assert run_jump_chains(ala2, output, **options, overwrite=True)["n_steps"] == 6


def test_the_summary_holds_ess_populations_and_with_plot_a_ramachandran_png(tmp_path, ala2):
    summary = run_jump_chains(ala2, tmp_path / "chain.h5", 4, n_chains=2, md_steps=10, burn_in=0, progress=False,
                              plot=True)
    assert len(summary["ess_phi_psi"]) == 2 and 0 < min(summary["ess_phi_psi"]) <= 8
    assert summary["ess_per_s"] == min(summary["ess_phi_psi"]) / summary["wall_time_s"]
    assert sum(summary["populations"].values()) == pytest.approx(1.0)
    assert summary["plot"] == str(tmp_path / "chain.png")
    assert (tmp_path / "chain.png").read_bytes().startswith(b"\x89PNG")


@pytest.mark.slow
def test_ala2_ramachandran_matches_the_md_reference(tmp_path, ala2):
    """16 chains x 400 rounds of 0.1 ps: 6,400 samples whose 36 x 36 Ramachandran histogram is within JS 0.03 of
    20 ns of plain MD (10,240 samples measured 0.0125 in benchmarks/timewarp.py; part of it is alpha_L, which the
    jumps reach and the reference never visits)."""
    run_jump_chains(ala2, tmp_path / "chain.h5", 400, n_chains=16, progress=False)
    angles = chain_phi_psi(load_chains(tmp_path / "chain.h5", 16), ala2.topology).reshape(-1, 2)
    with np.load(REFERENCE) as reference:
        js = ramachandran_js(angles[:, 0], angles[:, 1], reference["phi"], reference["psi"])
    assert js < 0.03, js
