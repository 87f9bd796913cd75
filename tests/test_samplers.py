"""Samplers over kernels: independence Metropolis-Hastings (exact for any covering proposal) and annealed SMC."""

import math

import pytest
import torch

from molsamp.kernels import HMC, MALA, MetropolisHastings
from molsamp.samplers import GeometricPath, annealed_smc, independence_metropolis
from molsamp.targets import EnergyFunction


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


class Normal:
    """A one-dimensional normal Distribution over events ``[1]``."""

    event_shape = (1,)

    def __init__(self, mean, std):
        self.mean, self.std = mean, std

    def log_prob(self, x, context=None):
        return normal_log_density(x[:, 0], self.mean, self.std)

    def sample(self, n, generator=None, context=None):
        return self.mean + self.std * torch.randn(n, 1, generator=generator, dtype=torch.float64)

    def sample_and_log_prob(self, n, generator=None, context=None):
        x = self.sample(n, generator)
        return x, self.log_prob(x)


class RandomWalk:
    def propose(self, x, generator=None):
        return x + 0.5 * torch.randn(x.shape, generator=generator, dtype=x.dtype), torch.zeros(len(x), dtype=x.dtype)


def test_annealed_smc_carries_a_wide_gaussian_to_a_narrow_shifted_one():
    generator = torch.Generator().manual_seed(0)
    q = Normal(0.0, 2.0)
    # u unnormalised on purpose: SMC needs no normalising constant
    target = EnergyFunction(lambda x: -normal_log_density(x[:, 0], 1.0, 0.5) - 3.0)
    x = q.sample(20_000, generator)
    betas = [(k / 10) ** 2 for k in range(1, 11)]
    samples = annealed_smc(x, q, target, lambda path: MetropolisHastings(RandomWalk(), path, n_steps=5), betas,
                           ess_threshold=0.95, generator=generator)
    weights = samples.log_weights.exp()
    mean = float((weights * samples.x[:, 0]).sum())
    variance = float((weights * (samples.x[:, 0] - mean) ** 2).sum())
    assert abs(float(weights.sum()) - 1.0) < 1e-9
    assert mean == pytest.approx(1.0, abs=0.02) and variance == pytest.approx(0.25, abs=0.02)
    assert samples.info["log_Z"] == pytest.approx(3.0, abs=0.05)  # log of the integral of exp(-u)
    history = samples.info["history"]
    assert [h["beta"] for h in history] == betas and any(h["resampled"] for h in history)
    assert all(0.2 < h["acceptance"] < 1 for h in history)
    # The energies and proposal densities carried along are those of the final particles.
    torch.testing.assert_close(samples.u, target.energy(samples.x))
    torch.testing.assert_close(samples.log_q, q.log_prob(samples.x))


@pytest.mark.parametrize("recompute", ["log_q", "energy"])
def test_annealed_smc_reads_one_of_energy_and_proposal_density_off_the_path_energy(recompute):
    generator = torch.Generator().manual_seed(0)
    q, target = Normal(0.0, 2.0), EnergyFunction(lambda x: -normal_log_density(x[:, 0], 1.0, 0.5))
    samples = annealed_smc(q.sample(500, generator), q, target,
                           lambda path: MetropolisHastings(RandomWalk(), path, n_steps=2), [0.3, 0.7],
                           recompute=recompute, generator=generator)
    torch.testing.assert_close(samples.log_q, q.log_prob(samples.x))
    torch.testing.assert_close(samples.u, target.energy(samples.x))


class ShiftedLogDensity(Normal):
    """N(mean, std^2) times e^7: an unnormalised path density."""

    def log_prob(self, x, context=None):
        return super().log_prob(x) + 7.0


def test_annealed_smc_starts_from_particles_of_another_density_with_their_weights():
    """Particles from q0 = N(0, 3^2) weighted by q / q0 towards an unnormalised q: the same answers as drawing from
    q, and log Z is still that of exp(-u) because the mean initial weight carries q's normalisation."""
    generator = torch.Generator().manual_seed(1)
    q0, q = Normal(0.0, 3.0), ShiftedLogDensity(0.0, 2.0)
    target = EnergyFunction(lambda x: -normal_log_density(x[:, 0], 1.0, 0.5) - 3.0)
    x = q0.sample(20_000, generator)
    betas = [(k / 10) ** 2 for k in range(1, 11)]
    samples = annealed_smc(x, q, target, lambda path: MetropolisHastings(RandomWalk(), path, n_steps=5), betas,
                           log_w=q.log_prob(x) - q0.log_prob(x), ess_threshold=0.95, generator=generator)
    weights = samples.log_weights.exp()
    mean = float((weights * samples.x[:, 0]).sum())
    assert mean == pytest.approx(1.0, abs=0.02)
    assert samples.info["log_Z"] == pytest.approx(3.0, abs=0.05)


