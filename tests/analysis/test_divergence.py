import math

import numpy as np
import pytest
import torch

from molsamp.analysis import js_divergence, ramachandran_js, torsion_js
from molsamp.errors import InputError

LN2 = math.log(2.0)


def test_identical_histograms_have_zero_divergence():
    p = torch.tensor([0.1, 0.0, 0.6, 0.3], dtype=torch.float64)
    assert js_divergence(p, p).item() == 0.0
    assert js_divergence(p, 7.0 * p).item() == pytest.approx(0.0, abs=1e-15)  # normalised internally


def test_divergence_is_symmetric_and_bounded():
    rng = np.random.default_rng(0)
    for _ in range(20):
        p, q = rng.random((2, 6, 6)) * (rng.random((2, 6, 6)) > 0.3)
        pq, qp = js_divergence(p, q).item(), js_divergence(q, p).item()
        assert pq == pytest.approx(qp, rel=1e-12)
        assert 0.0 < pq < LN2


def test_disjoint_supports_reach_ln2():
    p = np.array([1.0, 2.0, 0.0, 0.0])
    q = np.array([0.0, 0.0, 3.0, 1.0])
    assert js_divergence(p, q).item() == pytest.approx(LN2, rel=1e-12)


def test_known_value():
    p, q = np.array([1.0, 0.0]), np.array([0.5, 0.5])
    expected = 0.5 * math.log(1 / 0.75) + 0.5 * (0.5 * math.log(0.5 / 0.75) + 0.5 * math.log(2.0))
    assert js_divergence(p, q).item() == pytest.approx(expected, rel=1e-12)


def von_mises(loc, concentration, size, seed):
    return np.random.default_rng(seed).vonmises(loc, concentration, size=size)


def test_torsion_js_separates_same_from_different_distributions():
    locs = np.array([0.0, 2.0, -1.5])
    a = von_mises(locs, 4.0, (5000, 3), seed=1)
    same = von_mises(locs, 4.0, (4000, 3), seed=2)
    different = von_mises(locs + np.pi, 4.0, (4000, 3), seed=3)
    assert torsion_js(a, same) < 0.01
    assert torsion_js(a, different) > 0.5


def test_torsion_js_averages_over_torsions():
    a = von_mises(np.array([0.0, 0.0]), 4.0, (3000, 2), seed=4)
    b = np.stack([von_mises(0.0, 4.0, 3000, seed=5), von_mises(np.pi, 4.0, 3000, seed=6)], axis=1)
    per_torsion = [torsion_js(a[:, k], b[:, k]) for k in range(2)]
    assert torsion_js(a, b) == pytest.approx(np.mean(per_torsion), rel=1e-12)


def test_torsion_js_uses_log_weights():
    # Reweighting a uniform sample by a von Mises density makes it match a von Mises sample.
    rng = np.random.default_rng(7)
    uniform = rng.uniform(-np.pi, np.pi, size=(40_000, 1))
    target = von_mises(1.0, 3.0, (20_000, 1), seed=8)
    reweighted = torsion_js(uniform, target, log_weights_a=3.0 * np.cos(uniform[:, 0] - 1.0))
    assert reweighted < 0.01 < torsion_js(uniform, target)


def test_ramachandran_js_same_and_different():
    phi_a, psi_a = von_mises(-1.4, 5.0, 5000, seed=9), von_mises(2.6, 5.0, 5000, seed=10)
    phi_b, psi_b = von_mises(-1.4, 5.0, 5000, seed=11), von_mises(2.6, 5.0, 5000, seed=12)
    phi_c, psi_c = von_mises(1.0, 5.0, 5000, seed=13), von_mises(0.5, 5.0, 5000, seed=14)
    assert ramachandran_js(phi_a, psi_a, phi_b, psi_b, bins=18) < 0.05
    assert ramachandran_js(phi_a, psi_a, phi_c, psi_c, bins=18) > 0.6


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: js_divergence(np.ones(3), np.ones(4)), "must match"),
        (lambda: js_divergence(np.array([1.0, -1.0]), np.ones(2)), "p must be finite and non-negative"),
        (lambda: js_divergence(np.ones(2), np.zeros(2)), "q is empty"),
        (lambda: torsion_js(np.zeros((5, 2)), np.zeros((5, 3))), "same torsions"),
    ],
)
def test_bad_input_names_the_problem(call, message):
    with pytest.raises(InputError, match=message):
        call()


def test_wasserstein2_of_shifted_samples_is_the_shift():
    import torch

    from molsamp.analysis import wasserstein2

    a = torch.randn(200, 2, generator=torch.Generator().manual_seed(0))
    assert abs(wasserstein2(a, a + torch.tensor([3.0, 4.0])) - 5.0) < 1e-6
    assert wasserstein2(a, a[torch.randperm(200)]) < 1e-9
