"""Neural thermodynamic integration (after Mate, Fleuret and Bereau, 2024): a learned potential U_theta(x, t) that
equals the decoupled Hamiltonian at t = 0 and the coupled one at t = 1, trained by score matching so that
exp(-U_theta(., t)) is the density of samples interpolated between the two end states. Then
dF = F(1) - F(0) = integral over t of < dU_theta/dt > with x from the interpolant: no sampling at intermediate t.

The pieces are generic: any ``potential(x, t) -> [B]`` (reduced units, kT) with those boundary values, and an
:class:`Interpolant` that pairs an end-0 sample with an end-1 sample, moves one towards the other and may blur the
result with Gaussian noise.
"""

from __future__ import annotations

__all__ = ["EndStates", "Interpolant", "NeuralTIResult", "TrainingHistory", "TrainingSettings",
           "linear_interpolation", "periodic_assignment", "centred", "score_matching_loss", "train_neural_ti",
           "gauss_legendre", "neural_ti_estimate"]

import dataclasses
import os
import sys
from collections.abc import Callable

import numpy as np
import torch

from molsamp.checkpoints import save_training_state
from molsamp.errors import InputError
from molsamp.kernels import HMC, ChainState, energy_and_gradient
from molsamp.targets import EnergyFunction

Potential = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
Align = Callable[[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor],
                 tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]]
Path = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]

_CLIP = 0.1
"""Smallest 1 - t (or t) that the target score-matching target is divided by."""


@dataclasses.dataclass(frozen=True)
class EndStates:
    """Samples of the two end states with the gradients of their reduced energies (``[n, ...]`` each). Training and
    estimation run on these tensors' device; a generator passed along must be on the same device."""

    x0: torch.Tensor
    grad0: torch.Tensor
    x1: torch.Tensor
    grad1: torch.Tensor

    @classmethod
    def from_energies(cls, x0: torch.Tensor, energy0: Callable, x1: torch.Tensor, energy1: Callable) -> EndStates:
        return cls(x0, energy_and_gradient(energy0, x0)[1], x1, energy_and_gradient(energy1, x1)[1])


@dataclasses.dataclass(frozen=True)
class NeuralTIResult:
    """``delta_f`` = F(t=1) - F(t=0) and its standard error (kT); ``integrand`` is <dU/dt> at each of ``t``."""

    delta_f: float
    error: float
    t: np.ndarray
    integrand: np.ndarray


