"""Walk-jump sampling (Saremi & Hyvärinen 2019; VoxMol, Pinheiro et al. 2023) and its multi-measurement form, the
chain of log-concave Markov chains (Saremi et al., ICLR 2024).

Everything here needs only a denoiser ``denoise(y, s) -> E[x | y]`` for y = x + s * noise (the trained
:class:`~molsamp.voxel.training.Denoiser`, or the exact one of :class:`GaussianMixture`):

- walk: underdamped Langevin dynamics on the smoothed density p_sigma(y), whose score is
  (denoise(y, sigma) - y) / sigma^2 (:class:`UnderdampedWalk`, a :class:`~molsamp.kernels.Kernel`);
- jump: x_hat = denoise(y, sigma), one network call, any time along the walk.

With m measurements y_1..y_m = x + sigma * noise_j, E[x | y_1..y_j] = denoise(mean(y_1..y_j), sigma / sqrt(j)), and
the score of y_j given y_1..y_(j-1) is (E[x | y_1..y_j] - y_j) / sigma^2: the measurements are walked one after
another (each conditional density is smoother, closer to log-concave, than p(x)), and the jump denoises their mean
at the effective noise sigma / sqrt(m).

BIASED by design, as in the papers: the jump returns posterior means E[x | y], not draws from p(x), and the walk has
a finite step. Both vanish only as sigma / sqrt(m) and the step go to 0; :class:`GaussianMixture` gives the exact
law of the jump for tests and benchmarks.
"""

from __future__ import annotations

__all__ = ["Denoise", "UnderdampedWalk", "walk_jump", "GaussianMixture"]

import math
import sys
from collections.abc import Callable, Sequence
from typing import Protocol

import torch

from molsamp.kernels import ChainState

class Denoise(Protocol):
    """``denoise(y: [B, *event], s) -> E[x | y]`` for y = x + s * standard normal noise (s a number or ``[B]``)."""

    def __call__(self, y: torch.Tensor, noise: torch.Tensor | float) -> torch.Tensor: ...


class UnderdampedWalk:
    """``n_steps`` steps of underdamped Langevin dynamics on a density known by its score, per :meth:`step`: the
    ABOBA splitting with one score evaluation per step (VoxMol's discretisation, after Sachs et al. 2017), unit
    mass, time step ``step_size`` and ``friction`` (inverse time units), positions and velocities in the units of y.
    The smoothed density has no tractable energy: the states' ``u`` is NaN."""

    def __init__(self, score: Callable[[torch.Tensor], torch.Tensor], n_steps: int, step_size: float = 0.5,
                 friction: float = 1.0) -> None:
        self.score, self.n_steps, self.step_size, self.friction = score, n_steps, step_size, friction

    def step(self, state: ChainState, generator: torch.Generator | None = None) -> ChainState:
        y = state.x
        v = state.v if state.v is not None else torch.zeros_like(y)
        half = 0.5 * self.step_size
        damping = math.exp(-self.friction * self.step_size)
        noise = math.sqrt(1 - damping**2)
        with torch.no_grad():
            for _ in range(self.n_steps):
                y = y + half * v
                kick = half * self.score(y)
                v = damping * (v + kick) + noise * _normal(y, generator) + kick
                y = y + half * v
        return ChainState(y, torch.full(y.shape[:1], math.nan, dtype=y.dtype, device=y.device), v)


