"""MBAR on harmonic oscillators, whose free-energy differences are known exactly."""

import numpy as np
import pytest

from molsamp.free_energy import PoorOverlapWarning, WindowSamples, mbar, mbar_from_windows

SPRINGS = np.array([1.0, 1.6, 2.5, 4.0])  # kT/length^2
CENTRES = np.array([0.0, 0.2, 0.4, 0.6])


def reduced_potentials(x):
    """``[K, N]``: u_k(x) = k_k (x - c_k)^2 / 2 for every state k."""
    return 0.5 * SPRINGS[:, None] * (x[None, :] - CENTRES[:, None]) ** 2


def exact_delta_f():
    """f_K - f_1 = -ln(Z_K/Z_1) with Z_k = sqrt(2 pi / k_k)."""
    return 0.5 * np.log(SPRINGS[-1] / SPRINGS[0])


def oscillator_windows(n, rng, correlation=0.0):
    """One window per state: samples from each oscillator, as an AR(1) chain when ``correlation`` > 0."""
    windows = []
    for k, (spring, centre) in enumerate(zip(SPRINGS, CENTRES)):
        noise = rng.standard_normal(n)
        z = np.empty(n)
        z[0] = noise[0]
        for i in range(1, n):
            z[i] = correlation * z[i - 1] + np.sqrt(1 - correlation**2) * noise[i]
        x = centre + z / np.sqrt(spring)
        windows.append(WindowSamples(k, reduced_potentials(x), md_steps=n, energy_evaluations=n * 4, wall_time=0.0))
    return windows


def test_mbar_recovers_the_analytic_free_energy_within_its_error():
    rng = np.random.default_rng(1)
    x = np.concatenate([c + rng.standard_normal(2000) / np.sqrt(k) for k, c in zip(SPRINGS, CENTRES)])
    estimate = mbar(reduced_potentials(x), [2000] * 4)
    assert 0 < estimate.error < 0.05
    assert abs(estimate.delta_f - exact_delta_f()) < 3 * estimate.error
    np.testing.assert_allclose(estimate.overlap.sum(axis=1), 1.0, atol=1e-8)
    assert (estimate.neighbour_overlap > 0.1).all()


def test_errors_are_calibrated_over_repeats():
    rng = np.random.default_rng(2)
    z = [(mbar_from_windows(oscillator_windows(300, rng)).delta_f - exact_delta_f()) for _ in range(30)]
    errors = [mbar_from_windows(oscillator_windows(300, rng)).error for _ in range(5)]
    assert 0.5 < np.std(z) / np.mean(errors) < 1.6


def test_correlated_windows_are_subsampled():
    rng = np.random.default_rng(3)
    estimate = mbar_from_windows(oscillator_windows(2000, rng, correlation=0.95))
    assert (estimate.samples_per_state < 300).all()  # about 2000 / 39 independent samples per window
    assert abs(estimate.delta_f - exact_delta_f()) < 4 * estimate.error


def test_windows_may_arrive_in_any_order_but_not_with_gaps():
    rng = np.random.default_rng(4)
    windows = oscillator_windows(500, rng)
    forward = mbar_from_windows(windows)
    assert mbar_from_windows(windows[::-1]).delta_f == pytest.approx(forward.delta_f)
    with pytest.raises(ValueError, match="one window per state"):
        mbar_from_windows(windows[:2] + windows[3:])


def test_poor_overlap_warns():
    rng = np.random.default_rng(5)
    far = np.array([0.0, 30.0])
    x = np.concatenate([c + rng.standard_normal(200) for c in far])
    with pytest.warns(PoorOverlapWarning, match="states 0 and 1"):
        mbar(0.5 * (x[None, :] - far[:, None]) ** 2, [200, 200])


def test_shape_mismatch_is_explained():
    with pytest.raises(ValueError, match=r"\[2, 30\]"):
        mbar(np.zeros((2, 20)), [10, 20])


def test_temperature_ladder_reproduces_the_harmonic_free_energy():
    # U = k x^2 / 2 in 30 dimensions: f(T) = -log Z = -(d / 2) log T + const (kT), exact samples at each T
    from molsamp.free_energy.mbar import MOLAR_GAS_CONSTANT, temperature_mbar

    rng, d, k = np.random.default_rng(3), 30, 500.0
    temperatures = np.geomspace(250.0, 100.0, 6)

    def energies(t: float, shape: tuple[int, ...]) -> np.ndarray:
        x = rng.normal(0, np.sqrt(MOLAR_GAS_CONSTANT * t / k), (*shape, d))
        return 0.5 * k * (x**2).sum(-1)

    exact = -(d / 2) * np.log(100.0 / 250.0)
    series = temperature_mbar(temperatures, [energies(t, (2000,)) for t in temperatures], 250.0, 100.0)
    runs = temperature_mbar(temperatures, [energies(t, (2, 1000)) for t in temperatures], 250.0, 100.0)
    for estimate in (series, runs):
        assert abs(estimate.delta_f - exact) < 4 * estimate.error
        assert estimate.error < 0.1
    assert runs.samples_per_state.sum() > 0.9 * series.samples_per_state.sum()
    with pytest.raises(ValueError, match="on the ladder"):
        temperature_mbar(temperatures, [energies(t, (10,)) for t in temperatures], 250.0, 90.0)
