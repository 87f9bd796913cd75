"""Markov chain kernels: independence Metropolis-Hastings (exact for any covering proposal) and BAOAB Langevin."""

import math

import pytest
import torch

from molsamp.samplers import (LangevinState, annealed_smc, energy_gradient, independence_metropolis, langevin_baoab,
                              metropolis_accept)


def normal_log_density(x, mean, std):
    return -0.5 * ((x - mean) / std) ** 2 - math.log(std * math.sqrt(2 * math.pi))


def test_a_wide_gaussian_proposal_reproduces_a_narrow_gaussian_target():
    generator = torch.Generator().manual_seed(0)
    x = 1.5 * torch.randn(50000, generator=generator, dtype=torch.float64)  # proposal N(0, 1.5^2)
    log_weights = normal_log_density(x, 1.0, 0.5) - normal_log_density(x, 0.0, 1.5)  # target N(1, 0.5^2)
    states, acceptance = independence_metropolis(log_weights, generator)
    chain = x[states]
    assert x.mean().abs() < 0.05 and (x.var() - 2.25).abs() < 0.1  # the proposal is far from the target...
    assert chain.mean().item() == pytest.approx(1.0, abs=0.02)  # ... the chain is not
    assert chain.var().item() == pytest.approx(0.25, abs=0.02)
    assert 0.2 < acceptance < 0.8


def test_the_chain_either_stays_or_moves_to_the_new_proposal():
    log_weights = torch.randn(500, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    states, acceptance = independence_metropolis(log_weights, torch.Generator().manual_seed(2))
    assert states.shape == (500,) and states[0] == 0
    previous = states[:-1]
    moved = states[1:] != previous
    assert torch.all((states[1:] == previous) | (states[1:] == torch.arange(1, 500)))
    assert acceptance == pytest.approx(moved.double().mean().item())
    # A proposal at least as probable as the current state is always accepted.
    better = log_weights[1:] >= log_weights[previous]
    assert moved[better].all()


def test_equal_weights_accept_every_proposal():
    states, acceptance = independence_metropolis(torch.zeros(100))
    assert torch.equal(states, torch.arange(100)) and acceptance == 1.0


def test_zero_weight_proposals_are_never_accepted():
    log_weights = torch.zeros(1000, dtype=torch.float64)
    log_weights[1::2] = -math.inf  # e.g. steric clashes
    states, acceptance = independence_metropolis(log_weights, torch.Generator().manual_seed(0))
    assert (states % 2 == 0).all()
    assert acceptance == pytest.approx(499 / 999)


def test_the_same_generator_seed_gives_the_same_chain():
    log_weights = torch.randn(300, generator=torch.Generator().manual_seed(3))
    first, _ = independence_metropolis(log_weights, torch.Generator().manual_seed(4))
    second, _ = independence_metropolis(log_weights, torch.Generator().manual_seed(4))
    assert torch.equal(first, second)


@pytest.mark.parametrize("first", [-math.inf, math.nan])
def test_the_first_state_must_have_a_finite_weight(first):
    with pytest.raises(ValueError, match="first state must have a finite weight"):
        independence_metropolis(torch.tensor([first, 0.0, 0.0]))


def test_langevin_baoab_samples_a_harmonic_oscillator():
    """u(x) = k x^2 / 2 in kT units: x has variance 1/k and v has variance kT/m, whatever the mass."""
    spring, mass = 4.0, 2.0
    energy = lambda x: 0.5 * spring * (x**2).sum(-1)  # noqa: E731
    generator = torch.Generator().manual_seed(0)
    x = torch.zeros(2000, 1, dtype=torch.float64)
    state = LangevinState(x, torch.zeros_like(x), energy_gradient(energy, x))
    state = langevin_baoab(state, energy, 300, timestep=0.05, friction=1.0, mass=mass, generator=generator)
    assert state.x.var().item() == pytest.approx(1 / spring, rel=0.1)
    assert state.v.var().item() == pytest.approx(1 / mass, rel=0.1)


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


def test_annealed_smc_carries_a_wide_gaussian_to_a_narrow_shifted_one():
    generator = torch.Generator().manual_seed(0)

    def log_q(x):
        return normal_log_density(x, 0.0, 2.0)

    def log_p(x):  # unnormalised on purpose: SMC needs no normalising constant
        return normal_log_density(x, 1.0, 0.5) + 3.0

    def random_walk(x, lq, lp, beta):
        """Five random-walk MH steps leaving q^(1 - beta) p^beta invariant."""
        accepted = 0
        for _ in range(5):
            new = x + 0.5 * torch.randn(x.shape, generator=generator, dtype=x.dtype)
            new_lq, new_lp = log_q(new), log_p(new)
            accept = metropolis_accept((1 - beta) * (new_lq - lq) + beta * (new_lp - lp), generator)
            x, lq, lp = torch.where(accept, new, x), torch.where(accept, new_lq, lq), torch.where(accept, new_lp, lp)
            accepted += int(accept.sum())
        return x, lq, lp, accepted / (5 * len(x))

    x = 2.0 * torch.randn(20_000, generator=generator, dtype=torch.float64)
    betas = [(k / 10) ** 2 for k in range(1, 11)]
    x, _, _, log_weights, history = annealed_smc(x, log_q(x), log_p(x), random_walk, betas, ess_threshold=0.95,
                                                 generator=generator)
    weights = log_weights.exp()
    mean = float((weights * x).sum())
    variance = float((weights * (x - mean) ** 2).sum())
    assert abs(float(weights.sum()) - 1.0) < 1e-9
    assert mean == pytest.approx(1.0, abs=0.02) and variance == pytest.approx(0.25, abs=0.02)
    assert [h["beta"] for h in history] == betas and any(h["resampled"] for h in history)