def _normal(like: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
    """Standard normal noise of ``like``'s shape, drawn on the CPU from ``generator`` (reproducible on any device)."""
    return torch.randn(like.shape, generator=generator, dtype=like.dtype).to(like.device)


def walk_jump(denoise: Denoise, start: torch.Tensor, sigma: float, measurements: int = 1, walk_steps: int = 100,
              jumps: int = 1, step_size: float = 0.5, friction: float = 1.0,
              generator: torch.Generator | None = None, progress: bool | None = None) -> torch.Tensor:
    """``jumps`` samples ``[jumps, C, *event]`` from each of ``C`` chains started at ``start: [C, *event]``.

    Each jump walks the first measurement ``walk_steps`` further (it carries on from the previous jump, as in
    VoxMol), then each further measurement j = 2..m ``walk_steps`` from a fresh start at the current estimate plus
    noise, and denoises the mean of the m measurements at sigma / sqrt(m). ``walk_steps * measurements`` denoiser
    calls per jump."""
    from tqdm import tqdm

    def score_of(previous: torch.Tensor, j: int) -> Callable[[torch.Tensor], torch.Tensor]:
        return lambda y: (denoise((previous + y) / j, sigma / math.sqrt(j)) - y) / sigma**2

    first = ChainState(start, torch.full(start.shape[:1], math.nan, dtype=start.dtype, device=start.device))
    show = sys.stderr.isatty() if progress is None else progress
    samples = []
    with torch.no_grad():
        for _ in tqdm(range(jumps), desc="walk-jump", unit="jump", disable=not show):
            first = UnderdampedWalk(score_of(torch.zeros_like(start), 1), walk_steps, step_size, friction).step(
                first, generator)
            total = first.x
            for j in range(2, measurements + 1):
                estimate = denoise(total / (j - 1), sigma / math.sqrt(j - 1))
                state = ChainState(estimate + sigma * _normal(estimate, generator), first.u)
                state = UnderdampedWalk(score_of(total, j), walk_steps, step_size, friction).step(state, generator)
                total = total + state.x
            samples.append(denoise(total / measurements, sigma / math.sqrt(measurements)))
    return torch.stack(samples)


class GaussianMixture:
    """A mixture of isotropic Gaussians in ``dim`` dimensions (``means: [K, dim]``, standard deviations ``stds:
    [K]``, ``weights: [K]``), with the exact smoothed densities p_s = p * N(0, s^2) and their denoisers: the known
    answers for walk-jump."""

    def __init__(self, means: Sequence[Sequence[float]] | torch.Tensor, stds: Sequence[float] | torch.Tensor,
                 weights: Sequence[float] | torch.Tensor | None = None) -> None:
        self.means = torch.as_tensor(means, dtype=torch.float64)
        self.stds = torch.as_tensor(stds, dtype=torch.float64).expand(len(self.means))
        weights = torch.ones(len(self.means)) if weights is None else torch.as_tensor(weights)
        self.weights = (weights / weights.sum()).to(torch.float64)

    def sample(self, n: int, noise: float = 0.0, generator: torch.Generator | None = None) -> torch.Tensor:
        """``n`` draws ``[n, dim]`` of x + noise * N(0, I), x from the mixture."""
        component = torch.multinomial(self.weights, n, replacement=True, generator=generator)
        spread = torch.sqrt(self.stds[component] ** 2 + noise**2)[:, None]
        return self.means[component] + spread * torch.randn(n, self.means.shape[1], generator=generator,
                                                            dtype=torch.float64)

    def log_prob(self, y: torch.Tensor, noise: float = 0.0) -> torch.Tensor:
        """log p_noise(y) ``[B]`` of ``y: [B, dim]``."""
        variance = self.stds**2 + noise**2
        squared = ((y[:, None, :] - self.means) ** 2).sum(-1)
        dim = self.means.shape[1]
        return torch.logsumexp(self.weights.log() - squared / (2 * variance)
                               - 0.5 * dim * torch.log(2 * math.pi * variance), dim=1)

    def denoise(self, y: torch.Tensor, noise: torch.Tensor | float) -> torch.Tensor:
        """E[x | y] for y = x + noise * N(0, I): y + noise^2 grad log p_noise(y)."""
        noise = float(noise)
        with torch.enable_grad():
            y = y.detach().to(torch.float64).requires_grad_()
            (score,) = torch.autograd.grad(self.log_prob(y, noise).sum(), y)
        return (y + noise**2 * score).detach()

    __call__ = denoise
