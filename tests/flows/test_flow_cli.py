"""`molsamp sample`: flow samples to an .npz with exact log-densities, optional SMC refinement, clear errors."""

import json

import numpy as np
import pytest
import torch

from molsamp.flows.generator import load_flow, save_flow, train_flow
from molsamp.samples import Samples
from molsamp.systems import load

from test_cli import assert_one_line_error, molsamp


ONE_THREAD = {"OMP_NUM_THREADS": "1"}  # small tensors: threads only compete for the cores


@pytest.fixture(scope="module")
def dw4_model(tmp_path_factory):
    """A barely trained DW4 flow: the command's plumbing, not its quality."""
    dw4 = load("dw4")
    x = torch.randn(32, 4, 2, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    flow = train_flow(dw4, Samples.unweighted(x, dw4.target().energy(x)), steps=1, batch_size=16, hidden=8,
                      layers=1, progress=False)
    return save_flow(flow, tmp_path_factory.mktemp("models") / "dw4-flow.pt", dw4)


@pytest.mark.parametrize("refine", [[], ["--refine", "smc", "--smc-betas", 1, "--smc-moves", 1]],
                         ids=["importance", "smc"])
def test_sample_writes_positions_energies_and_weights(dw4_model, tmp_path, refine):
    output = tmp_path / "dw4.npz"
    result = molsamp("sample", "dw4", "--model", dw4_model, "-n", 24, "--batch-size", 12, "-q", *refine,
                     "-o", output, env=ONE_THREAD)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("ESS ")
    info = json.loads(result.stdout.splitlines()[-1])
    with np.load(output) as data:
        assert data["x"].shape == (24, 4, 2) and data["energy_kT"].shape == (24,)
        assert np.isclose(np.logaddexp.reduce(data["log_w"]), 0.0)
        assert ("log_q" in data.files) == (not refine)  # refined particles have moved off the flow's draws
        assert float(data["log_Z"]) == pytest.approx(info["log_Z"])


def test_a_model_for_another_system_is_a_one_line_error(dw4_model, tmp_path):
    result = molsamp("sample", "lj13", "--model", dw4_model, "-n", 4, "-o", tmp_path / "lj13.npz", env=ONE_THREAD)
    assert_one_line_error(result, "not for 'lj13'")


def test_samples_are_written_as_npz(dw4_model, tmp_path):
    result = molsamp("sample", "dw4", "--model", dw4_model, "-o", tmp_path / "dw4.h5")
    assert_one_line_error(result, ".npz")


def test_train_flow_writes_a_checkpoint_with_its_card_and_continues_from_it(tmp_path):
    tiny = ["--chains", 20, "--samples-per-chain", 2, "--burn-in", 100, "--steps", 2, "--batch-size", 16,
            "--hidden", 8, "--layers", 1, "--eval-samples", 8]
    first = molsamp("train", "flow", "dw4", *tiny, "-o", tmp_path / "first.pt", env=ONE_THREAD)
    assert first.returncode == 0, first.stderr
    assert "ESS" in first.stdout and (tmp_path / "first.log.jsonl").is_file()
    second = molsamp("train", "flow", "dw4", *tiny, "--init", tmp_path / "first.pt", "--ema", 0.9,
                     "-o", tmp_path / "second.pt", env=ONE_THREAD)
    assert second.returncode == 0, second.stderr
    dw4 = load("dw4")
    before, after = (load_flow(tmp_path / name, dw4).metadata for name in ("first.pt", "second.pt"))
    assert after["training_seconds"] > before["training_seconds"]
    assert after["command"].startswith(before["command"] + "; then ") and "--ema 0.9" in after["command"]
    assert before["data"]["chains"] == 20 and 0 <= after["ess_percent"] <= 100


def test_a_molecule_trains_on_md_frames_and_its_errors_say_what_to_do(tmp_path):
    from molsamp.md import run_md
    from molsamp.systems import load_flexible

    no_data = molsamp("train", "flow", "ala2-vacuum", "-o", tmp_path / "ala2.pt", env=ONE_THREAD)
    assert_one_line_error(no_data, "make_md.py")
    trajectory = run_md(load_flexible("ala2-vacuum"), tmp_path / "md.h5", duration=20.0, save_every=1.0, seed=0,
                        platform="CPU", progress=False)
    tiny = ["--steps", 2, "--batch-size", 8, "--hidden", 8, "--layers", 1, "--eval-samples", 2]
    trained = molsamp("train", "flow", "ala2-vacuum", "--data", trajectory, *tiny, "-o", tmp_path / "ala2.pt",
                      env=ONE_THREAD)
    assert trained.returncode == 0, trained.stderr
    card = load_flow(tmp_path / "ala2.pt", load("ala2-vacuum")).metadata
    assert card["data"]["frames"] == 20 and card["data"]["sampler"] == "MD"
    refined = molsamp("sample", "ala2-vacuum", "--model", tmp_path / "ala2.pt", "--refine", "smc", "-o",
                      tmp_path / "ala2.npz", env=ONE_THREAD)
    assert_one_line_error(refined, "particle systems")

    internal = molsamp("train", "flow", "ala2-vacuum", "--data", trajectory, "--architecture", "internal",
                       "--energy-steps", 2, *tiny, "-o", tmp_path / "ala2-internal.pt", env=ONE_THREAD)
    assert internal.returncode == 0, internal.stderr
    drawn = molsamp("sample", "ala2-vacuum", "--model", tmp_path / "ala2-internal.pt", "-n", 20, "-o",
                    tmp_path / "ala2-internal.npz", env=ONE_THREAD)
    assert drawn.returncode == 0, drawn.stderr
    samples = Samples.from_npz(tmp_path / "ala2-internal.npz")
    assert samples.x.shape == (20, 22, 3) and samples.log_q is not None
    refined = molsamp("sample", "ala2-vacuum", "--model", tmp_path / "ala2-internal.pt", "-n", 20, "--refine", "smc",
                      "--smc-betas", 1, "--smc-moves", 1, "-o", tmp_path / "ala2-smc.npz", env=ONE_THREAD)
    assert refined.returncode == 0, refined.stderr
    assert Samples.from_npz(tmp_path / "ala2-smc.npz").x.shape == (20, 22, 3)
    particles = molsamp("train", "flow", "dw4", "--architecture", "internal", "-o", tmp_path / "dw4.pt",
                        env=ONE_THREAD)
    assert_one_line_error(particles, "internal coordinates are for molecules")
    not_a_crystal = molsamp("train", "flow", "dw4", "--prior", "md", "-o", tmp_path / "dw4.pt", env=ONE_THREAD)
    assert_one_line_error(not_a_crystal, "--prior are for crystals")
    crystal = molsamp("train", "flow", "ice-xi-16", "--temperature", 100, "--ema", 0.999, "-o", tmp_path / "ice.pt",
                      env=ONE_THREAD)
    assert_one_line_error(crystal, "--ema are for equivariant flows")


def test_a_crystal_trains_samples_and_gives_its_free_energy_against_mbar(tmp_path):
    tiny = ["--md-ps", 2, "--steps", 3, "--batch-size", 4, "--hidden", 8, "--layers", 2]
    for temperature, precision, prior in ((100, "float64", "harmonic"), (90, "float32", "md")):
        result = molsamp("train", "flow", "ice-xi-16", "--temperature", temperature, *tiny, "--eval-samples", 20,
                         "--conditioner-precision", precision, "--prior", prior, "-o", tmp_path / f"{temperature}.pt",
                         env=ONE_THREAD)
        assert result.returncode == 0, result.stderr
        assert "ESS" in result.stdout
        assert torch.load(tmp_path / f"{temperature}.pt", weights_only=True)["metadata"]["prior"] == prior
    more = ["--steps", 2, "--batch-size", 4, "--eval-samples", 0]
    result = molsamp("train", "flow", "ice-xi-16", "--temperature", 100, "--init", tmp_path / "100.pt", *more,
                     "-o", tmp_path / "100-more.pt", env=ONE_THREAD)
    assert result.returncode == 0, result.stderr
    card = torch.load(tmp_path / "100-more.pt", weights_only=True)["metadata"]
    assert card["energy_evaluations"] == 3 * 4 + 2 * 4 and card["prior"] == "harmonic"
    assert card["command"].count("molsamp train flow") == 2
    assert_one_line_error(molsamp("train", "flow", "ice-xi-16", "--temperature", 100, "--init", tmp_path / "100.pt",
                                  "--hidden", 16, *more, "-o", tmp_path / "wider.pt"), "--init keeps")
    assert_one_line_error(molsamp("train", "flow", "ice-xi-16", "--temperature", 90, "--init", tmp_path / "100.pt",
                                  *more, "-o", tmp_path / "colder.pt"), "trained at 100")
    result = molsamp("sample", "ice-xi-16", "--temperature", 100, "--model", tmp_path / "100.pt", "-n", 30, "-q",
                     "-o", tmp_path / "ice.npz", env=ONE_THREAD)
    assert result.returncode == 0, result.stderr
    assert "free energy" in result.stdout
    with np.load(tmp_path / "ice.npz") as samples:
        assert samples["x"].shape == (30, 48, 3) and samples["log_q"].shape == (30,)
        assert samples["box_nm"].shape == (3, 3) and float(samples["temperature"]) == 100.0
    # a reference ladder of two temperatures: the flows' own samples' energies stand in for MD
    samples = Samples.from_npz(tmp_path / "ice.npz")
    energies = samples.u.numpy() * 8.314462618e-3 * 100
    (tmp_path / "ladder").mkdir()
    np.savez(tmp_path / "ladder" / "100.00K-seed1.npz", temperature=100.0, seed=1, energies=energies,
             state=samples.observables["state"].numpy().astype(np.float32))
    np.savez(tmp_path / "ladder" / "90.00K-seed1.npz", temperature=90.0, seed=1, energies=energies)
    result = molsamp("free-energy", "ice-xi-16", "--from", 100, "--to", 90, "--from-model", tmp_path / "100.pt",
                     "--to-model", tmp_path / "90.pt", "--reference", tmp_path / "ladder", env=ONE_THREAD)
    assert result.returncode == 0, result.stderr
    record = json.loads(result.stdout)
    assert record["lfep"]["states"] == 30 and np.isfinite(record["lfep"]["delta_f_kT"])
    assert np.isfinite(record["mbar"]["delta_f_kT"])
    off_ladder = molsamp("free-energy", "ice-xi-16", "--from", 100, "--to", 80, "--from-model", tmp_path / "100.pt",
                         "--to-model", tmp_path / "90.pt", "--reference", tmp_path / "ladder", env=ONE_THREAD)
    assert_one_line_error(off_ladder, "on the ladder")
    assert_one_line_error(molsamp("sample", "ice-xi-16", "-n", 3, "-o", tmp_path / "x.npz"), "--temperature")
    assert_one_line_error(molsamp("sample", "ice-xi-16", "--temperature", 70, "-n", 3, "-o", tmp_path / "y.npz"),
                          "no shipped crystal flow", "70 K")
