"""Metropolis-Hastings with a conditional proposal over (x, v) reproduces a known target; exploration is biased."""


import numpy as np
import pytest
import torch

from molsamp.analysis import js_divergence
from molsamp.kernels import ChainState, MetropolisHastings
from molsamp.targets import EnergyFunction
from molsamp.testing import ShiftedGaussianFlow, exact_bin_masses
from molsamp.timewarp.sampler import Exploration, TimewarpDistribution, TimewarpProposal


def double_well_energy(x):
    """u(x) = (x^2 - 1)^2 / 0.1 in 1D (two wells at +-1), reduced units."""
    return ((x[:, 0, 0] ** 2 - 1) ** 2) / 0.1


DOUBLE_WELL = EnergyFunction(double_well_energy)


def shifted_gaussian():
    return TimewarpDistribution(ShiftedGaussianFlow(), torch.zeros(1, 1))


def js_to_exact(samples):
    """Jensen-Shannon divergence (nats, 36 bins on [-1.8, 1.8]) of samples against the double well's density."""
    edges = np.linspace(-1.8, 1.8, 37)
    return js_divergence(np.histogram(samples, edges)[0].astype(float), exact_bin_masses(lambda x: -((x**2 - 1) ** 2) / 0.1, edges)).item()


def test_mh_with_a_conditional_proposal_reproduces_the_target():
    generator = torch.Generator().manual_seed(0)
    kernel = MetropolisHastings(TimewarpProposal(shifted_gaussian()), DOUBLE_WELL)
    state = ChainState.start(torch.zeros(400, 1, 1, dtype=torch.float64), DOUBLE_WELL)
    samples, accepted = [], []
    for step in range(600):
        state = kernel.step(state, generator)
        accepted.append(kernel.last_accepted.double().mean().item())
        if step >= 100:
            samples.append(state.x[:, 0, 0].numpy().copy())
    assert js_to_exact(np.concatenate(samples)) < 0.005
    assert 0.05 < np.mean(accepted) < 0.95


def test_ignoring_the_reverse_density_would_be_wrong():
    """The same chain without the q(x|x')/q(x'|x) correction (exploration with a huge threshold) is biased."""
    generator = torch.Generator().manual_seed(1)
    kernel = Exploration(shifted_gaussian(), DOUBLE_WELL, threshold=1e9)
    state = ChainState.start(torch.zeros(400, 1, 1, dtype=torch.float64), DOUBLE_WELL)
    samples = []
    for step in range(300):
        state = kernel.step(state, generator)
        if step >= 100:
            samples.append(state.x[:, 0, 0].numpy().copy())
    assert js_to_exact(np.concatenate(samples)) > 0.05  # the proposal's own Gaussian, not the double well


def test_overflowing_energies_are_never_accepted():
    x = torch.zeros(50, 1, 1, dtype=torch.float64)
    infinite = EnergyFunction(lambda x_new: torch.full((len(x_new),), torch.inf, dtype=torch.float64))
    kernel = MetropolisHastings(TimewarpProposal(shifted_gaussian()), infinite)
    state = kernel.step(ChainState(x, torch.zeros(50, dtype=torch.float64)))
    assert kernel.accepted == 0 and torch.equal(state.x, x)


def test_the_distribution_needs_one_context_row_per_sample():
    with pytest.raises(ValueError, match="one context row per sample"):
        shifted_gaussian().sample(3, context=torch.zeros(2, 1, 3))
