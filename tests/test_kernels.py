"""The one Metropolis-Hastings rule and the kernels built on it: MH with any proposal, BAOAB Langevin, cycles, and
the gradient-based exact samplers MALA and HMC."""

import math

import numpy as np
import pytest
import torch

from molsamp.kernels import HMC, MALA, ChainState, Cycle, Langevin, MetropolisHastings, metropolis_accept
from molsamp.targets import EnergyFunction, check_positions
from molsamp.testing import (assert_kernel_contract, assert_kernel_resumes, assert_kernel_stationary,
                             assert_samples_match, exact_draws)


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


# ------------------------------------------------------------------------------------- gradient-based exact kernels


def normal_log_density(x, mean, std):
    return -0.5 * ((x - mean) / std) ** 2 - math.log(std * math.sqrt(2 * math.pi))


def test_the_mala_log_ratio_is_that_of_its_gaussian_proposals():
    """On u = x^2 / 2 (grad u = x) MALA proposes x' ~ N(x (1 - h^2 / 2), h^2): both densities in closed form."""
    h = 0.7
    quadratic = EnergyFunction(lambda x: 0.5 * x[:, 0] ** 2, event_shape=(1,))
    x = torch.tensor([[-2.0], [-0.3], [0.0], [0.5], [1.7]], dtype=torch.float64)
    x_new, log_ratio = MALA(quadratic, h).propose(x, torch.Generator().manual_seed(0))
    noise = torch.randn(x.shape, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    torch.testing.assert_close(x_new, x * (1 - h**2 / 2) + h * noise)
    forward = normal_log_density(x_new[:, 0], x[:, 0] * (1 - h**2 / 2), h)
    backward = normal_log_density(x[:, 0], x_new[:, 0] * (1 - h**2 / 2), h)
    torch.testing.assert_close(log_ratio, backward - forward)


def double_well_log_density(x):
    """Two wells at +-1 (reduced lengths), 4 kT barrier."""
    return -((x**2 - 1) ** 2) / 0.25


DOUBLE_WELL = EnergyFunction(lambda x: -double_well_log_density(x[:, 0]), event_shape=(1,))
GRADIENT_KERNELS = {  # step sizes well below the wells' width, 1/sqrt(32)
    "MALA": lambda target: MetropolisHastings(MALA(target, 0.15), target),
    "HMC": lambda target: HMC(target, 0.1, n_leapfrog=5),
}


def double_well_start(n):
    x = exact_draws(double_well_log_density, -2.5, 2.5, n, torch.Generator().manual_seed(0))[:, None]
    return ChainState.start(x, DOUBLE_WELL)


@pytest.mark.parametrize("make_kernel", GRADIENT_KERNELS.values(), ids=GRADIENT_KERNELS.keys())
def test_gradient_kernels_keep_the_kernel_contract_and_resume_bitwise(make_kernel):
    assert_kernel_contract(make_kernel(DOUBLE_WELL), double_well_start(16), DOUBLE_WELL)
    assert_kernel_resumes(lambda: make_kernel(DOUBLE_WELL), double_well_start(16), steps=3)


@pytest.mark.parametrize("make_kernel", GRADIENT_KERNELS.values(), ids=GRADIENT_KERNELS.keys())
def test_gradient_kernels_leave_a_double_well_invariant(make_kernel):
    assert_kernel_stationary(make_kernel(DOUBLE_WELL), double_well_start(4000), lambda x: x[:, 0],
                             double_well_log_density, np.linspace(-2.0, 2.0, 41), steps=10, max_js=0.005)


STDS = torch.tensor([0.5, 2.0], dtype=torch.float64)
ANISOTROPIC = EnergyFunction(lambda x: 0.5 * ((x / STDS) ** 2).sum(-1), event_shape=(2,))  # N(0, diag(STDS^2))


@pytest.mark.parametrize("make_kernel, steps", [
    (lambda: MetropolisHastings(MALA(ANISOTROPIC, 0.4), ANISOTROPIC), 300),
    (lambda: HMC(ANISOTROPIC, 0.2, n_leapfrog=8, mass=1 / STDS**2), 20),  # mass 1 / variance: one period, 2 pi
], ids=["MALA", "HMC with a mass per axis"])
def test_gradient_kernels_sample_an_anisotropic_gaussian_from_a_point(make_kernel, steps):
    """2000 chains from (1, -3) forget their start: mean 0 and standard deviations STDS, within about four standard
    errors (STDS / sqrt(2000) and 1 / sqrt(4000) relative)."""
    kernel = make_kernel()
    state = ChainState.start(torch.tensor([1.0, -3.0], dtype=torch.float64).repeat(2000, 1), ANISOTROPIC)
    generator = torch.Generator().manual_seed(0)
    for _ in range(steps):
        state = kernel.step(state, generator)
    assert (state.x.mean(0).abs() < 0.1 * STDS).all()
    torch.testing.assert_close(state.x.std(0), STDS, atol=0, rtol=0.06)
    for axis, std in enumerate(STDS.tolist()):
        assert_samples_match(state.x[:, axis], lambda x: normal_log_density(x, 0.0, std),
                             np.linspace(-3.5 * std, 3.5 * std, 21), max_js=0.005)
    assert 0.5 < kernel.acceptance < 1


def test_hmc_with_small_steps_conserves_energy_and_accepts_nearly_every_trajectory():
    """Leapfrog's energy error on a harmonic oscillator (angular frequency 2) is O(step^2)."""
    kernel = HMC(HARMONIC, 0.01, n_leapfrog=20)
    state = ChainState.start(0.5 * torch.randn(1000, 1, generator=torch.Generator().manual_seed(0),
                                               dtype=torch.float64), HARMONIC)
    kernel.step(state, torch.Generator().manual_seed(1))
    assert kernel.offered == 1000 and kernel.acceptance > 0.999
    assert kernel.n_evaluations == 1000 * 21  # the start and the end of each leapfrog step


def test_hmc_rejected_chains_keep_their_positions_and_energies():
    """With steps near leapfrog's stability limit (1 here) the energy error is large and many trajectories fail."""
    kernel = HMC(HARMONIC, 0.9, n_leapfrog=3)
    x = 0.5 * torch.randn(1000, 1, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    v = torch.ones_like(x)
    start = ChainState(x, HARMONIC.energy(x), v)
    state = kernel.step(start, torch.Generator().manual_seed(1))
    accepted = kernel.last_accepted
    assert 0.1 < kernel.acceptance < 0.9 and kernel.accepted == int(accepted.sum())
    assert torch.equal(state.x[~accepted], x[~accepted]) and torch.equal(state.u[~accepted], start.u[~accepted])
    assert (state.x[accepted] != x[accepted]).all() and torch.equal(state.v, v)
    torch.testing.assert_close(state.u, HARMONIC.energy(state.x))


def walled_energy(x):
    """u = x^2 / 2 - log(1 - x) (kT) of ``x: [C, 1, 1]``, written so that u and its gradient are NaN beyond x = 1;
    +inf (with zero gradient) below x = -1.5. Non-finite positions raise, as those of molecular targets do."""
    check_positions(x, 1, 1)
    x = x[:, 0, 0]
    return torch.where(x < -1.5, torch.inf, 0.5 * x**2 - 2 * torch.log(torch.sqrt(1 - x)))


@pytest.mark.parametrize("make_kernel", [
    lambda target: MetropolisHastings(MALA(target, 1.0), target),
    lambda target: HMC(target, 0.5, n_leapfrog=4),
], ids=["MALA", "HMC"])
def test_gradient_kernels_reject_nan_and_infinite_energies(make_kernel):
    """Chains inside the walls stay inside; one beyond them (NaN energy and gradient) stays where it is."""
    walled = EnergyFunction(walled_energy, event_shape=(1, 1))
    kernel = make_kernel(walled)
    x = torch.cat([torch.linspace(-1.4, 0.9, 500, dtype=torch.float64), torch.tensor([1.2], dtype=torch.float64)])
    state = ChainState.start(x[:, None, None], walled)
    generator = torch.Generator().manual_seed(0)
    for _ in range(5):
        state = kernel.step(state, generator)
    inside = state.x[:-1, 0, 0]
    assert torch.isfinite(state.u[:-1]).all() and ((-1.5 <= inside) & (inside < 1)).all()
    assert state.x[-1, 0, 0] == 1.2 and state.u[-1].isnan()
    assert 0.05 < kernel.acceptance < 0.95
