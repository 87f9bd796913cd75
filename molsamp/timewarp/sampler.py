"""The Timewarp flow as a conditional Distribution, as an exact Metropolis-Hastings proposal, and as a biased
exploration kernel.

The chain runs on the augmented target exp(-u(x)) N(v; 0, I): each step refreshes v from N(0, I) (a Gibbs move),
draws (x', v') ~ q(. | x) from the flow and accepts with probability
min(1, exp(-u(x') - |v'|^2/2) q(x, v | x') / (exp(-u(x) - |v|^2/2) q(x', v' | x))), so x samples exp(-u) exactly.
"""

from __future__ import annotations

__all__ = ["TimewarpDistribution", "TimewarpProposal", "Exploration"]

from typing import TYPE_CHECKING

import torch

from molsamp.kernels import ChainState

if TYPE_CHECKING:
    from molsamp.targets import Target
    from molsamp.timewarp.model import TimewarpFlow


class TimewarpDistribution:
    """q(x', v' | x) of one peptide: the flow with its atom ``features``, a conditional Distribution over events
    ``[2, N, 3]`` (x' and v' stacked, nm), conditioned on ``context`` = current positions ``[C, N, 3]`` (nm); ``n``
    must equal C (one draw per row)."""

    def __init__(self, model: TimewarpFlow, features: torch.Tensor) -> None:
        self.model, self.features = model, features
        self.event_shape = torch.Size((2, len(features), 3))

    def _check(self, n: int, context: torch.Tensor) -> None:
        if context is None or len(context) != n:
            raise ValueError(f"the Timewarp proposal needs one context row per sample; got n={n} and context "
                             f"{None if context is None else tuple(context.shape)}")

    def sample_and_log_prob(self, n: int, generator: torch.Generator | None = None,
                            context: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        self._check(n, context)
        x_next, v, log_q = self.model.sample(context, self.features, generator)
        return torch.stack([x_next, v], 1), log_q

    def sample(self, n: int, generator: torch.Generator | None = None,
               context: torch.Tensor | None = None) -> torch.Tensor:
        return self.sample_and_log_prob(n, generator, context)[0]

    def log_prob(self, z: torch.Tensor, context: torch.Tensor | None = None) -> torch.Tensor:
        self._check(len(z), context)
        return self.model.log_prob(z[:, 0], z[:, 1], context, self.features)


def _gaussian_energy(v: torch.Tensor) -> torch.Tensor:
    return 0.5 * (v**2).flatten(1).sum(1)


class TimewarpProposal:
    """The flow as a :class:`~molsamp.kernels.Proposal` on positions ``[C, N, 3]`` with the auxiliary velocity
    marginalised by a fresh draw: returns x' and log [N(v') q(x, v | x') / (N(v) q(x', v' | x))], so
    ``MetropolisHastings(TimewarpProposal(q), target)`` is the exact Timewarp sampler. Differentiable when called
    with gradients on (the acceptance loss of training)."""

    def __init__(self, distribution: TimewarpDistribution) -> None:
        self.distribution = distribution

    def propose(self, x: torch.Tensor, generator: torch.Generator | None = None
                ) -> tuple[torch.Tensor, torch.Tensor]:
        v = torch.randn(x.shape, generator=generator, dtype=x.dtype, device=x.device)
        z, log_q_forward = self.distribution.sample_and_log_prob(len(x), generator, context=x)
        x_new, v_new = z[:, 0], z[:, 1]
        log_q_reverse = self.distribution.log_prob(torch.stack([x, v], 1), context=x_new)
        return x_new, (log_q_reverse - _gaussian_energy(v_new)) - (log_q_forward - _gaussian_energy(v))


class Exploration:
    """BIASED: a kernel that accepts every proposal of the flow whose energy rises by less than ``threshold`` kT.
    Finds metastable states fast but does not sample the Boltzmann distribution."""

    def __init__(self, distribution: TimewarpDistribution, target: Target, threshold: float = 300.0) -> None:
        self.distribution, self.target, self.threshold = distribution, target, threshold
        self.accepted = self.offered = 0
        self.last_accepted: torch.Tensor | None = None

    @torch.no_grad()
    def step(self, state: ChainState, generator: torch.Generator | None = None) -> ChainState:
        x_new = self.distribution.sample(len(state.x), generator, context=state.x)[:, 0]
        u_new = self.target.energy(x_new)
        accept = torch.nan_to_num(u_new - state.u, nan=torch.inf) < self.threshold
        self.last_accepted = accept
        self.accepted += int(accept.sum())
        self.offered += accept.numel()
        return ChainState(torch.where(accept[:, None, None], x_new, state.x), torch.where(accept, u_new, state.u),
                          state.v)
