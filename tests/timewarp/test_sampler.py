"""Metropolis-Hastings with a conditional proposal over (x, v) reproduces a known target; exploration is biased."""

import math

import numpy as np
import torch

from molsamp.analysis import js_divergence
from molsamp.timewarp.sampler import exploration_step, mh_step


def double_well_energy(x):
    """u(x) = (x^2 - 1)^2 / 0.1 in 1D (two wells at +-1), reduced units."""
    return ((x[:, 0, 0] ** 2 - 1) ** 2) / 0.1


class ShiftedGaussianProposal:
    """x' = 0.6 x + 0.8 * (0.5 v' + noise): a deliberately asymmetric proposal with an exact density, using v'."""

    def _mean(self, x, v):
        return 0.6 * x + 0.4 * v

    def sample(self, x, generator=None):
        v = torch.randn(x.shape, generator=generator, dtype=x.dtype)
        noise = torch.randn(x.shape, generator=generator, dtype=x.dtype)
        x_next = self._mean(x, v) + 0.7 * noise
        return x_next, v, self.log_prob(x_next, v, x)

    def log_prob(self, x_next, v, x):
        log_v = -0.5 * (v**2).flatten(1).sum(1) - 0.5 * math.log(2 * math.pi)
        log_x = -0.5 * (((x_next - self._mean(x, v)) / 0.7) ** 2).flatten(1).sum(1) - math.log(0.7 * math.sqrt(2 * math.pi))
        return log_v + log_x


def exact_histogram(edges):
    grid = np.linspace(edges[0], edges[-1], 20001)
    density = np.exp(-((grid**2 - 1) ** 2) / 0.1)
    cdf = np.concatenate([[0], np.cumsum(0.5 * (density[1:] + density[:-1]) * np.diff(grid))])
    return np.diff(np.interp(edges, grid, cdf)) / cdf[-1]


def js_to_exact(samples):
    """Jensen-Shannon divergence (nats, 36 bins on [-1.8, 1.8]) of samples against the double well's density."""
    edges = np.linspace(-1.8, 1.8, 37)
    return js_divergence(np.histogram(samples, edges)[0].astype(float), exact_histogram(edges)).item()


def test_mh_with_a_conditional_proposal_reproduces_the_target():
    generator = torch.Generator().manual_seed(0)
    x = torch.zeros(400, 1, 1, dtype=torch.float64)
    u = double_well_energy(x)
    proposal, samples, accepted = ShiftedGaussianProposal(), [], []
    for step in range(600):
        result = mh_step(x, u, proposal, double_well_energy, generator)
        x, u = result.x, result.u
        accepted.append(result.accepted.double().mean().item())
        if step >= 100:
            samples.append(x[:, 0, 0].numpy().copy())
    assert js_to_exact(np.concatenate(samples)) < 0.005
    assert 0.05 < np.mean(accepted) < 0.95


def test_ignoring_the_reverse_density_would_be_wrong():
    """The same chain without the q(x|x')/q(x'|x) correction (exploration with a huge threshold) is biased."""
    generator = torch.Generator().manual_seed(1)
    x = torch.zeros(400, 1, 1, dtype=torch.float64)
    u = double_well_energy(x)
    samples = []
    for step in range(300):
        result = exploration_step(x, u, ShiftedGaussianProposal(), double_well_energy, threshold=1e9,
                                  generator=generator)
        x, u = result.x, result.u
        if step >= 100:
            samples.append(x[:, 0, 0].numpy().copy())
    assert js_to_exact(np.concatenate(samples)) > 0.05  # the proposal's own Gaussian, not the double well


def test_overflowing_energies_are_never_accepted():
    x = torch.zeros(50, 1, 1, dtype=torch.float64)

    def infinite(x_new):
        return torch.full((len(x_new),), torch.inf, dtype=torch.float64)

    result = mh_step(x, torch.zeros(50, dtype=torch.float64), ShiftedGaussianProposal(), infinite)
    assert not result.accepted.any() and torch.equal(result.x, x)
