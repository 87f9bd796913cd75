import math

import numpy as np
import pytest
import torch

from molsamp.analysis import free_energy_surface, ramachandran_histogram, torsion_histogram
from molsamp.errors import InputError


def test_torsion_histograms_are_normalised_per_torsion():
    angles = np.random.default_rng(0).uniform(-math.pi, math.pi, size=(1000, 3))
    hist = torsion_histogram(angles, bins=24)
    assert hist.shape == (3, 24) and hist.dtype == torch.float64
    torch.testing.assert_close(hist.sum(-1), torch.ones(3, dtype=torch.float64))
    torch.testing.assert_close(hist[1], torsion_histogram(angles[:, 1], bins=24))


def test_bins_start_at_minus_pi_and_wrap_around():
    width = 2 * math.pi / 4
    angles = np.array([-math.pi, -math.pi + 0.5 * width, 0.1, math.pi - 0.1, math.pi, 3 * math.pi - 0.1])
    hist = torsion_histogram(angles, bins=4)
    # pi is -pi; 3 pi - 0.1 is pi - 0.1
    torch.testing.assert_close(hist, torch.tensor([3.0, 0.0, 1.0, 2.0], dtype=torch.float64) / 6)


def test_log_weights_match_resampled_data():
    rng = np.random.default_rng(1)
    angles = rng.uniform(-math.pi, math.pi, size=20_000)
    log_weights = 2.0 * np.cos(angles) + 500.0  # any additive constant; exp(500) alone would be huge
    weights = np.exp(log_weights - log_weights.max())
    resampled = rng.choice(angles, size=200_000, p=weights / weights.sum())

    weighted = torsion_histogram(angles, bins=18, log_weights=log_weights)
    assert (weighted - torsion_histogram(resampled, bins=18)).abs().max() < 0.005
    # The weighted histogram is the von Mises density exp(2 cos x) integrated over each bin.
    assert weighted.argmax() in (8, 9)


def test_zero_weights_drop_samples():
    angles = np.array([-3.0, -1.0, 1.0, 3.0])
    hist = torsion_histogram(angles, bins=4, log_weights=[0.0, -np.inf, 0.0, -np.inf])
    torch.testing.assert_close(hist, torch.tensor([0.5, 0.0, 0.5, 0.0], dtype=torch.float64))


def test_ramachandran_first_axis_is_phi():
    phi = np.array([-3.0, -3.0, 2.0])
    psi = np.array([2.0, 2.0, -3.0])
    hist = ramachandran_histogram(phi, psi, bins=2)
    torch.testing.assert_close(hist, torch.tensor([[0.0, 2 / 3], [1 / 3, 0.0]], dtype=torch.float64))


def test_ramachandran_with_weights_is_normalised():
    rng = np.random.default_rng(2)
    phi, psi = rng.uniform(-math.pi, math.pi, size=(2, 500))
    hist = ramachandran_histogram(phi, psi, bins=36, log_weights=rng.normal(size=500))
    assert hist.shape == (36, 36)
    assert hist.sum().item() == pytest.approx(1.0)
    assert (hist >= 0).all()


def test_free_energy_surface_has_minimum_zero_and_inf_where_empty():
    hist = torch.tensor([[0.5, 0.25], [0.25, 0.0]], dtype=torch.float64)
    fes = free_energy_surface(hist, kT=2.0)
    assert fes.min().item() == 0.0
    assert fes[1, 1].item() == math.inf
    assert fes[0, 1].item() == pytest.approx(2.0 * math.log(2.0))


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: torsion_histogram(np.zeros((2, 2, 2))), "expected \\(B,\\) or \\(B, M\\)"),
        (lambda: torsion_histogram(np.zeros(3), log_weights=np.zeros(2)), "expected \\(3,\\)"),
        (lambda: torsion_histogram(np.zeros(2), log_weights=[-np.inf, -np.inf]), "all -inf"),
        (lambda: torsion_histogram(np.zeros(2), bins=0), "bins must be a positive integer"),
        (lambda: ramachandran_histogram(np.zeros(3), np.zeros(4)), "same length"),
        (lambda: free_energy_surface(np.array([0.5, -0.1])), "non-negative"),
        (lambda: free_energy_surface(np.zeros(3)), "empty"),
    ],
)
def test_bad_input_names_the_problem(call, message):
    with pytest.raises(InputError, match=message):
        call()
