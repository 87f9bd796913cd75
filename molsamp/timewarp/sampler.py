"""Metropolis-Hastings with a learned conditional proposal over (x, v), v ~ N(0, I) auxiliary: asymptotically exact
for exp(-u(x)); and a biased exploration mode that only filters by energy."""

from __future__ import annotations

__all__ = ["Proposal", "MHStep", "mh_step", "exploration_step"]

import dataclasses
from collections.abc import Callable
from typing import Protocol

import torch

from molsamp.samplers import metropolis_accept


class Proposal(Protocol):
    """A conditional density q(x', v' | x) that can be sampled and evaluated (e.g. a bound TimewarpFlow)."""

    def sample(self, x: torch.Tensor, generator: torch.Generator | None = None
               ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]: ...

    def log_prob(self, x_next: torch.Tensor, v: torch.Tensor, x: torch.Tensor) -> torch.Tensor: ...


@dataclasses.dataclass(frozen=True)
class MHStep:
    """Chain states after one step: positions ``[C, ...]``, their reduced energies ``[C]`` and which moved."""

    x: torch.Tensor
    u: torch.Tensor
    accepted: torch.Tensor


def _gaussian_energy(v: torch.Tensor) -> torch.Tensor:
    return 0.5 * (v**2).flatten(1).sum(1)


@torch.no_grad()
def mh_step(x: torch.Tensor, u: torch.Tensor, proposal: Proposal, energy: Callable[[torch.Tensor], torch.Tensor],
            generator: torch.Generator | None = None) -> MHStep:
    """One step of every chain on the augmented target exp(-u(x)) N(v; 0, I): v is refreshed from N(0, I) (a Gibbs
    move), (x', v') is drawn from q(. | x), and the move is accepted with probability
    min(1, exp(-u(x') - |v'|^2/2) q(x, v | x') / (exp(-u(x) - |v|^2/2) q(x', v' | x))).
    ``u`` is ``energy(x)``; energies of +inf (overflow) are never accepted."""
    v = torch.randn(x.shape, generator=generator, dtype=x.dtype, device=x.device)
    x_new, v_new, log_q_forward = proposal.sample(x, generator)
    log_q_reverse = proposal.log_prob(x, v, x_new)
    u_new = energy(x_new)
    log_ratio = (-u_new - _gaussian_energy(v_new) + log_q_reverse) - (-u - _gaussian_energy(v) + log_q_forward)
    accepted = metropolis_accept(log_ratio, generator)
    mask = accepted.reshape(-1, *([1] * (x.ndim - 1)))
    return MHStep(torch.where(mask, x_new, x), torch.where(accepted, u_new, u), accepted)


@torch.no_grad()
def exploration_step(x: torch.Tensor, u: torch.Tensor, proposal: Proposal,
                     energy: Callable[[torch.Tensor], torch.Tensor], threshold: float = 300.0,
                     generator: torch.Generator | None = None) -> MHStep:
    """BIASED: accept every proposal whose energy rises by less than ``threshold`` kT. Finds metastable states fast
    but does not sample the Boltzmann distribution."""
    x_new, _, _ = proposal.sample(x, generator)
    u_new = energy(x_new)
    accepted = torch.nan_to_num(u_new - u, nan=torch.inf) < threshold
    mask = accepted.reshape(-1, *([1] * (x.ndim - 1)))
    return MHStep(torch.where(mask, x_new, x), torch.where(accepted, u_new, u), accepted)
