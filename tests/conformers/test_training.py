"""Reverse-KL training moves the torsion model onto a known bimodal torsional density and writes checkpoints."""

import math

import pytest
import torch

from molsamp.analysis import js_divergence
from molsamp.conformers import TorsionalTarget, sample_torsions
from molsamp.conformers.features import molecule_graph
from molsamp.conformers.model import TorsionMixtureNet, load_model
from molsamp.conformers.training import train_maximum_likelihood, train_reverse_kl
from molsamp.systems import from_smiles

BINS, STEPS = 36, 200


class BimodalTarget(TorsionalTarget):
    """Butane's torsional target with the OpenMM energy replaced by u(theta) = 3 cos(2 theta) + 0.5 cos(theta) (kT):
    two wells near +-pi/2 separated by barriers of about 6 kT."""

    def __init__(self, system):
        super().__init__(system, minimise_steps=0, n_workers=0)

    def energy(self, angles):
        theta = torch.as_tensor(angles, dtype=torch.float64)[:, 0]
        return 3.0 * torch.cos(2 * theta) + 0.5 * torch.cos(theta)


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Tiny graphs: with several intra-op threads on a busy machine, torch spends its time waiting for them."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def target(tmp_path_factory):
    return BimodalTarget(from_smiles("CCCC", cache_dir=tmp_path_factory.getbasetemp() / "molsamp-cache"))


def bin_masses(log_density, per_bin=200):
    width = 2 * math.pi / (BINS * per_bin)
    theta = -math.pi + width * (torch.arange(BINS * per_bin, dtype=torch.float64) + 0.5)
    mass = (log_density(theta[:, None]).double().exp() * width).reshape(BINS, per_bin).sum(-1)
    return mass / mass.sum()


def model_js(net, target):
    """JS divergence between the model's torsion density and the exact one, on 36 bins."""
    with torch.no_grad():
        (mixture,) = net(molecule_graph(target.molecule, target.torsions))
        return js_divergence(bin_masses(lambda theta: mixture.log_prob(theta.float())),
                             bin_masses(lambda theta: -target.energy(theta))).item()


def ess_fraction(net, target, n=2000):
    """Kish ESS per sample of the model's importance weights against the target (beta = 1)."""
    with torch.no_grad():
        (mixture,) = net(molecule_graph(target.molecule, target.torsions))
    return sample_torsions(mixture, target, n, seed=11).info["ess"] / n


@pytest.fixture(scope="module")
def trained(target, tmp_path_factory):
    torch.manual_seed(0)
    net = TorsionMixtureNet(hidden=16, layers=1, components=2)
    before = {"js": model_js(net, target), "ess": ess_fraction(net, target)}
    checkpoint = tmp_path_factory.mktemp("training") / "model.pt"
    logged = []
    history = train_reverse_kl(net, [target], steps=STEPS, molecules_per_step=1, samples_per_molecule=64,
                               learning_rate=1e-2, seed=0, checkpoint=checkpoint, checkpoint_every=50,
                               progress=False, log=logged.append)
    return net, history, logged, checkpoint, before


def test_training_learns_the_bimodal_density(trained, target):
    net, history, _, _, before = trained
    assert before["js"] > 0.1  # the untrained model is far off
    assert model_js(net, target) < 0.05
    assert ess_fraction(net, target) > max(before["ess"], 0.9)


def test_the_ess_fraction_rises_during_training(trained):
    _, history, _, _, _ = trained
    first = sum(r["ess_fraction"] for r in history[:20]) / 20
    last = sum(r["ess_fraction"] for r in history[-20:]) / 20
    assert last > first and last > 0.9
    assert history[-1]["reverse_kl"] < history[0]["reverse_kl"]


def test_history_records_every_step_with_annealed_beta(trained):
    _, history, logged, _, _ = trained
    assert logged == history and [r["step"] for r in history] == list(range(STEPS))
    assert set(history[0]) == {"step", "beta", "reverse_kl", "ess_fraction", "clash_fraction"}
    betas = [r["beta"] for r in history]
    assert betas[0] == pytest.approx(0.2) and betas == sorted(betas)
    assert all(b == 1.0 for b in betas[STEPS // 2:])  # annealed over the first half
    assert all(r["clash_fraction"] == 0.0 for r in history)  # the analytic target never clashes


def test_the_checkpoint_holds_the_final_model(trained, target):
    net, _, _, checkpoint, _ = trained
    assert [p.name for p in checkpoint.parent.iterdir()] == ["model.pt"]
    loaded = load_model(checkpoint)
    assert loaded.metadata["step"] == STEPS and len(loaded.metadata["history"]) == 50
    graph = molecule_graph(target.molecule, target.torsions)
    with torch.no_grad():
        (a,), (b,) = net(graph), loaded(graph)
    assert torch.equal(a.means, b.means) and torch.equal(a.concentrations, b.concentrations)


def test_maximum_likelihood_fits_weighted_samples(target):
    # Uniform draws weighted by exp(-u) are a weighted sample of the bimodal density: fitting them by maximum
    # likelihood (forward KL) must reproduce it.
    torch.manual_seed(0)
    angles = (torch.rand(20000, 1, dtype=torch.float64) * 2 - 1) * math.pi
    net = TorsionMixtureNet(hidden=16, layers=1, components=4)
    before = model_js(net, target)
    losses = train_maximum_likelihood(net, [target], [angles.float()], [-target.energy(angles)], steps=STEPS,
                                      molecules_per_step=1, learning_rate=1e-2)
    assert losses[-1] < losses[0]
    assert model_js(net, target) < min(0.02, before / 5)
