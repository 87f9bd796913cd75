"""Weighted samples: Kish ESS, systematic resampling to equal weights, conversion to mdtraj."""

import math

import mdtraj
import numpy as np
import pytest
import torch

from molsamp.errors import InputError
from molsamp.samples import Samples, systematic_resample


def random_log_weights(n, seed):
    generator = torch.Generator().manual_seed(seed)
    return 2.0 * torch.randn(n, generator=generator, dtype=torch.float64)


@pytest.mark.parametrize("n", [7, 100, 1000])
def test_systematic_resampling_counts_are_within_one_of_n_times_the_weight(n):
    log_weights = random_log_weights(50, seed=n)
    log_weights[::7] = -math.inf  # zero weight: never drawn
    index = systematic_resample(log_weights, n, torch.Generator().manual_seed(0))
    assert index.shape == (n,) and torch.all(index[1:] >= index[:-1])
    counts = torch.bincount(index, minlength=50).double()
    expected = n * torch.softmax(log_weights, 0)
    assert (counts - expected).abs().max() < 1
    assert counts[::7].sum() == 0


def test_systematic_resampling_is_reproducible():
    log_weights = random_log_weights(20, seed=1)
    first = systematic_resample(log_weights, 30, torch.Generator().manual_seed(5))
    assert torch.equal(first, systematic_resample(log_weights, 30, torch.Generator().manual_seed(5)))


def make_samples(log_weights, n_atoms=3):
    b = len(log_weights)
    positions = torch.arange(b * n_atoms * 3, dtype=torch.float64).reshape(b, n_atoms, 3) / 10
    log_weights = log_weights.double() - torch.logsumexp(log_weights.double(), 0)
    return Samples(positions, torch.arange(b, dtype=torch.float64), log_weights, info={"sampler": "x"})


def test_ess_of_equal_and_of_one_dominant_weight():
    assert make_samples(torch.zeros(8)).ess() == pytest.approx(8.0)
    assert make_samples(torch.tensor([0.0, -50.0, -50.0, -50.0])).ess() == pytest.approx(1.0, abs=1e-12)
    # Two samples of equal weight and the rest weightless: two effective samples.
    assert make_samples(torch.tensor([0.0, 0.0, -math.inf, -math.inf])).ess() == pytest.approx(2.0)


def test_resample_gives_equal_weights_and_keeps_positions_with_their_energies():
    samples = make_samples(random_log_weights(40, seed=2))
    resampled = samples.resample(seed=3)
    assert len(resampled) == 40
    torch.testing.assert_close(resampled.log_weights, torch.full((40,), -math.log(40), dtype=torch.float64))
    assert resampled.ess() == pytest.approx(40.0)
    assert resampled.info == {"sampler": "x", "resampled_from": 40}
    for x, u in zip(resampled.x, resampled.u):
        assert torch.equal(x, samples.x[int(u)])  # u[i] == i identifies each sample
    assert len(samples.resample(n=7)) == 7


def test_resample_follows_the_weights():
    samples = make_samples(torch.log(torch.tensor([0.7, 0.2, 0.1, 0.0], dtype=torch.float64)))
    counts = torch.bincount(samples.resample(n=1000, seed=0).u.long(), minlength=4)
    assert counts.tolist() == [700, 200, 100, 0]


def test_to_mdtraj():
    samples = make_samples(torch.zeros(5), n_atoms=2)
    topology = mdtraj.Topology()
    residue = topology.add_residue("MOL", topology.add_chain())
    for name in ("C1", "O1"):
        topology.add_atom(name, mdtraj.element.get_by_symbol(name[0]), residue)
    trajectory = samples.to_mdtraj(topology)
    assert trajectory.n_frames == 5 and trajectory.n_atoms == 2
    assert trajectory.xyz.dtype == np.float32
    np.testing.assert_allclose(trajectory.xyz, samples.x.numpy(), rtol=1e-6)


def test_to_sdf_writes_each_sample_as_a_conformer_with_its_energy_and_weight(tmp_path):
    from rdkit import Chem

    molecule = Chem.AddHs(Chem.MolFromSmiles("O"))
    samples = make_samples(torch.log(torch.tensor([0.5, 0.25, 0.25])))
    samples.to_sdf(molecule, tmp_path / "water.sdf")
    records = list(Chem.SDMolSupplier(str(tmp_path / "water.sdf"), removeHs=False))
    assert len(records) == 3
    for record, x, u, weight in zip(records, samples.x, samples.u, [0.5, 0.25, 0.25]):
        np.testing.assert_allclose(record.GetConformer().GetPositions(), 10.0 * x.numpy(), atol=1e-4)  # Å
        assert float(record.GetProp("u_kT")) == pytest.approx(float(u))
        assert float(record.GetProp("weight")) == pytest.approx(weight)


def test_select_keeps_observables_aligned_and_renormalises():
    samples = make_samples(torch.zeros(4))
    samples = Samples(samples.x, samples.u, samples.log_weights, observables={"index": torch.arange(4)})
    picked = samples.select(torch.tensor([3, 1]))
    assert picked.observables["index"].tolist() == [3, 1] and picked.u.tolist() == [3.0, 1.0]
    torch.testing.assert_close(picked.log_weights.exp().sum(), torch.tensor(1.0, dtype=torch.float64))


def test_samples_round_trip_through_npz(tmp_path):
    x = torch.randn(5, 4, 2, dtype=torch.float64)
    log_w = random_log_weights(5, seed=3)
    samples = Samples(x, torch.arange(5.0, dtype=torch.float64), log_w - torch.logsumexp(log_w, 0),
                      log_q=-torch.ones(5, dtype=torch.float64), observables={"phi": torch.zeros(5)},
                      info={"ess_percent": 42.0, "log_Z": -1.5, "sampler": "text is not written"})
    back = Samples.from_npz(samples.to_npz(tmp_path / "samples.npz"))
    for name in ("x", "u", "log_weights", "log_q"):
        torch.testing.assert_close(getattr(back, name), getattr(samples, name))
    torch.testing.assert_close(back.observables["phi"], samples.observables["phi"])
    assert back.info == {"ess_percent": 42.0, "log_Z": -1.5}


def test_reading_samples_without_energies_is_a_clear_error(tmp_path):
    np.savez(tmp_path / "positions.npz", x=np.zeros((3, 4, 2)))
    with pytest.raises(InputError, match="'x' and 'energy_kT'"):
        Samples.from_npz(tmp_path / "positions.npz")
