"""Reference samples of particle systems made by the project's own MCMC: parallel random-walk Metropolis-Hastings
chains on the target (:class:`~molsamp.kernels.MetropolisHastings`), with a convergence check that compares the
energy distributions of the two halves of the chains. Deterministic for a seed."""

from __future__ import annotations

__all__ = ["mcmc_samples"]

import math

import torch

from molsamp.kernels import ChainState, MetropolisHastings, RandomWalk
from molsamp.samples import Samples
from molsamp.targets import Target


def _tuned_burn_in(target: Target, state: ChainState, steps: int, step: float, acceptance: float,
                   generator: torch.Generator, rounds: int = 100) -> tuple[ChainState, float]:
    """``steps`` MH steps in blocks of ``rounds``, the step size scaled by exp(observed - wanted acceptance) after
    each block; returns the final state and step size (then held fixed, so the chains stay exact)."""
    for _ in range(max(steps // rounds, 1)):
        kernel = MetropolisHastings(RandomWalk(step), target, n_steps=rounds)
        state = kernel.step(state, generator)
        step *= math.exp(kernel.acceptance - acceptance)
    return state, step


def mcmc_samples(target: Target, start: torch.Tensor | None = None, n_chains: int = 1000, n_samples: int = 10,
                 burn_in: int = 5000, thin: int = 50, step: float = 0.1, acceptance: float | None = 0.3,
                 start_scale: float = 1.0, seed: int = 0) -> Samples:
    """``n_chains * n_samples`` centred configurations ``[.., N, D]`` of ``target`` (its length unit), one every
    ``thin`` MH steps after ``burn_in``.

    Chains start at ``start`` (``[N, D]``, e.g. the system's lattice positions; jittered by 1% of
    ``start_scale``) or, without it, at centred Gaussian draws of scale ``start_scale``. With ``acceptance`` the
    random-walk ``step`` is tuned towards that acceptance rate during burn-in only.

    ``info`` holds the acceptance rate, the final step and ``js_halves``: the Jensen-Shannon divergence (nats, 40
    energy bins) between the energies of the first and the second half of the samples in time; sampling noise
    alone gives about ``20 / (n_chains * n_samples)``, and a much larger value means the chains were still
    drifting.
    """
    from molsamp.analysis import js_divergence

    generator = torch.Generator().manual_seed(seed)
    noise = torch.randn((n_chains, *target.event_shape), generator=generator, dtype=torch.float64)
    if start is None:
        x = start_scale * noise
    else:
        x = torch.as_tensor(start, dtype=torch.float64).reshape(target.event_shape) + 0.01 * start_scale * noise
    state = ChainState.start(x, target)
    if acceptance is None:
        state = MetropolisHastings(RandomWalk(step), target, n_steps=burn_in).step(state, generator)
    else:
        state, step = _tuned_burn_in(target, state, burn_in, step, acceptance, generator)
    kernel = MetropolisHastings(RandomWalk(step), target, n_steps=thin)
    frames = []
    for _ in range(n_samples):
        state = kernel.step(state, generator)
        frames.append(state)
    x = torch.stack([f.x for f in frames], 1)  # [chains, samples, N, D]
    u = torch.stack([f.u for f in frames], 1)
    halves = u[:, : n_samples // 2].flatten(), u[:, n_samples // 2:].flatten()
    edges = torch.quantile(u.flatten(), torch.linspace(0, 1, 41, dtype=torch.float64))
    histograms = [torch.histogram(h, edges.contiguous())[0] for h in halves]
    x = x.flatten(0, 1)
    info = {"sampler": "random-walk MH", "seed": seed, "chains": n_chains, "burn_in": burn_in, "thin": thin,
            "step": step, "acceptance": kernel.acceptance, "js_halves": float(js_divergence(*histograms))}
    return Samples.unweighted(x - x.mean(1, keepdim=True), u.flatten(), info=info)
