import numpy as np
import pytest
import torch
from scipy.signal import lfilter

from molsamp.analysis import autocorrelation, integrated_autocorrelation_time, kish_ess, time_series_ess, torsion_ess
from molsamp.errors import InputError


def ar1(a: float, shape: tuple[int, int], seed: int) -> np.ndarray:
    """Columns of x[t] = a x[t-1] + noise, after a burn-in of 1000 steps."""
    noise = np.random.default_rng(seed).normal(size=(shape[0] + 1000, shape[1]))
    return lfilter([1.0], [1.0, -a], noise, axis=0)[1000:]


def test_kish_of_equal_weights_is_the_sample_size():
    assert kish_ess(np.full(250, -3.7)) == pytest.approx(250.0, rel=1e-12)


def test_kish_of_one_hot_weights_is_one():
    log_weights = np.full(100, -np.inf)
    log_weights[17] = 0.0
    assert kish_ess(log_weights) == pytest.approx(1.0, rel=1e-12)


def test_kish_is_stable_for_huge_log_weights():
    log_weights = torch.tensor([1000.0, 1000.0, 1000.0 + np.log(2.0)], dtype=torch.float64)
    # weights 1, 1, 2: (1 + 1 + 2)^2 / (1 + 1 + 4)
    assert kish_ess(log_weights) == pytest.approx(16 / 6, rel=1e-12)


def test_autocorrelation_matches_direct_sum():
    x = np.random.default_rng(0).normal(size=(50, 2))
    centred = x - x.mean(0)
    direct = np.stack([(centred[: 50 - t] * centred[t:]).sum(0) for t in range(50)]) / (centred**2).sum(0)
    rho = autocorrelation(x)
    assert rho.shape == (50, 2)
    np.testing.assert_allclose(rho.numpy(), direct, atol=1e-12)


def test_autocorrelation_of_ar1_decays_geometrically():
    rho = autocorrelation(ar1(0.7, (20_000, 1), seed=1)[:, 0])
    np.testing.assert_allclose(rho[:4].numpy(), 0.7 ** np.arange(4), atol=0.03)


def test_iid_noise_has_tau_one():
    x = np.random.default_rng(2).normal(size=(20_000, 3))
    tau = integrated_autocorrelation_time(x)
    assert tau.shape == (3,)
    np.testing.assert_allclose(tau.numpy(), 1.0, atol=0.1)


def test_anticorrelated_series_counts_as_independent():
    x = np.tile([1.0, -1.0], 500) + np.random.default_rng(5).normal(scale=0.1, size=1000)
    assert integrated_autocorrelation_time(x) == 1.0 and time_series_ess(x) == 1000


@pytest.mark.parametrize("a", [0.5, 0.8])
def test_ar1_tau_matches_theory(a):
    # One series of T = 20000 estimates tau to about sqrt(2 (2 W + 1) / T), W ~ 5 tau: 5-10 % here,
    # so the test averages four independent series.
    expected = (1 + a) / (1 - a)
    tau = integrated_autocorrelation_time(ar1(a, (20_000, 4), seed=3))
    assert tau.mean().item() == pytest.approx(expected, rel=0.15)
    assert integrated_autocorrelation_time(ar1(a, (20_000, 1), seed=4)[:, 0]) == pytest.approx(expected, rel=0.35)


def test_time_series_ess_is_length_over_tau():
    x = ar1(0.6, (20_000, 2), seed=5)
    torch.testing.assert_close(time_series_ess(x), 20_000 / integrated_autocorrelation_time(x))
    assert time_series_ess(x[:, 0]) == pytest.approx(20_000 / 4.0, rel=0.15)


def test_chains_that_mix_pool_to_the_sum_of_their_samples():
    a, expected = 0.6, (1 + 0.6) / (1 - 0.6)
    chains = np.stack([ar1(a, (5_000, 1), seed=10 + c) for c in range(4)])  # [C, T, D]
    assert time_series_ess(chains).item() == pytest.approx(4 * 5_000 / expected, rel=0.15)
    one = chains[:1]
    assert time_series_ess(one).item() == pytest.approx(time_series_ess(one[0]).item(), rel=0.02)


def test_chains_stuck_in_different_states_count_as_few_samples():
    # Each chain mixes well around its own mean, 10 standard deviations from the others': the per-chain ESS sums to
    # thousands, the pooled ESS knows there are only as many independent states as chains.
    chains = np.stack([ar1(0.5, (2_000, 1), seed=20 + c) + 10.0 * c for c in range(4)])
    per_chain = sum(time_series_ess(chain[:, 0]) for chain in chains)
    assert per_chain > 2_000 and time_series_ess(chains).item() < 40


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: kish_ess(np.zeros((2, 2))), "expected \\(B,\\)"),
        (lambda: kish_ess([-np.inf, -np.inf]), "all -inf"),
        (lambda: kish_ess([0.0, np.nan]), "NaN"),
        (lambda: integrated_autocorrelation_time(np.ones(100)), "constant"),
        (lambda: autocorrelation(np.zeros((3, 3, 3, 3))), "time series"),
        (lambda: autocorrelation(np.zeros((3, 1, 2))), "chains"),
        (lambda: autocorrelation(np.ones((3, 5, 2))), "constant"),
    ],
)
def test_bad_input_names_the_problem(call, message):
    with pytest.raises(InputError, match=message):
        call()


def test_torsion_ess_ignores_the_wrap_around():
    # A torsion jittering around +-pi: the raw angle jumps by ~2 pi, sin/cos do not, so each frame is independent.
    generator = torch.Generator().manual_seed(0)
    noise = 0.1 * torch.randn(4000, 1, generator=generator, dtype=torch.float64)
    angles = torch.remainder(torch.pi + noise + torch.pi, 2 * torch.pi) - torch.pi
    ess = torsion_ess(angles)
    assert ess.shape == (1,) and 3000 < ess.item() < 5500


def test_torsion_ess_of_a_slow_rotation_is_small():
    angles = torch.linspace(-torch.pi, 3 * torch.pi, 4000, dtype=torch.float64)[:, None]  # two slow turns
    angles = torch.remainder(angles + torch.pi, 2 * torch.pi) - torch.pi
    assert torsion_ess(angles).item() < 50
