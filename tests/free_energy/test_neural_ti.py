"""Neural TI on a 1D Gaussian interpolation whose free-energy difference is known: -ln(s) between N(0, 1) and
N(mu, s^2). The interpolant of independent Gaussian end points, blurred or not, is Gaussian at every t."""

import dataclasses
import math

import pytest
import torch

from molsamp.free_energy.neural_ti import (EndStates, Interpolant, TrainingHistory, TrainingSettings,
                                          neural_ti_estimate, score_matching_loss, train_neural_ti)

MU, S = 1.5, 0.5
EXACT = -math.log(S)


def energy0(x):
    return 0.5 * (x**2).sum(-1)


def energy1(x):
    return 0.5 * (((x - MU) / S) ** 2).sum(-1)


BLURRED = Interpolant(noise=0.3)


def exact_potential(interpolant):
    """-log of the density of x_t = (1 - t) x0 + t x1 + gamma(t) z for independent x0 ~ N(0, 1), x1 ~ N(mu, s^2),
    up to the normaliser; equals energy0 at t = 0 and energy1 at t = 1."""
    def potential(x, t):
        variance = (1 - t) ** 2 + (t * S) ** 2 + interpolant.gamma(t) ** 2
        return 0.5 * (x[:, 0] - t * MU) ** 2 / variance

    return potential


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


@pytest.mark.parametrize("interpolant", [Interpolant(), BLURRED], ids=["sharp", "blurred"])
def test_exact_interpolant_potential_gives_the_exact_free_energy(ends, interpolant):
    result = neural_ti_estimate(exact_potential(interpolant), ends, n_t=16, pairs_per_t=500, interpolant=interpolant,
                                generator=torch.Generator().manual_seed(1))
    assert abs(result.delta_f - EXACT) < 3 * result.error + 0.01


@pytest.mark.parametrize("interpolant", [Interpolant(), BLURRED], ids=["target", "denoising"])
def test_exact_potential_has_the_smallest_score_matching_loss(ends, interpolant):
    """The loss at the exact potential is the irreducible variance; a wrong potential scores clearly worse."""
    generator = torch.Generator().manual_seed(2)
    t = torch.rand(4000, generator=generator, dtype=torch.float64)

    def loss(potential):
        return score_matching_loss(potential, ends.x0, ends.grad0, ends.x1, ends.grad1, t, interpolant,
                                   torch.Generator().manual_seed(3))[0]

    assert loss(exact_potential(interpolant)) < loss(lambda x, t: (1 - t) * energy0(x) + t * energy1(x))


PLAIN = TrainingSettings(steps=1500, batch_size=64, pairs_every=1, learning_rate=3e-3, decay_every=1500,
                         score_weight=1.0, weight_emphasis=0.0, time_penalty=0.0)
"""Unweighted score matching with a fresh batch every step and the learning rate decayed tenfold over training."""


@pytest.mark.parametrize("interpolant", [Interpolant(), BLURRED], ids=["target", "denoising"])
def test_trained_potential_recovers_the_free_energy(ends, interpolant):
    torch.manual_seed(0)
    potential = LearnedPotential()
    generator = torch.Generator().manual_seed(3)
    losses = train_neural_ti(potential, ends, PLAIN, interpolant, generator, progress=False).loss
    assert len(losses) == PLAIN.steps and sum(losses[-100:]) < sum(losses[:100])
    result = neural_ti_estimate(potential, ends, n_t=16, pairs_per_t=500, interpolant=interpolant,
                                generator=generator)
    untrained = neural_ti_estimate(lambda x, t: (1 - t) * energy0(x) + t * energy1(x), ends, n_t=16,
                                   pairs_per_t=500, interpolant=interpolant, generator=generator)
    assert abs(result.delta_f - EXACT) < max(3 * result.error, 0.1)
    assert abs(untrained.delta_f - EXACT) > 0.3  # the plain linear path, sampled by the interpolant, is biased


def test_refinement_makes_any_path_with_the_right_ends_exact(ends):
    """The linear path's ensembles differ from the interpolant's; HMC refinement samples them instead."""
    linear = lambda x, t: (1 - t) * energy0(x) + t * energy1(x)  # noqa: E731
    result = neural_ti_estimate(linear, ends, n_t=16, pairs_per_t=500, refine_steps=60, refine_step_size=0.25,
                                refine_leapfrog=5, generator=torch.Generator().manual_seed(4))
    assert abs(result.delta_f - EXACT) < 3 * result.error + 0.02


def test_the_loss_weights_each_time_and_penalises_the_time_derivative(ends):
    t = torch.tensor([0.1, 0.5, 0.8], dtype=torch.float64)
    pairs = (ends.x0[:3], ends.grad0[:3], ends.x1[:3], ends.grad1[:3])
    linear = lambda x, t: (1 - t) * energy0(x) + t * energy1(x)  # noqa: E731
    per_time = torch.stack([score_matching_loss(linear, *(p[i:i + 1] for p in pairs), t[i:i + 1])[0]
                            for i in range(3)])
    weighted, dudt = score_matching_loss(linear, *pairs, t, score_weight=2.0, weight_emphasis=10.0, time_penalty=0.5)
    expected = (2.0 * torch.exp(10.0 * t * (t - 1)) * per_time).mean() + 0.5 * (dudt**2).mean()
    torch.testing.assert_close(weighted, expected)
    torch.testing.assert_close(dudt, energy1(pairs[0] + t[:, None] * (pairs[2] - pairs[0])) -
                               energy0(pairs[0] + t[:, None] * (pairs[2] - pairs[0])))


def test_the_learning_rate_decays_tenfold_per_decay_period_to_its_floor():
    settings = TrainingSettings(learning_rate=1e-3, decay_every=100, min_learning_rate=1e-5)
    assert [settings.learning_rate_at(step) for step in (0, 100)] == pytest.approx([1e-3, 1e-4])
    assert settings.learning_rate_at(50) == pytest.approx(1e-3 * 10**-0.5)
    assert settings.learning_rate_at(1000) == 1e-5


def test_a_resumed_run_ends_where_an_uninterrupted_one_does(ends, tmp_path):
    settings = TrainingSettings(steps=40, batch_size=8, pairs_every=5, score_weight=1.0)

    def run(steps, checkpoint):
        torch.manual_seed(0)
        potential = LearnedPotential()
        history = train_neural_ti(potential, ends, dataclasses.replace(settings, steps=steps),
                                  generator=torch.Generator().manual_seed(5), checkpoint=checkpoint,
                                  checkpoint_every=10, progress=False)
        return potential, history

    whole, whole_history = run(40, tmp_path / "whole.pt")
    run(20, tmp_path / "stopped.pt")
    resumed, resumed_history = run(40, tmp_path / "stopped.pt")  # a fresh model and generator, restored from disk
    assert resumed_history == whole_history and len(whole_history.loss) == 40
    for a, b in zip(whole.parameters(), resumed.parameters()):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    with pytest.raises(ValueError, match="needs a generator"):
        train_neural_ti(LearnedPotential(), ends, settings, checkpoint=tmp_path / "x.pt")


def test_the_running_estimate_averages_the_last_steps_with_a_block_error():
    history = TrainingHistory(loss=[0.0] * 400, mean_dudt=[100.0] * 300 + [1.0, 3.0] * 50)
    estimate, error = history.running_estimate(last=0.25, blocks=10)
    assert estimate == 2.0 and error == pytest.approx(0.0, abs=1e-12)
