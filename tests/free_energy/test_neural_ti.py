"""Neural TI on a 1D Gaussian interpolation whose free-energy difference is known: -ln(s) between N(0, 1) and
N(mu, s^2)."""

import math

import pytest
import torch

from molsamp.free_energy.neural_ti import EndStates, neural_ti_estimate, score_matching_loss, train_neural_ti

MU, S = 1.5, 0.5
EXACT = -math.log(S)


def energy0(x):
    return 0.5 * (x**2).sum(-1)


def energy1(x):
    return 0.5 * (((x - MU) / S) ** 2).sum(-1)


def exact_interpolant_potential(x, t):
    """-log of the density of x_t = (1 - t) x0 + t x1 for independent x0 ~ N(0, 1), x1 ~ N(mu, s^2), up to the
    normaliser; equals energy0 at t = 0 and energy1 at t = 1."""
    variance = (1 - t) ** 2 + (t * S) ** 2
    return 0.5 * (x[:, 0] - t * MU) ** 2 / variance


class LearnedPotential(torch.nn.Module):
    """(1 - t) U0 + t U1 + t (1 - t) NN(x, t): the end states hold exactly."""

    def __init__(self):
        super().__init__()
        self.net = torch.nn.Sequential(torch.nn.Linear(2, 32), torch.nn.SiLU(), torch.nn.Linear(32, 32),
                                       torch.nn.SiLU(), torch.nn.Linear(32, 1)).double()

    def forward(self, x, t):
        correction = self.net(torch.cat([x, t[:, None]], 1))[:, 0]
        return (1 - t) * energy0(x) + t * energy1(x) + t * (1 - t) * correction


@pytest.fixture(scope="module")
def ends():
    generator = torch.Generator().manual_seed(0)
    x0 = torch.randn(4000, 1, generator=generator, dtype=torch.float64)
    x1 = MU + S * torch.randn(4000, 1, generator=generator, dtype=torch.float64)
    return EndStates.from_energies(x0, energy0, x1, energy1)


def test_exact_interpolant_potential_gives_the_exact_free_energy(ends):
    result = neural_ti_estimate(exact_interpolant_potential, ends, n_t=16, pairs_per_t=500,
                                generator=torch.Generator().manual_seed(1))
    assert abs(result.delta_f - EXACT) < 3 * result.error + 0.01


def test_exact_potential_has_zero_score_matching_loss_in_expectation(ends):
    """The loss at the exact potential is the irreducible variance; a wrong potential scores clearly worse."""
    t = torch.rand(4000, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    exact, _ = score_matching_loss(exact_interpolant_potential, ends.x0, ends.grad0, ends.x1, ends.grad1, t)
    linear, _ = score_matching_loss(lambda x, t: (1 - t) * energy0(x) + t * energy1(x), ends.x0, ends.grad0,
                                    ends.x1, ends.grad1, t)
    assert exact < linear


def test_trained_potential_recovers_the_free_energy(ends):
    torch.manual_seed(0)
    potential = LearnedPotential()
    generator = torch.Generator().manual_seed(3)
    losses = train_neural_ti(potential, ends, steps=1500, batch_size=64, learning_rate=3e-3, generator=generator,
                             progress=False)
    assert losses[-100:] and sum(losses[-100:]) < sum(losses[:100])
    result = neural_ti_estimate(potential, ends, n_t=16, pairs_per_t=500, generator=generator)
    untrained = neural_ti_estimate(lambda x, t: (1 - t) * energy0(x) + t * energy1(x), ends, n_t=16,
                                   pairs_per_t=500, generator=generator)
    assert abs(result.delta_f - EXACT) < max(3 * result.error, 0.1)
    assert abs(untrained.delta_f - EXACT) > 0.3  # the plain linear path, sampled by the interpolant, is biased
