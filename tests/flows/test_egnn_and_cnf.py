"""The equivariant field and the continuous normalising flow: symmetries, exact log-densities, the Distribution
contract."""

import math

import pytest
import torch

from molsamp.flows import EGNNField, EquivariantFlow
from molsamp.testing import assert_distribution_contract, assert_equivariant, random_orthogonal


@pytest.fixture(scope="module")
def flow():
    torch.manual_seed(0)
    return EquivariantFlow(4, 2, hidden=16, layers=2, prior_scale=1.5).double().eval()


@pytest.mark.parametrize("dim", [2, 3])
def test_the_field_is_equivariant_and_centred(dim):
    torch.manual_seed(1)
    field = EGNNField(hidden=16, layers=2).double()
    assert_equivariant(field, 2 * torch.randn(5, 6, dim, dtype=torch.float64), torch.rand(5, dtype=torch.float64))


def test_with_atom_types_the_field_is_equivariant_to_exchanges_within_a_type_only():
    torch.manual_seed(2)
    types = [0, 1, 1, 2, 0, 1]
    field = EGNNField(hidden=16, layers=2, atom_types=types, length_unit=0.1).double()
    x, t = 0.2 * torch.randn(5, 6, 3, dtype=torch.float64), torch.rand(5, dtype=torch.float64)
    assert_equivariant(field, x, t, types=types)
    with pytest.raises(AssertionError, match="permutations"):
        assert_equivariant(field, x, t)  # exchanging atoms of different types changes the molecule


class CentredLinearField(torch.nn.Module):
    """v(t, x) = (a + b t) (x - mean x): linear, equivariant, with the flow x(1) = exp(a + b/2) z in closed form."""

    def __init__(self, a, b):
        super().__init__()
        self.a = torch.nn.Parameter(torch.tensor(a, dtype=torch.float64))
        self.b = b

    def forward(self, t, x):
        return (self.a + self.b * t) * (x - x.mean(1, keepdim=True))


def test_the_log_density_of_a_linear_field_is_the_change_of_variables():
    flow = EquivariantFlow(5, 3, prior_scale=0.8).double()
    flow.field = CentredLinearField(0.3, -0.4)
    scale = math.exp(0.3 - 0.4 / 2)
    with torch.no_grad():
        x, log_q = flow.sample_and_log_prob(8, torch.Generator().manual_seed(0))
    z = x / scale
    torch.testing.assert_close(log_q, flow.prior_log_prob(z) - 4 * 3 * math.log(scale), atol=1e-4, rtol=0)


def test_samples_are_centred_and_their_log_density_is_recovered_backwards(flow):
    with torch.no_grad():
        x, log_q = flow.sample_and_log_prob(32, torch.Generator().manual_seed(0))
        assert x.shape == (32, 4, 2) and x.mean(1).abs().max() < 1e-10
        torch.testing.assert_close(flow.log_prob(x), log_q, atol=1e-4, rtol=0)
        # Invariance: a rotated, reflected or relabelled configuration has the same density.
        rotated = x @ random_orthogonal(2, torch.Generator().manual_seed(3))
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
