"""TICA finds the slow direction of a process with known time scales; first-zero ESS of known processes."""

import numpy as np
import pytest
import torch

from molsamp.analysis import first_zero_ess, fit_tica
from molsamp.errors import InputError


def ar1(a: float, n: int, rng) -> np.ndarray:
    noise = rng.standard_normal(n)
    x = np.empty(n)
    x[0] = noise[0] / np.sqrt(1 - a * a)
    for t in range(1, n):
        x[t] = a * x[t - 1] + noise[t]
    return x


def test_tica_recovers_the_slow_process_from_a_mixture():
    rng = np.random.default_rng(0)
    slow, fast = ar1(0.99, 40000, rng), ar1(0.5, 40000, rng)
    mixing = np.array([[1.0, 0.6], [0.4, 1.0]])
    features = np.stack([slow, fast], 1) @ mixing.T
    model = fit_tica(features, lag=10)
    assert model.eigenvalues[0] == pytest.approx(0.99**10, abs=0.05)
    assert abs(model.eigenvalues[1]) < 0.05  # 0.5 ** 10
    projection = model.transform(features)[:, 0].numpy()
    assert abs(np.corrcoef(projection, slow)[0, 1]) > 0.99
    assert projection.std() == pytest.approx(1.0, rel=0.05)


def test_first_zero_ess():
    rng = np.random.default_rng(1)
    iid = rng.standard_normal(20000)
    assert first_zero_ess(iid) == pytest.approx(20000, rel=0.1)
    a = 0.9  # tau = (1 + a) / (1 - a) = 19
    assert first_zero_ess(ar1(a, 50000, rng)) == pytest.approx(50000 / 19, rel=0.25)
    both = first_zero_ess(torch.tensor(np.stack([iid, iid[::-1].copy()], 1)))
    assert both.shape == (2,)


def test_tica_rejects_a_too_large_lag():
    with pytest.raises(InputError, match="lag"):
        fit_tica(np.zeros((10, 2)), lag=6)
