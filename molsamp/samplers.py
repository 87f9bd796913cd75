"""Markov chain kernels shared by the samplers."""

from __future__ import annotations

__all__ = ["metropolis_accept", "independence_metropolis", "annealed_smc", "LangevinState", "energy_gradient", "langevin_baoab"]

import dataclasses
import math
from collections.abc import Callable, Sequence

import torch

from molsamp.analysis import kish_ess
from molsamp.samples import systematic_resample


def metropolis_accept(log_ratio: torch.Tensor | float, generator: torch.Generator | None = None) -> torch.Tensor:
    """The Metropolis-Hastings decision of every entry of ``log_ratio``: True with probability
    min(1, exp(log_ratio)), where ``log_ratio`` is log [p(x') q(x | x') / (p(x) q(x' | x))]. NaN and -inf (a
    proposal of zero density, an overflowed energy) are always rejected. The one acceptance rule of every sampler.

    Returns a bool tensor of ``log_ratio``'s shape, on its device; uniforms come from ``generator``'s device."""
    log_ratio = torch.nan_to_num(torch.as_tensor(log_ratio, dtype=torch.float64), nan=-math.inf, neginf=-math.inf,
                                 posinf=math.inf)
    device = generator.device if generator is not None else log_ratio.device
    uniform = torch.rand(log_ratio.shape, generator=generator, dtype=torch.float64, device=device)
    return torch.log(uniform).to(log_ratio.device) < log_ratio


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
    state, accepted = 0, 0
    states = torch.zeros(len(log_weights), dtype=torch.long)
    for i in range(1, len(log_weights)):
        if metropolis_accept(log_weights[i] - log_weights[state], generator):
            state, accepted = i, accepted + 1
        states[i] = state
    return states, accepted / max(len(log_weights) - 1, 1)


def annealed_smc(
    x: torch.Tensor,
    log_q: torch.Tensor,
    log_p: torch.Tensor,
    move: Callable[[torch.Tensor, torch.Tensor, torch.Tensor, float], tuple[torch.Tensor, torch.Tensor, torch.Tensor, float]],
    betas: Sequence[float],
    ess_threshold: float = 0.5,
    generator: torch.Generator | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, list[dict]]:
    """Sequential Monte Carlo from a proposal q to a target p along pi_beta ∝ q^(1 - beta) p^beta.

    Particles ``x: [N, ...]`` drawn from q, with their ``log_q`` and unnormalised ``log_p`` (``[N]``), are reweighted by pi_{beta_k} / pi_{beta_(k-1)}, resampled (systematic)
    when the Kish ESS falls below ``ess_threshold * N``, and moved by an MCMC kernel that leaves pi_beta invariant:
    ``move(x, lq, lp, beta) -> (x, lq, lp, acceptance)``. The final weighted particles are consistent for p
    (``-inf`` in ``log_p`` means probability zero). ``betas`` rise to 1.

    Returns particles, their log q and log p, normalised log-weights ``[N]`` and one record per step (beta, ESS
    before resampling, resampled or not, acceptance).
    """
    lq, lp = log_q.double(), log_p.double()
    log_w = torch.zeros(len(x), dtype=torch.float64)
    history, previous = [], 0.0
    for beta in betas:
        log_w = log_w + (beta - previous) * torch.nan_to_num(lp - lq, nan=-torch.inf).double()
        previous = beta
        ess = kish_ess(log_w)
        resampled = ess < ess_threshold * len(x)
        if resampled:
            index = systematic_resample(log_w, len(x), generator)
            x, lq, lp = x[index], lq[index], lp[index]
            log_w = torch.zeros(len(x), dtype=torch.float64)
        x, lq, lp, acceptance = move(x, lq, lp, beta)
        history.append({"beta": beta, "ess": ess, "resampled": resampled, "acceptance": acceptance})
    return x, lq, lp, log_w - torch.logsumexp(log_w, 0), history


@dataclasses.dataclass
class LangevinState:
    """Positions, velocities and the reduced-energy gradient at the positions (tensors of one shape)."""

    x: torch.Tensor
    v: torch.Tensor
    gradient: torch.Tensor


def energy_gradient(energy: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor) -> torch.Tensor:
    """Gradient of ``energy(x).sum()`` with respect to ``x`` (detached)."""
    with torch.enable_grad():
        x = x.detach().requires_grad_()
        (gradient,) = torch.autograd.grad(energy(x).sum(), x)
    return gradient


def langevin_baoab(state: LangevinState, energy: Callable[[torch.Tensor], torch.Tensor], n_steps: int,
                   timestep: float, friction: float, kT: float = 1.0, mass: torch.Tensor | float = 1.0,
                   generator: torch.Generator | None = None) -> LangevinState:
    """``n_steps`` of BAOAB Langevin dynamics (Leimkuhler-Matthews) on the reduced energy ``energy(x)`` (units of
    kT, one value per batch element; forces -kT * gradient by autograd). Time in the units of ``timestep``,
    ``friction`` in inverse time; ``mass`` broadcasts against ``x``. Returns the new state."""
    damping = math.exp(-friction * timestep)
    noise = math.sqrt(1 - damping**2) * torch.sqrt(kT / torch.as_tensor(mass, dtype=state.x.dtype))
    x, v, gradient = state.x.detach(), state.v.detach(), state.gradient
    half = 0.5 * timestep
    for _ in range(n_steps):
        v = v - half * kT * gradient / mass
        x = x + half * v
        v = damping * v + noise * torch.randn(x.shape, generator=generator, dtype=x.dtype, device=x.device)
        x = x + half * v
        gradient = energy_gradient(energy, x)
        v = v - half * kT * gradient / mass
    return LangevinState(x, v, gradient)
