"""Timewarp training data and training: pairs at the right lag, uniform rotations, a likelihood that improves."""

import dataclasses

import numpy as np
import pytest
import torch

from molsamp.errors import InputError
from molsamp.kernels import ChainState, MetropolisHastings
from molsamp.systems import load
from molsamp.targets import EnergyFunction
from molsamp.timewarp import TimewarpFlow, atom_features
from molsamp.flows.rigid_bodies import random_rotations
from molsamp.timewarp.data import pairs_from_trajectory, superpose
from molsamp.timewarp.sampler import TimewarpDistribution, TimewarpProposal
from molsamp.timewarp.training import acceptance_loss, negative_log_likelihood, train_timewarp


def test_pairs_are_tau_apart():
    xyz = np.random.default_rng(0).normal(size=(10, 4, 3)).astype(np.float32)
    pairs = pairs_from_trajectory("toy", xyz, torch.zeros(4, 4), frame_interval=5.0, tau=15.0)
    assert len(pairs) == 7 and torch.equal(pairs.x0[1], torch.as_tensor(xyz[1]))
    later = torch.as_tensor(xyz[3])  # the shape of frame 3, superposed on frame 0
    assert torch.allclose(torch.cdist(pairs.x1[0], pairs.x1[0]), torch.cdist(later, later), atol=1e-5)
    assert torch.allclose(pairs.x1[0].mean(0), pairs.x0[0].mean(0), atol=1e-6)
    with pytest.raises(InputError, match="not a whole number"):
        pairs_from_trajectory("toy", xyz, torch.zeros(4, 4), frame_interval=5.0, tau=12.0)
    with pytest.raises(InputError, match="too few"):
        pairs_from_trajectory("toy", xyz, torch.zeros(4, 4), frame_interval=5.0, tau=50.0)


def test_rotations_are_proper_and_uniform():
    r = random_rotations(20000, torch.Generator().manual_seed(0), torch.float64)
    assert torch.allclose(r @ r.transpose(1, 2), torch.eye(3, dtype=torch.float64).expand(20000, 3, 3), atol=1e-12)
    assert torch.allclose(torch.linalg.det(r), torch.ones(20000, dtype=torch.float64))
    z = r[:, :, 2]  # the image of the z axis is uniform on the sphere: each coordinate has mean 0, variance 1/3
    assert torch.allclose(z.mean(0), torch.zeros(3, dtype=torch.float64), atol=0.02)
    assert torch.allclose((z**2).mean(0), torch.full((3,), 1 / 3, dtype=torch.float64), atol=0.02)


def test_training_lowers_the_negative_log_likelihood():
    """Pairs of ala2 jiggled by 0.01 nm: the flow learns a step far smaller than its initial 0.05 nm."""
    system = load("ala2")
    generator = torch.Generator().manual_seed(0)
    x = torch.as_tensor(system.positions, dtype=torch.float32)
    x0 = x + 0.02 * torch.randn(64, *x.shape, generator=generator)
    x1 = x0 + 0.01 * torch.randn(x0.shape, generator=generator)
    pairs = pairs_from_trajectory("ala2", torch.stack([x0, x1], 1).reshape(-1, *x.shape).numpy(),
                                  atom_features(system.topology), frame_interval=1.0, tau=1.0, stride=2)
    torch.manual_seed(0)
    model = TimewarpFlow(hidden=16, heads=2, layers=1, couplings=2)
    before = negative_log_likelihood(model, pairs, torch.arange(len(pairs)), torch.Generator().manual_seed(1))
    history = train_timewarp(model, [pairs], steps=60, batch_size=16, learning_rate=1e-2, checkpoint_every=30,
                             validation=[pairs], progress=False)
    after = negative_log_likelihood(model, pairs, torch.arange(len(pairs)), torch.Generator().manual_seed(1))
    assert after < before - 0.2
    assert [record["step"] for record in history] == [30, 60] and "validation_nll_ala2" in history[-1]


def _jiggled_ala2_pairs(n: int = 64):
    """ala2 pairs jiggled by 0.02 nm then 0.01 nm, and a harmonic energy (kT) of their distances to the minimum's."""
    system = load("ala2")
    generator = torch.Generator().manual_seed(0)
    x = torch.as_tensor(system.positions, dtype=torch.float32)
    x0 = x + 0.02 * torch.randn(n, *x.shape, generator=generator)
    x1 = x0 + 0.01 * torch.randn(x0.shape, generator=generator)
    pairs = pairs_from_trajectory("ala2", torch.stack([x0, x1], 1).reshape(-1, *x.shape).numpy(),
                                  atom_features(system.topology), frame_interval=1.0, tau=1.0, stride=2)
    reference = torch.cdist(x, x).double()

    def energy(y: torch.Tensor) -> torch.Tensor:
        return 20.0 * ((torch.cdist(y, y) - reference) ** 2).sum((1, 2))

    return pairs, energy


def test_acceptance_loss_gives_the_metropolis_hastings_acceptance():
    pairs, energy = _jiggled_ala2_pairs()
    torch.manual_seed(0)
    model = TimewarpFlow(hidden=16, heads=2, layers=1, couplings=2).double()
    with torch.no_grad():
        model.log_step.fill_(torch.log(torch.tensor(0.004)))
    x0 = pairs.x0.double().repeat(8, 1, 1)
    index = torch.arange(len(x0))
    doubled = dataclasses.replace(pairs, x0=x0, x1=x0, features=pairs.features.double())
    _, expected = acceptance_loss(model, doubled, index, energy, torch.Generator().manual_seed(1), rotate=False)

    target = EnergyFunction(energy)
    kernel = MetropolisHastings(TimewarpProposal(TimewarpDistribution(model, doubled.features)), target)
    kernel.step(ChainState.start(x0, target), torch.Generator().manual_seed(2))
    accepted = kernel.last_accepted
    assert 0.05 < expected < 0.95
    assert abs(accepted.double().mean() - expected) < 4 * (expected * (1 - expected) / len(x0)) ** 0.5


def test_acceptance_training_raises_the_acceptance():
    pairs, energy = _jiggled_ala2_pairs()
    torch.manual_seed(0)
    model = TimewarpFlow(hidden=16, heads=2, layers=1, couplings=2)
    history = train_timewarp(model, [pairs], steps=60, batch_size=16, learning_rate=1e-2, checkpoint_every=10,
                             progress=False, energies={"ala2": energy}, acceptance_weight=1.0)
    assert history[0]["train_acceptance"] < 0.02
    assert history[-1]["train_acceptance"] > max(0.05, 5 * history[0]["train_acceptance"])


def test_superposition_removes_rotation_and_translation_only():
    generator = torch.Generator().manual_seed(0)
    reference = torch.randn(4, 10, 3, generator=generator, dtype=torch.float64)
    rotation = random_rotations(4, generator, torch.float64)
    moved = reference @ rotation.transpose(1, 2) + torch.tensor([1.0, -2.0, 0.5], dtype=torch.float64)
    assert torch.allclose(superpose(moved, reference), reference, atol=1e-10)
    bent = moved.clone()
    bent[:, 0] += 0.3
    fitted = superpose(bent, reference)
    assert torch.allclose(torch.cdist(fitted, fitted), torch.cdist(bent, bent), atol=1e-10)  # shape kept
    assert ((fitted - reference) ** 2).sum() < ((bent - reference) ** 2).sum()