class IsotropicNormal:
    """A normal Distribution N(0, std^2 I) over events ``[2]``."""

    event_shape = (2,)

    def __init__(self, std):
        self.std = std

    def log_prob(self, x, context=None):
        return normal_log_density(x, 0.0, self.std).sum(-1)

    def sample(self, n, generator=None, context=None):
        return self.std * torch.randn(n, 2, generator=generator, dtype=torch.float64)

    def sample_and_log_prob(self, n, generator=None, context=None):
        x = self.sample(n, generator)
        return x, self.log_prob(x)


MIXTURE_MASSES = torch.tensor([2.0, 3.0], dtype=torch.float64)  # exp(-u) integrates to their sum, 5
MIXTURE_MEANS = torch.tensor([[-2.0, 0.0], [2.0, 1.0]], dtype=torch.float64)
MIXTURE_STDS = torch.tensor([0.5, 0.8], dtype=torch.float64)


def mixture_energy(x):
    """u of ``x: [B, 2]``: minus the log of 2 N(x; (-2, 0), 0.5^2 I) + 3 N(x; (2, 1), 0.8^2 I) (kT)."""
    log_components = torch.distributions.Normal(MIXTURE_MEANS, MIXTURE_STDS[:, None]).log_prob(x[:, None]).sum(-1)
    return -torch.logsumexp(torch.log(MIXTURE_MASSES) + log_components, -1)


@pytest.mark.parametrize("make_kernel, evaluations", [
    (lambda path: MetropolisHastings(MALA(path, 0.8), path, n_steps=3), None),
    (lambda path: HMC(path, 0.3, n_leapfrog=8), 9),
], ids=["MALA", "HMC"])
def test_annealed_smc_estimates_the_normalising_constant_of_a_gaussian_mixture(make_kernel, evaluations):
    """From N(0, 3^2 I) to two separated wells: log Z within 0.05 of log 5 (its spread over seeds is 0.01 to 0.02) and
    the weighted mean within four standard errors, std / sqrt(ESS), of the mixture's, (0.4, 0.6)."""
    generator = torch.Generator().manual_seed(0)
    q, target = IsotropicNormal(3.0), EnergyFunction(mixture_energy, event_shape=(2,))
    x = q.sample(4000, generator)
    betas = [(k / 30) ** 2 for k in range(1, 31)]
    samples = annealed_smc(x, q, target, make_kernel, betas, generator=generator)
    assert samples.info["log_Z"] == pytest.approx(math.log(5.0), abs=0.05)
    weights = samples.log_weights.exp()[:, None]
    mean = (weights * samples.x).sum(0)
    std = (weights * (samples.x - mean) ** 2).sum(0).sqrt()
    exact = (MIXTURE_MASSES[:, None] * MIXTURE_MEANS).sum(0) / MIXTURE_MASSES.sum()
    assert ((mean - exact).abs() < 4 * std / math.sqrt(samples.ess())).all()
    expected = None if evaluations is None else evaluations * len(x) * len(betas)
    assert samples.info.get("energy_evaluations") == expected


def test_the_geometric_path_interpolates_energies_and_keeps_zero_density():
    q = Normal(0.0, 2.0)
    target = EnergyFunction(lambda x: torch.where(x[:, 0] > 3, torch.inf, 0.5 * x[:, 0] ** 2))
    x = torch.tensor([[0.5], [-1.0], [4.0]], dtype=torch.float64)
    path = GeometricPath(q, target, 0.25)
    expected = 0.25 * 0.5 * x[:2, 0] ** 2 - 0.75 * q.log_prob(x[:2])
    torch.testing.assert_close(path.energy(x)[:2], expected)
    assert path.energy(x)[2] == math.inf
    torch.testing.assert_close(GeometricPath(q, target, 1.0).energy(x), target.energy(x))


def test_betas_must_rise_within_zero_and_one():
    q = Normal(0.0, 1.0)
    target = EnergyFunction(lambda x: 0.5 * x[:, 0] ** 2)
    with pytest.raises(ValueError, match="betas must rise"):
        annealed_smc(q.sample(10), q, target, lambda path: MetropolisHastings(RandomWalk(), path), [0.5, 0.2, 1.0])
