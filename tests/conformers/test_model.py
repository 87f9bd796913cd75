"""The von Mises torsion mixture: a normalised density on the torus, exact sampling, batching, save and load."""

import math
import os

import pytest
import scipy.stats
import torch
from rdkit import Chem
from torch_geometric.data import Batch

from molsamp.analysis import js_divergence, torsion_histogram
from molsamp.conformers import rotatable_torsions
from molsamp.conformers.features import molecule_graph
from molsamp.conformers.model import TorsionMixture, TorsionMixtureNet, _von_mises_standard, load_model, save_model
from molsamp.errors import InputError

BINS = 36


def graph(smiles):
    molecule = Chem.AddHs(Chem.MolFromSmiles(smiles))
    return molecule_graph(molecule, rotatable_torsions(molecule))


def tiny_net(seed=0, **options):
    torch.manual_seed(seed)
    return TorsionMixtureNet(**{"hidden": 16, "layers": 1, "components": 2, **options}).eval()


def hand_mixture():
    """Two torsions: a lopsided bimodal one and a sharp unimodal one (plus a negligible broad component)."""
    return TorsionMixture(
        logits=torch.tensor([[0.0, -1.0, -30.0], [2.0, -3.0, -3.0]], dtype=torch.float64),
        means=torch.tensor([[-2.0, 1.0, 0.0], [3.0, -1.5, 0.5]], dtype=torch.float64),
        concentrations=torch.tensor([[4.0, 12.0, 1.0], [25.0, 0.5, 2.0]], dtype=torch.float64),
    )


def grid(m):
    """Midpoints of ``m`` equal cells over one turn and the cell width (the midpoint rule is spectrally accurate
    for smooth periodic functions)."""
    width = 2 * math.pi / m
    return -math.pi + width * (torch.arange(m, dtype=torch.float64) + 0.5), width


def bin_masses(log_density, bins=BINS, per_bin=200):
    """Probability of each of ``bins`` equal bins over (-pi, pi] under a 1D density, by the midpoint rule."""
    theta, width = grid(bins * per_bin)
    return (log_density(theta).exp() * width).reshape(bins, per_bin).sum(-1)


def marginal(mixture, t):
    return TorsionMixture(mixture.logits[t:t + 1], mixture.means[t:t + 1], mixture.concentrations[t:t + 1])


@pytest.mark.parametrize("concentration", [0.01, 3.0, 500.0])
def test_one_torsion_density_integrates_to_one(concentration):
    mixture = TorsionMixture(torch.tensor([[0.3, -0.2]]), torch.tensor([[-3.0, 1.0]]),
                             torch.tensor([[concentration, 2.0]]))
    theta, width = grid(20000)
    total = mixture.log_prob(theta[:, None].float()).double().exp().sum() * width
    assert total.item() == pytest.approx(1.0, abs=1e-4)


def test_network_density_of_a_two_torsion_molecule_integrates_to_one_on_the_torus():
    with torch.no_grad():
        (mixture,) = tiny_net()(graph("CCCO"))
    assert mixture.n_torsions == 2
    theta, width = grid(400)
    pairs = torch.cartesian_prod(theta, theta).float()
    total = mixture.log_prob(pairs).double().exp().sum() * width**2
    assert total.item() == pytest.approx(1.0, abs=1e-4)


def test_samples_follow_the_density():
    mixture = hand_mixture()
    angles = mixture.sample(20000, torch.Generator().manual_seed(0))
    assert angles.shape == (20000, 2)
    assert (angles > -math.pi).all() and (angles <= math.pi).all()
    histograms = torsion_histogram(angles, BINS)
    for t in range(2):
        expected = bin_masses(lambda theta: marginal(mixture, t).log_prob(theta[:, None]))
        assert js_divergence(histograms[t], expected).item() < 0.01, f"torsion {t}"
    # The check has teeth: the other torsion's density is far off.
    assert js_divergence(histograms[0], bin_masses(lambda theta: marginal(mixture, 1).log_prob(theta[:, None]))) > 0.1


def test_uniform_mixture_is_the_flat_density_on_the_torus():
    flat = TorsionMixture.uniform(3)
    angles = flat.sample(20000, torch.Generator().manual_seed(2))
    assert angles.shape == (20000, 3)
    log_density = flat.log_prob(angles).double()
    assert torch.allclose(log_density, torch.full_like(log_density, -3 * math.log(2 * math.pi)))
    for histogram in torsion_histogram(angles, BINS):
        assert js_divergence(histogram, torch.full((BINS,), 1.0 / BINS)).item() < 0.005


def test_blending_with_the_flat_density():
    mixture = hand_mixture()
    blended = mixture.with_uniform(0.25)
    angles, width = grid(60)
    theta = torch.cartesian_prod(angles, angles)
    expected = 0.75 * marginal(mixture, 0).log_prob(theta[:, :1]).exp() + 0.25 / (2 * math.pi)
    assert torch.allclose(marginal(blended, 0).log_prob(theta[:, :1]).exp(), expected)
    total = blended.log_prob(theta).exp().sum() * width**2
    assert torch.allclose(total, torch.tensor(1.0, dtype=torch.float64))
    with pytest.raises(ValueError, match="uniform weight"):
        mixture.with_uniform(1.0)


def test_sampling_is_reproducible_with_a_generator():
    mixture = hand_mixture()
    first = mixture.sample(50, torch.Generator().manual_seed(3))
    assert torch.equal(first, mixture.sample(50, torch.Generator().manual_seed(3)))
    assert not torch.equal(first, mixture.sample(50, torch.Generator().manual_seed(4)))


