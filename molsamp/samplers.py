"""Markov chain kernels shared by the samplers."""

from __future__ import annotations

__all__ = ["independence_metropolis"]

import torch


def independence_metropolis(log_weights: torch.Tensor, generator: torch.Generator | None = None
                            ) -> tuple[torch.Tensor, float]:
    """Independence Metropolis-Hastings over proposals drawn in advance from a fixed proposal q.

    ``log_weights[i] = -u(x_i) - log q(x_i)`` of proposals ``x_0, x_1, ...``; the chain starts at ``x_0`` and moves
    to ``x_i`` with probability ``min(1, w_i / w_current)``, which leaves exp(-u) invariant. Proposals with
    ``-inf`` weight (e.g. clashes) are never accepted.

    Returns:
        the index of the chain's state after each proposal ``[n]`` and the acceptance rate.
    """
    log_weights = log_weights.double().cpu()
    if not torch.isfinite(log_weights[0]):
        raise ValueError("the chain's first state must have a finite weight")
    log_u = torch.log(torch.rand(len(log_weights), generator=generator, dtype=torch.float64))
    state, accepted = 0, 0
    states = torch.empty(len(log_weights), dtype=torch.long)
    for i in range(len(log_weights)):
        if i > 0 and log_u[i] < log_weights[i] - log_weights[state]:
            state, accepted = i, accepted + 1
        states[i] = state
    return states, accepted / max(len(log_weights) - 1, 1)
