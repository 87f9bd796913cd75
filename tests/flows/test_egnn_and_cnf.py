"""The equivariant field and the continuous normalising flow: symmetries, exact log-densities, the Distribution
contract."""

import math

import pytest
import torch

from molsamp.flows import EGNNField, EquivariantFlow
from molsamp.testing import assert_distribution_contract


def random_orthogonal(d, seed):
    q, r = torch.linalg.qr(torch.randn(d, d, generator=torch.Generator().manual_seed(seed), dtype=torch.float64))
    return q * torch.sign(torch.diagonal(r))


@pytest.fixture(scope="module")
def flow():
    torch.manual_seed(0)
    return EquivariantFlow(4, 2, hidden=16, layers=2, prior_scale=1.5).double().eval()


@pytest.mark.parametrize("dim", [2, 3])
def test_the_field_is_equivariant_and_centred(dim):
    torch.manual_seed(1)
    field = EGNNField(hidden=16, layers=2).double()
    x = torch.randn(5, 6, dim, dtype=torch.float64)
    t = torch.rand(5, dtype=torch.float64)
    v = field(t, x)
    torch.testing.assert_close(v.mean(1), torch.zeros(5, dim, dtype=torch.float64))
    rotation = random_orthogonal(dim, 2)
    torch.testing.assert_close(field(t, x @ rotation), v @ rotation)  # rotations and reflections
    permutation = torch.tensor([3, 0, 5, 1, 4, 2])
    torch.testing.assert_close(field(t, x[:, permutation]), v[:, permutation])
    torch.testing.assert_close(field(t, x + torch.randn(5, 1, dim, dtype=torch.float64)), v)  # translations


def test_samples_are_centred_and_their_log_density_is_recovered_backwards(flow):
    with torch.no_grad():
        x, log_q = flow.sample_and_log_prob(32, torch.Generator().manual_seed(0))
        assert x.shape == (32, 4, 2) and x.mean(1).abs().max() < 1e-10
        torch.testing.assert_close(flow.log_prob(x), log_q, atol=1e-4, rtol=0)
        # Invariance: a rotated, reflected or relabelled configuration has the same density.
        rotated = x @ random_orthogonal(2, 3)
        torch.testing.assert_close(flow.log_prob(rotated[:, [1, 3, 0, 2]]), log_q, atol=1e-4, rtol=0)


def test_a_zero_field_is_the_prior():
    flow = EquivariantFlow(3, 3, hidden=8, layers=1, prior_scale=0.7).double()
    with torch.no_grad():
        for parameter in flow.field.parameters():
            parameter.zero_()
        x, log_q = flow.sample_and_log_prob(16, torch.Generator().manual_seed(0))
    # Centred Gaussian on the 6-dimensional subspace: log p = -|x|^2 / (2 s^2) - 3 log(2 pi s^2).
    expected = -(x**2).sum((1, 2)) / (2 * 0.49) - 3 * math.log(2 * math.pi * 0.49)
    torch.testing.assert_close(log_q, expected)


def test_the_flow_keeps_the_distribution_contract(flow):
    parameters = list(flow.field.parameters())
    assert_distribution_contract(flow, n=4, parameters=parameters, rtol=0, atol=1e-4)


def test_hutchinson_estimates_the_exact_log_density_on_average(flow):
    with torch.no_grad():
        x = flow.sample(4, torch.Generator().manual_seed(5))
        exact = flow.log_prob(x)
        flow.config["hutchinson"] = True
        try:
            estimates = torch.stack([flow.log_prob(x, generator=torch.Generator().manual_seed(s)) for s in range(40)])
        finally:
            flow.config["hutchinson"] = False
    assert (estimates.std(0) > 0).all()  # noisy ...
    assert ((estimates.mean(0) - exact).abs() < 4 * estimates.std(0) / math.sqrt(40) + 1e-3).all()  # ... unbiased