@pytest.mark.parametrize("kappa", [0.5, 20.0])
def test_von_mises_rejection_sampler_matches_scipy(kappa):
    samples = _von_mises_standard(torch.full((5000,), kappa), torch.Generator().manual_seed(1))
    assert samples.abs().max() <= math.pi
    result = scipy.stats.kstest(samples.numpy(), scipy.stats.vonmises(kappa).cdf)
    assert result.pvalue > 1e-3, result


def test_batched_forward_equals_one_molecule_at_a_time():
    net = tiny_net(components=3)
    graphs = [graph(s) for s in ("CCCO", "CC", "CC(C)Cc1ccc(cc1)C(C)C(=O)O", "CCO")]  # ethane has no torsion
    with torch.no_grad():
        batched = net(Batch.from_data_list(graphs))
        single = [net(g)[0] for g in graphs]
    assert [m.n_torsions for m in batched] == [2, 0, 5, 1]
    for b, s in zip(batched, single):
        for name in ("logits", "means", "concentrations"):
            torch.testing.assert_close(getattr(b, name), getattr(s, name), rtol=1e-5, atol=1e-5)


def test_network_output_is_a_valid_mixture():
    with torch.no_grad():
        (mixture,) = tiny_net()(graph("CC(C)Cc1ccc(cc1)C(C)C(=O)O"))
    assert mixture.logits.shape == mixture.means.shape == mixture.concentrations.shape == (5, 2)
    torch.testing.assert_close(mixture.logits.exp().sum(-1), torch.ones(5))
    assert (mixture.means.abs() <= math.pi).all() and (mixture.concentrations > 0).all()


def test_gradients_reach_every_parameter():
    net = TorsionMixtureNet(hidden=16, layers=2, components=2)
    (mixture,) = net(graph("CCCO"))
    mixture.log_prob(torch.tensor([[0.3, -2.0], [1.0, 2.5]])).sum().backward()
    missing = [name for name, p in net.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
    assert not missing


def test_save_and_load_round_trip(tmp_path):
    net, path = tiny_net(), tmp_path / "model.pt"
    save_model(net, path, step=7, note="tiny")
    loaded = load_model(path)
    assert loaded.config == net.config and loaded.metadata == {"step": 7, "note": "tiny"}
    assert not loaded.training
    assert [p.name for p in tmp_path.iterdir()] == ["model.pt"]  # no temporary file left behind
    g = graph("CC(C)Cc1ccc(cc1)C(C)C(=O)O")
    with torch.no_grad():
        (a,), (b,) = net(g), loaded(g)
    for name in ("logits", "means", "concentrations"):
        assert torch.equal(getattr(a, name), getattr(b, name))


def test_loading_a_missing_file(tmp_path):
    with pytest.raises(InputError, match="'.*nowhere.pt' does not exist"):
        load_model(tmp_path / "nowhere.pt")


def test_loading_random_bytes(tmp_path):
    path = tmp_path / "noise.pt"
    path.write_bytes(os.urandom(2048))
    with pytest.raises(InputError, match="noise.pt: not a readable torch checkpoint") as error:
        load_model(path)
    assert "\n" not in str(error.value) and "weights_only" not in str(error.value)


@pytest.mark.parametrize("content", [
    {"weights": {}},
    [1, 2, 3],
    {"format": "molsamp.torsion-mixture/1"},  # no config or weights
    {"format": "molsamp.torsion-mixture/0", "config": {}, "state": {}},
])
def test_loading_a_dict_of_the_wrong_format(tmp_path, content):
    path = tmp_path / "other.pt"
    torch.save(content, path)
    with pytest.raises(InputError, match="other.pt: not a molsamp torsion-mixture checkpoint"):
        load_model(path)


def test_loading_weights_that_do_not_fit_the_architecture(tmp_path):
    path = tmp_path / "mismatched.pt"
    save_model(tiny_net(hidden=8), path)
    checkpoint = torch.load(path, weights_only=True)
    checkpoint["config"]["hidden"] = 16
    torch.save(checkpoint, path)
    with pytest.raises(InputError, match="mismatched.pt: weights do not match the architecture") as error:
        load_model(path)
    assert "\n" not in str(error.value)


def test_the_shipped_model_loads_and_covers_unseen_molecules():
    from molsamp.conformers.generate import DEFAULT_MODEL

    model = load_model(DEFAULT_MODEL)
    assert model.metadata["step"] == 1200
    mol = Chem.AddHs(Chem.MolFromSmiles("CC(C)Cc1ccc(cc1)C(C)C(=O)O"))  # ibuprofen: not in the training set
    mixture = model(molecule_graph(mol, rotatable_torsions(mol)))[0]
    assert mixture.n_torsions == 5 and torch.isfinite(mixture.concentrations).all()


def test_building_and_running_the_model_leaves_no_temporary_file(tmp_path):
    """torch-geometric writes generated code for its layers into the temporary folder unless told otherwise."""
    import subprocess
    import sys

    code = ("import tempfile; from rdkit import Chem; "
            "from molsamp.conformers import rotatable_torsions; from molsamp.conformers.features import molecule_graph; "
            "from molsamp.conformers.generate import DEFAULT_MODEL; from molsamp.conformers.model import load_model; "
            "mol = Chem.AddHs(Chem.MolFromSmiles('CCCO')); "
            "load_model(DEFAULT_MODEL)(molecule_graph(mol, rotatable_torsions(mol)))[0].sample(3); "
            "print(tempfile.gettempdir())")
    temporary = tmp_path / "tmp"
    temporary.mkdir()
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            env={**os.environ, "TMPDIR": str(temporary)})
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == str(temporary)
    assert list(temporary.iterdir()) == []
