import pytest
import torch

from molsamp.flows.optimisation import minimise


def _train(average: float | None) -> tuple[torch.nn.Linear, list[torch.Tensor]]:
    """A linear model fitted to a fixed regression by 20 Adam steps; returns it and the weights each step saw."""
    torch.manual_seed(0)
    model = torch.nn.Linear(3, 1)
    x = torch.randn(32, 3)
    y = x @ torch.tensor([1.0, -2.0, 0.5]) + 0.3
    seen = []

    def loss() -> torch.Tensor:
        seen.append(torch.cat([model.weight.detach().flatten(), model.bias.detach()]).clone())
        return ((model(x).squeeze(1) - y) ** 2).mean()

    minimise(model, loss, 20, 0.05, progress=False, average=average)
    return model, seen


def test_the_model_ends_with_the_moving_average_of_its_weights():
    decay = 0.8
    last, seen = _train(None)
    averaged, seen_with_average = _train(decay)
    assert all(torch.equal(a, b) for a, b in zip(seen, seen_with_average))  # averaging does not change training
    after_each_step = seen[1:] + [torch.cat([last.weight.detach().flatten(), last.bias.detach()])]
    expected = after_each_step[0]
    for weights in after_each_step[1:]:
        expected = decay * expected + (1 - decay) * weights
    final = torch.cat([averaged.weight.detach().flatten(), averaged.bias.detach()])
    assert final == pytest.approx(expected.tolist(), abs=1e-6)
    assert not torch.allclose(final, after_each_step[-1], atol=1e-3)  # the average is not the last weights