def linear_interpolation(x0: torch.Tensor, x1: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """x_t = (1 - t) x0 + t x1, with ``t`` of shape ``[B]``."""
    t = t.reshape(-1, *([1] * (x0.ndim - 1)))
    return (1 - t) * x0 + t * x1


def periodic_assignment(a: torch.Tensor, b: torch.Tensor, box: float) -> torch.Tensor:
    """``order [B, M]`` pairing points ``b: [B, M, 3]`` with ``a: [B, M, 3]`` (b[:, order[:, i]] with a[:, i]) by
    the Hungarian assignment on minimum-image squared distances in a cubic ``box``."""
    from scipy.optimize import linear_sum_assignment

    d = a[:, :, None, :] - b[:, None, :, :]
    cost = ((d - box * torch.round(d / box)) ** 2).sum(-1).cpu().numpy()
    return torch.as_tensor(np.stack([linear_sum_assignment(c)[1] for c in cost]), device=b.device)


def centred(x: torch.Tensor, box: float) -> torch.Tensor:
    """``x: [B, N, 3]`` translated to put its first point at the origin, every point at its minimum image."""
    shifted = x - x[:, :1]
    return shifted - box * torch.round(shifted / box)


def _no_alignment(x0: torch.Tensor, grad0: torch.Tensor, x1: torch.Tensor, grad1: torch.Tensor
                  ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    return x0, grad0, x1, grad1


@dataclasses.dataclass(frozen=True)
class Interpolant:
    """x_t = path(x0, x1, t) + gamma(t) z, z standard normal, gamma(t) = 2 ``noise`` sqrt(t (1 - t)) (so ``noise``
    is the largest blur, at t = 1/2, in the units of x). ``align(x0, grad0, x1, grad1)`` may move and relabel each
    pair (with its gradients) first, using symmetries of the energies.

    Without noise the score of p_t is learned by target score matching, which needs independently drawn pairs (no
    ``align`` that depends on both). With noise it is learned by denoising score matching, which holds for any
    pairing."""

    path: Path = linear_interpolation
    align: Align = _no_alignment
    noise: float = 0.0

    def pairs(self, ends: EndStates, n: int, generator: torch.Generator | None = None
              ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """``n`` aligned pairs of independently drawn end-state samples: x0, grad0, x1, grad1."""
        device = ends.x0.device
        i = torch.randint(len(ends.x0), (n,), generator=generator, device=device)
        j = torch.randint(len(ends.x1), (n,), generator=generator, device=device)
        return self.align(ends.x0[i], ends.grad0[i], ends.x1[j], ends.grad1[j])

    def gamma(self, t: torch.Tensor) -> torch.Tensor:
        return 2 * self.noise * torch.sqrt(torch.clamp(t * (1 - t), min=0))

    def sample(self, x0: torch.Tensor, x1: torch.Tensor, t: torch.Tensor, generator: torch.Generator | None = None
               ) -> tuple[torch.Tensor, torch.Tensor]:
        """x_t and the noise z that was added."""
        z = (torch.randn(x0.shape, generator=generator, dtype=x0.dtype, device=x0.device) if self.noise
             else torch.zeros_like(x0))
        return self.path(x0, x1, t) + self.gamma(t).reshape(-1, *([1] * (x0.ndim - 1))) * z, z


def score_matching_loss(potential: Potential, x0: torch.Tensor, grad0: torch.Tensor, x1: torch.Tensor,
                        grad1: torch.Tensor, t: torch.Tensor, interpolant: Interpolant = Interpolant(),
                        generator: torch.Generator | None = None, score_weight: float = 1.0,
                        weight_emphasis: float = 0.0, time_penalty: float = 0.0
                        ) -> tuple[torch.Tensor, torch.Tensor]:
    """Score matching of exp(-U_theta(., t)) to the density p_t of the interpolant, at x_t drawn from the pair.

    Without noise (target score matching): given x1, x0 = (x_t - t x1) / (1 - t) for the linear path, so the score
    of p_t at x_t is E[-grad0 / (1 - t) | x_t] (and symmetrically from the other end); the gradient of U_theta is
    regressed on -score from end 0 for t < 1/2 and from end 1 otherwise. With noise (denoising score matching):
    gamma(t) grad U_theta is regressed on z, whose conditional mean given x_t is -gamma(t) times the score.

    Each sample's mean squared residual (over coordinates) is weighted by ``score_weight exp(weight_emphasis t (t -
    1))`` (the authors: 1e-3 and 10 with lengths in box units, so 1e-3 box^2 in the units of x), and
    ``time_penalty`` times the mean of (dU_theta/dt)^2 is added: score matching cannot see an x-independent offset
    c(t) of U_theta, which the penalty keeps flat (the authors: 1e-8).

    Returns the loss and dU_theta/dt at the batch (detached), whose mean over uniform t is an estimate of dF.
    """
    xt, z = interpolant.sample(x0, x1, t, generator)
    xt, t = xt.detach().requires_grad_(), t.detach().requires_grad_()
    u = potential(xt, t)
    grad_x, grad_t = torch.autograd.grad(u.sum(), (xt, t), create_graph=True)
    shape = (-1, *([1] * (x0.ndim - 1)))
    if interpolant.noise:
        residual = interpolant.gamma(t.detach()).reshape(shape) * grad_x - z
    else:
        from_start = grad0 / torch.clamp(1 - t, min=_CLIP).reshape(shape)
        from_end = grad1 / torch.clamp(t, min=_CLIP).reshape(shape)
        residual = grad_x - torch.where((t < 0.5).reshape(shape), from_start, from_end).detach()
    weight = score_weight * torch.exp(weight_emphasis * t.detach() * (t.detach() - 1))
    loss = (weight * (residual**2).flatten(1).mean(1)).mean()
    if time_penalty:
        loss = loss + time_penalty * (grad_t**2).mean()
    return loss, grad_t.detach()


@dataclasses.dataclass(frozen=True)
class TrainingSettings:
    """How :func:`train_neural_ti` trains; the defaults are the authors' (with lengths in units of the box side
    for ``score_weight``: multiply it by box^2 for lengths in other units).

    A batch of ``batch_size`` pairs is drawn every ``pairs_every`` steps and reused with a new t for each step.
    Adam's learning rate decays continuously by 10 every ``decay_every`` steps, down to ``min_learning_rate``.
    """

    steps: int = 50_000
    batch_size: int = 24
    pairs_every: int = 20
    learning_rate: float = 1e-3
    decay_every: int = 10_000
    min_learning_rate: float = 1e-5
    score_weight: float = 1e-3
    weight_emphasis: float = 10.0
    time_penalty: float = 1e-8

    def learning_rate_at(self, step: int) -> float:
        return max(self.learning_rate * 0.1 ** (step / self.decay_every), self.min_learning_rate)


@dataclasses.dataclass
class TrainingHistory:
    """Per training step: the loss and the batch mean of dU_theta/dt (kT), at t uniform in [0, 1]."""

    loss: list[float] = dataclasses.field(default_factory=list)
    mean_dudt: list[float] = dataclasses.field(default_factory=list)

    def running_estimate(self, last: float = 0.25, blocks: int = 20) -> tuple[float, float]:
        """dF (kT) as the authors' running estimate: the mean of dU_theta/dt over the last fraction ``last`` of the
        steps, with the standard error from ``blocks`` block means."""
        values = np.asarray(self.mean_dudt[-max(int(last * len(self.mean_dudt)), blocks):])
        means = np.array([block.mean() for block in np.array_split(values, blocks)])
        return float(values.mean()), float(means.std(ddof=1) / np.sqrt(blocks))


def train_neural_ti(potential: torch.nn.Module, ends: EndStates, settings: TrainingSettings = TrainingSettings(),
                    interpolant: Interpolant = Interpolant(), generator: torch.Generator | None = None,
                    checkpoint: str | os.PathLike | None = None, checkpoint_every: int = 1000,
                    progress: bool | None = None) -> TrainingHistory:
    """Fit ``potential`` by :func:`score_matching_loss` (Adam) on pairs of end-state samples and uniform t.

    With ``checkpoint``, the model, optimiser, history and ``generator`` state are written there (atomically) every
    ``checkpoint_every`` steps and at the end, and a run finds its place there again: a run stopped and resumed
    gives the same result as one run through (on the same machine). A finished checkpoint returns its history at
    once. The generator (needed to resume) must be given with a checkpoint."""
    from tqdm import tqdm

    if checkpoint is not None and generator is None:
        raise ValueError("a checkpointed run needs a generator, whose state is saved with it")
    optimiser = torch.optim.Adam(potential.parameters(), lr=settings.learning_rate)
    history, start = TrainingHistory(), 0
    if checkpoint is not None and os.path.exists(checkpoint):
        saved = torch.load(checkpoint, map_location=ends.x0.device, weights_only=False)
        potential.load_state_dict(saved["model"])
        optimiser.load_state_dict(saved["optimiser"])
        generator.set_state(saved["generator"].cpu())
        history, start = TrainingHistory(**saved["history"]), saved["step"]
    every = max(checkpoint_every // settings.pairs_every, 1) * settings.pairs_every
    show = sys.stderr.isatty() if progress is None else progress
    for step in tqdm(range(start, settings.steps), initial=start, total=settings.steps, disable=not show,
                     unit="step", desc="neural TI"):
        if step % settings.pairs_every == 0 or step == start:
            pairs = interpolant.pairs(ends, settings.batch_size, generator)
        t = torch.rand(settings.batch_size, generator=generator, dtype=ends.x0.dtype, device=ends.x0.device)
        loss, dudt = score_matching_loss(potential, *pairs, t, interpolant, generator, settings.score_weight,
                                         settings.weight_emphasis, settings.time_penalty)
        for group in optimiser.param_groups:
            group["lr"] = settings.learning_rate_at(step)
        optimiser.zero_grad()
        loss.backward(inputs=list(potential.parameters()))  # not through the parts of U_theta that no weight changes
        optimiser.step()
        history.loss.append(loss.item())
        history.mean_dudt.append(dudt.mean().item())
        if checkpoint is not None and ((step + 1) % every == 0 or step + 1 == settings.steps):
            save_training_state({"model": potential.state_dict(), "optimiser": optimiser.state_dict(),
                                 "generator": generator.get_state(), "history": dataclasses.asdict(history),
                                 "step": step + 1}, checkpoint)
    return history


def gauss_legendre(n: int, pieces: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """Nodes and weights of the ``n``-point quadrature on [0, 1] that applies the Gauss-Legendre rule of
    ``n / pieces`` points to each of ``pieces`` equal parts (for an integrand smooth only within each part)."""
    if n < pieces or n % pieces:
        raise InputError(f"{n} quadrature nodes do not split evenly over {pieces} pieces")
    nodes, weights = np.polynomial.legendre.leggauss(n // pieces)
    nodes = (np.arange(pieces)[:, None] + 0.5 * (nodes + 1)) / pieces
    return nodes.ravel(), np.tile(weights / (2 * pieces), pieces)


def neural_ti_estimate(potential: Potential, ends: EndStates, n_t: int = 32, pairs_per_t: int = 64,
                       interpolant: Interpolant = Interpolant(), refine_steps: int = 0, refine_step_size: float = 0.005,
                       refine_leapfrog: int = 10, generator: torch.Generator | None = None, n_bootstrap: int = 200,
                       pieces: int = 1) -> NeuralTIResult:
    """dF = integral over t in [0, 1] of <dU_theta/dt>, the average over interpolated pairs at each of ``n_t``
    nodes of :func:`gauss_legendre` (``pieces``: where the potential's t-dependence has kinks). The error is the
    bootstrap standard deviation over pairs.

    Where exp(-U_theta(., t)) is not exactly the interpolant's density, the plain estimate is biased by the
    mismatch. ``refine_steps`` HMC trajectories on U_theta(., t) (unit masses, ``refine_leapfrog`` leapfrog steps of
    ``refine_step_size`` in the units of x, Metropolis-corrected) move each interpolated sample towards
    exp(-U_theta(., t)), the ensemble the TI identity needs, and each chain then contributes its mean dU_theta/dt
    over the second half of its trajectories: this is standard TI along the learned path, started from the
    interpolant, and exact for any U_theta with the right end states once the chains have equilibrated."""
    t_nodes, weights = gauss_legendre(n_t, pieces)
    values = np.empty((n_t, pairs_per_t))
    for k, t_value in enumerate(t_nodes):
        x0, _, x1, _ = interpolant.pairs(ends, pairs_per_t, generator)
        t = torch.full((pairs_per_t,), float(t_value), dtype=x0.dtype, device=x0.device, requires_grad=True)
        xt, _ = interpolant.sample(x0, x1, t.detach(), generator)
        if refine_steps:
            values[k] = _refined_dudt(potential, xt, t, refine_steps, refine_step_size, refine_leapfrog, generator)
        else:
            values[k] = _dudt(potential, xt, t)
    integrand = values.mean(1)
    rng = np.random.default_rng(0 if generator is None else int(generator.initial_seed()) % 2**32)
    resampled = values[:, rng.integers(0, pairs_per_t, (n_bootstrap, pairs_per_t))].mean(2)  # [n_t, n_bootstrap]
    return NeuralTIResult(delta_f=float(weights @ integrand), error=float((weights @ resampled).std()),
                          t=t_nodes, integrand=integrand)


def _dudt(potential: Potential, x: torch.Tensor, t: torch.Tensor) -> np.ndarray:
    (grad_t,) = torch.autograd.grad(potential(x.detach(), t).sum(), t)
    return grad_t.cpu().numpy()


def _refined_dudt(potential: Potential, x: torch.Tensor, t: torch.Tensor, steps: int, step_size: float,
                  leapfrog: int, generator: torch.Generator | None) -> np.ndarray:
    """Each chain's mean dU_theta/dt over the second half of ``steps`` HMC trajectories on U_theta(., t)."""
    hmc = HMC(EnergyFunction(lambda y: potential(y, t.detach())), step_size, leapfrog)
    state = ChainState.start(x, hmc.target)
    kept = []
    for step in range(steps):
        state = hmc.step(state, generator)
        if step >= steps // 2:
            kept.append(_dudt(potential, state.x, t))
    return np.mean(kept, axis=0)
