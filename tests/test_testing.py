"""The 1-D exact-density helpers of molsamp.testing against closed forms."""

import math

import numpy as np
import pytest
import scipy.stats
import torch

from molsamp.testing import assert_equivariant, assert_samples_match, exact_bin_masses, exact_draws

EDGES = np.linspace(-4.0, 4.0, 33)


def standard_normal(x):
    return -0.5 * x**2


def test_bin_masses_of_a_gaussian_are_differences_of_its_cdf():
    expected = np.diff(scipy.stats.norm.cdf(EDGES))
    np.testing.assert_allclose(exact_bin_masses(standard_normal, EDGES), expected / expected.sum(), atol=1e-8)


def test_bin_masses_of_a_periodic_density_sum_to_one():
    masses = exact_bin_masses(lambda theta: 2 * torch.cos(3 * theta), np.linspace(-math.pi, math.pi, 37))
    assert masses.sum() == pytest.approx(1.0) and masses.min() > 0
    np.testing.assert_allclose(masses[:12], masses[12:24], rtol=0, atol=1e-7)  # period 2 pi / 3


def test_exact_draws_follow_the_density_and_a_shifted_one_fails():
    draws = exact_draws(standard_normal, -6.0, 6.0, 20000, torch.Generator().manual_seed(0))
    assert draws.shape == (20000,) and draws.dtype == torch.float64
    assert_samples_match(draws, standard_normal, EDGES, max_js=0.002)
    with pytest.raises(AssertionError, match="Jensen-Shannon"):
        assert_samples_match(draws + 0.2, standard_normal, EDGES, max_js=0.002)


def test_log_weights_reweight_the_histogram():
    """Draws of N(0, 1) weighted by N(1, 1) / N(0, 1) match N(1, 1) and not N(0, 1)."""
    draws = exact_draws(standard_normal, -6.0, 6.0, 50000, torch.Generator().manual_seed(1))
    log_weights = draws - 0.5

    def shifted(x):
        return -0.5 * (x - 1) ** 2

    assert_samples_match(draws, shifted, EDGES, max_js=0.003, log_weights=log_weights)
    with pytest.raises(AssertionError, match="Jensen-Shannon"):
        assert_samples_match(draws, shifted, EDGES, max_js=0.003)


def centred_field(field):
    def centred(t, x):
        v = field(t, x)
        return v - v.mean(1, keepdim=True)
    return centred


@pytest.mark.parametrize("field, message", [
    (lambda t, x: x - x.mean(1, keepdim=True) + 1.0, "not centred"),
    (centred_field(lambda t, x: x * torch.tensor([1.0, 2.0, 3.0], dtype=x.dtype)), "rotation or reflection"),
    (centred_field(lambda t, x: x * (x**2).sum(-1, keepdim=True)), "translations"),
    (centred_field(lambda t, x: (x - x.mean(1, keepdim=True)) * torch.arange(5.0, dtype=x.dtype)[:, None]),
     "permutations"),
], ids=["off-centre", "anisotropic", "translation-dependent", "labelled particles"])
def test_the_equivariance_check_names_each_broken_symmetry(field, message):
    x = torch.randn(3, 5, 3, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    assert_equivariant(lambda t, x: torch.sin(t) * (x - x.mean(1, keepdim=True)), x, torch.tensor(0.3))
    with pytest.raises(AssertionError, match=message):
        assert_equivariant(field, x, torch.tensor(0.3))
