"""The one Metropolis-Hastings rule and the kernels built on it: MH with any proposal, BAOAB Langevin, cycles."""

import math

import pytest
import torch

from molsamp.kernels import ChainState, Cycle, Langevin, MetropolisHastings, metropolis_accept
from molsamp.targets import EnergyFunction


def test_metropolis_accept_has_probability_min_one_exp_log_ratio():
    generator = torch.Generator().manual_seed(0)
    log_ratio = torch.tensor([-2.0, -0.5, 0.0, 3.0]).repeat(20_000, 1)
    rate = metropolis_accept(log_ratio, generator).double().mean(0)
    torch.testing.assert_close(rate, torch.tensor([math.exp(-2.0), math.exp(-0.5), 1.0, 1.0], dtype=torch.float64),
                               atol=0.01, rtol=0)


def test_metropolis_accept_rejects_nan_and_zero_density_and_accepts_infinite_gain():
    generator = torch.Generator().manual_seed(0)
    decisions = metropolis_accept(torch.tensor([math.nan, -math.inf, math.inf]).repeat(1000, 1), generator)
    assert not decisions[:, :2].any() and decisions[:, 2].all()


HARMONIC = EnergyFunction(lambda x: 2.0 * (x**2).sum(-1))  # u = k x^2 / 2 with k = 4: variance 1/4


class Shift:
    """x' = x + 0.3: an asymmetric proposal whose reverse density is zero, so MH must never move."""

    def propose(self, x, generator=None):
        return x + 0.3, torch.full((len(x),), -math.inf, dtype=x.dtype)


class GaussianStep:
    def propose(self, x, generator=None):
        return x + 0.8 * torch.randn(x.shape, generator=generator, dtype=x.dtype), torch.zeros(len(x), dtype=x.dtype)


def test_metropolis_hastings_counts_its_decisions_and_keeps_velocities():
    x = torch.zeros(500, 1, dtype=torch.float64)
    v = torch.ones_like(x)
    kernel = MetropolisHastings(GaussianStep(), HARMONIC, n_steps=3)
    state = kernel.step(ChainState(x, HARMONIC.energy(x), v), torch.Generator().manual_seed(0))
    assert kernel.offered == 1500 and 0.2 < kernel.acceptance < 0.9
    assert kernel.last_accepted.shape == (500,) and torch.equal(state.v, v)
    torch.testing.assert_close(state.u, HARMONIC.energy(state.x))


def test_a_proposal_with_no_way_back_is_never_accepted():
    x = torch.zeros(100, 1, dtype=torch.float64)
    kernel = MetropolisHastings(Shift(), HARMONIC)
    state = kernel.step(ChainState.start(x, HARMONIC), torch.Generator().manual_seed(0))
    assert kernel.accepted == 0 and torch.equal(state.x, x)


def test_langevin_samples_a_harmonic_oscillator_whatever_the_mass():
    """x has variance kT/k in reduced units and v has variance kT/m (up to the small time-step error)."""
    mass = 2.0
    generator = torch.Generator().manual_seed(0)
    x = torch.zeros(2000, 1, dtype=torch.float64)
    state = Langevin(HARMONIC, 300, timestep=0.05, friction=1.0, mass=mass).step(ChainState.start(x, HARMONIC),
                                                                                 generator)
    assert state.x.var().item() == pytest.approx(0.25, rel=0.1)
    assert state.v.var().item() == pytest.approx(1 / mass, rel=0.1)
    torch.testing.assert_close(state.u, HARMONIC.energy(state.x))


def test_langevin_forces_scale_with_kT():
    """The same reduced energy at twice kT: the positions keep variance 1/k, the velocities double theirs."""
    warm = EnergyFunction(HARMONIC.function, kT=2.0)
    x = torch.zeros(2000, 1, dtype=torch.float64)
    state = Langevin(warm, 300, timestep=0.03).step(ChainState.start(x, warm), torch.Generator().manual_seed(1))
    assert state.x.var().item() == pytest.approx(0.25, rel=0.1)
    assert state.v.var().item() == pytest.approx(2.0, rel=0.1)


def test_a_cycle_applies_its_kernels_in_order_or_shuffled():
    calls = []

    class Record:
        def __init__(self, name):
            self.name = name

        def step(self, state, generator=None):
            calls.append(self.name)
            return state

    state = ChainState(torch.zeros(1, 1), torch.zeros(1))
    Cycle([Record("a"), Record("b"), Record("c")]).step(state)
    assert calls == ["a", "b", "c"]
    orders = set()
    generator = torch.Generator().manual_seed(0)
    for _ in range(30):
        calls.clear()
        Cycle([Record("a"), Record("b"), Record("c")], shuffle=True).step(state, generator)
        assert sorted(calls) == ["a", "b", "c"]
        orders.add(tuple(calls))
    assert len(orders) > 1
