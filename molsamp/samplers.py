"""Samplers built over kernels and proposal densities: independence Metropolis-Hastings and annealed SMC."""

from __future__ import annotations

__all__ = ["independence_metropolis", "GeometricPath", "annealed_smc"]

import math
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

import torch

from molsamp.analysis import kish_ess
from molsamp.kernels import ChainState, Kernel, metropolis_accept
from molsamp.samples import Samples, systematic_resample

if TYPE_CHECKING:
    from molsamp.distributions import Distribution
    from molsamp.targets import Target


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


class GeometricPath:
    """The target pi_beta ∝ q^(1 - beta) exp(-beta u) between a Distribution ``q`` (beta = 0) and a Target (beta =
    1): reduced energy ``beta u(x) - (1 - beta) log q(x)``, the same kT and event shape as the target."""

    def __init__(self, q: Distribution, target: Target, beta: float) -> None:
        self.q, self.target, self.beta, self.kT = q, target, float(beta), target.kT

    def energy(self, x: torch.Tensor) -> torch.Tensor:
        u = self.target.energy(x).double()
        if self.beta == 1.0:
            return u
        path = self.beta * u - (1 - self.beta) * self.q.log_prob(x).double()
        return torch.where(torch.isposinf(u), torch.inf, path)


def annealed_smc(
    x: torch.Tensor,
    q: Distribution,
    target: Target,
    kernel: Callable[[GeometricPath], Kernel],
    betas: Sequence[float],
    log_q: torch.Tensor | None = None,
    u: torch.Tensor | None = None,
    log_w: torch.Tensor | None = None,
    ess_threshold: float = 0.5,
    recompute: str = "log_q",
    generator: torch.Generator | None = None,
) -> Samples:
    """Sequential Monte Carlo from a Distribution q to a Target along pi_beta ∝ q^(1 - beta) exp(-beta u)
    (:class:`GeometricPath`).

    Particles ``x: [N, *event]`` drawn from q (with their ``log_q`` and reduced energies ``u``, ``[N]``, evaluated
    when not given), or drawn from another density q0 and given the log-weights ``log_w = log q - log q0`` (q then
    needs no normalisation), are reweighted by pi_{beta_k} / pi_{beta_(k-1)}, resampled (systematic) when the Kish
    ESS falls below ``ess_threshold * N``, and moved by ``kernel(path)``, an MCMC kernel that leaves the path's
    density at that beta invariant (its ``acceptance``, if it has one, is recorded). ``betas`` rise to 1 and are
    positive. The final weighted particles are consistent for exp(-u); ``u = +inf`` means probability zero.

    After each move either q (``recompute="log_q"``, where q is the cheaper) or the target's energy
    (``recompute="energy"``, e.g. for a flow's q) is evaluated at the particles, once each, and the other is read
    off the path's energy.

    Returns :class:`~molsamp.samples.Samples` with normalised log-weights, ``log_q`` (None with
    ``recompute="energy"`` when the last beta is 1), ``info["history"]``: one record per step (beta, ESS before
    resampling, resampled or not, acceptance, and the step's kernel's ``n_evaluations`` where it counts them, else
    None), ``info["log_Z"]``: the SMC estimate of log ∫ exp(-u) dx for particles drawn from a normalised density
    (q or q0): the log mean initial weight plus the sum over steps of the log of the weighted mean of the
    incremental weights; biased low by about half its variance, as the log of a near-unbiased estimate.
    ``info["energy_evaluations"]`` is the kernels' total (plus one per particle and step with
    ``recompute="energy"``), when every kernel counts them.
    """
    if recompute not in ("log_q", "energy"):
        raise ValueError(f"recompute must be 'log_q' or 'energy', got {recompute!r}")
    with torch.no_grad():
        lq = (q.log_prob(x) if log_q is None else log_q).double()
        u = (target.energy(x) if u is None else u).double()
    log_w = torch.zeros(len(x), dtype=torch.float64) if log_w is None else log_w.double()
    history, previous = [], 0.0
    log_z = float(torch.logsumexp(log_w, 0) - math.log(len(x)))
    for beta in betas:
        if not 0.0 < beta <= 1.0 or beta < previous:
            raise ValueError(f"betas must rise within (0, 1], got {list(betas)}")
        log_w_before = torch.logsumexp(log_w, 0)
        log_w = log_w + (beta - previous) * torch.nan_to_num(-u - lq, nan=-torch.inf)
        log_z += float(torch.logsumexp(log_w, 0) - log_w_before)
        previous = beta
        ess = kish_ess(log_w)
        resampled = ess < ess_threshold * len(x)
        if resampled:
            index = systematic_resample(log_w, len(x), generator)
            x, lq, u = x[index], lq[index], u[index]
            log_w = torch.zeros(len(x), dtype=torch.float64)
        path = GeometricPath(q, target, beta)
        move = kernel(path)
        state = move.step(ChainState(x, torch.where(torch.isposinf(u), torch.inf, beta * u - (1 - beta) * lq)),
                          generator)
        x, path_u = state.x, state.u.double()
        # the path's energy beta u - (1 - beta) log q gives one of u and log q at the new positions from the other
        with torch.no_grad():
            if recompute == "log_q":
                lq = q.log_prob(x).double()
                u = torch.where(torch.isposinf(path_u), torch.inf, (path_u + (1 - beta) * lq) / beta)
            else:
                u = target.energy(x).double()
                lq = None if beta == 1.0 else torch.where(torch.isposinf(u), lq, (beta * u - path_u) / (1 - beta))
        history.append({"beta": beta, "ess": ess, "resampled": bool(resampled),
                        "acceptance": getattr(move, "acceptance", None),
                        "evaluations": getattr(move, "n_evaluations", None)})
    log_w = log_w - torch.logsumexp(log_w, 0)
    info = {"history": history, "log_Z": log_z}
    if all(h["evaluations"] is not None for h in history):
        info["energy_evaluations"] = sum(h["evaluations"] for h in history) + \
            (len(x) * len(history) if recompute == "energy" else 0)
    return Samples(x, u, log_w, log_q=lq, info=info)
