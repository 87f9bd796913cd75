"""Reusable checks for tests of targets, distributions and kernels.

The contract batteries (:func:`assert_distribution_contract` for every
:class:`~molsamp.distributions.Distribution`; :func:`assert_kernel_contract`, :func:`assert_kernel_stationary` and
:func:`assert_kernel_resumes` for every :class:`~molsamp.kernels.Kernel`) are written once here and applied to every
implementation in ``tests/test_contracts.py``, like zuko's flow tests. The 1-D helpers (:func:`exact_bin_masses`,
:func:`exact_draws`, :func:`assert_samples_match`) compare samples with a density known up to a constant.
"""

from __future__ import annotations

__all__ = ["assert_grad_matches_finite_differences", "assert_grad_matches_force", "exact_bin_masses", "exact_draws",
           "assert_samples_match", "assert_distribution_contract", "assert_kernel_contract",
           "assert_kernel_stationary", "assert_kernel_resumes", "assert_equivariant", "ShiftedGaussianFlow"]

import io
import itertools
import math
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import numpy as np
import torch

from molsamp.analysis import js_divergence
from molsamp.distributions import Distribution
from molsamp.kernels import ChainState, Kernel
from molsamp.targets import Target

LogDensity = Callable[[torch.Tensor], Any]
"""An unnormalised 1-D log-density: float64 points ``[M]`` to log-densities ``[M]`` (tensor or array, any constant)."""


def assert_grad_matches_finite_differences(target: Target, x: torch.Tensor, step: float = 1e-5,
                                           n_coordinates: int = 12, rtol: float = 1e-3, atol: float = 1e-3,
                                           seed: int = 0) -> None:
    """Autograd gradient of ``target.energy`` at ``x: [1, N, dim]`` equals central finite differences.

    Checks ``n_coordinates`` randomly chosen coordinates; ``step`` in the units of ``x``.
    """
    x = x.detach().clone().double().requires_grad_(True)
    target.energy(x).sum().backward()
    generator = np.random.default_rng(seed)
    for flat in generator.choice(x.numel(), size=min(n_coordinates, x.numel()), replace=False):
        shift = torch.zeros_like(x).flatten()
        shift[flat] = step
        shift = shift.view_as(x)
        with torch.no_grad():
            numeric = (target.energy(x + shift) - target.energy(x - shift)).item() / (2 * step)
        analytic = x.grad.flatten()[flat].item()
        assert abs(numeric - analytic) <= atol + rtol * abs(numeric), (
            f"coordinate {flat}: autograd {analytic:.6g} vs finite difference {numeric:.6g}")


def assert_grad_matches_force(target: Target, x: torch.Tensor, forces: np.ndarray, rtol: float = 1e-4,
                              atol: float = 1e-6) -> None:
    """Autograd gradient of ``target.energy`` at ``x: [B, N, 3]`` equals ``-forces / kT`` (forces in kJ/mol/nm)."""
    x = x.detach().clone().double().requires_grad_(True)
    target.energy(x).sum().backward()
    np.testing.assert_allclose(x.grad.numpy(), -np.asarray(forces) / target.kT, rtol=rtol, atol=atol)


def _grid_and_cdf(log_density: LogDensity, low: float, high: float, points: int) -> tuple[np.ndarray, np.ndarray]:
    """``points`` equally spaced points over [low, high] and the normalised CDF there (trapezoid rule)."""
    grid = torch.linspace(low, high, points, dtype=torch.float64)
    log_values = torch.as_tensor(log_density(grid), dtype=torch.float64).detach().cpu().numpy()
    density = np.exp(log_values - log_values.max())
    cdf = np.concatenate([[0.0], np.cumsum(0.5 * (density[1:] + density[:-1]) * np.diff(grid.numpy()))])
    return grid.numpy(), cdf / cdf[-1]


def exact_bin_masses(log_density: LogDensity, edges: np.ndarray, points: int = 20001) -> np.ndarray:
    """Probability of each bin ``[len(edges) - 1]`` of exp(log_density) restricted to [edges[0], edges[-1]], by
    trapezoid integration over ``points`` equally spaced points (``edges`` in the units of the density's
    variable)."""
    edges = np.asarray(edges, dtype=np.float64)
    grid, cdf = _grid_and_cdf(log_density, edges[0], edges[-1], points)
    return np.diff(np.interp(edges, grid, cdf))


def exact_draws(log_density: LogDensity, low: float, high: float, n: int, generator: torch.Generator | None = None,
                points: int = 20001) -> torch.Tensor:
    """``n`` independent draws ``[n]`` (float64) of exp(log_density) restricted to [low, high], by inverting its
    CDF on ``points`` grid points."""
    grid, cdf = _grid_and_cdf(log_density, low, high, points)
    uniforms = torch.rand(n, generator=generator, dtype=torch.float64).numpy()
    return torch.from_numpy(np.interp(uniforms, cdf, grid))


def _js_to_exact(samples, log_density: LogDensity, edges: np.ndarray, log_weights=None) -> float:
    """Jensen-Shannon divergence (nats) between the (weighted) histogram of 1-D ``samples`` and the exact masses."""
    samples = torch.as_tensor(samples).detach().double().cpu().flatten().numpy()
    weights = None if log_weights is None else torch.softmax(torch.as_tensor(log_weights).double().cpu(), 0).numpy()
    histogram = np.histogram(samples, edges, weights=weights)[0]
    return js_divergence(histogram, exact_bin_masses(log_density, edges)).item()


def assert_samples_match(samples, log_density: LogDensity, edges: np.ndarray, max_js: float,
                         log_weights=None) -> None:
    """The histogram of 1-D ``samples`` ``[B]`` over ``edges`` (weighted by ``exp(log_weights)`` ``[B]`` when given)
    is within ``max_js`` nats (Jensen-Shannon) of the exact bin masses of exp(log_density).

    Samples outside the edges are ignored: choose edges that hold all but a negligible mass. Sampling noise alone
    gives a divergence of about (bins - 1) / (8 B) for B independent samples.
    """
    js = _js_to_exact(samples, log_density, edges, log_weights)
    assert js < max_js, f"Jensen-Shannon divergence {js:.4g} nats from the exact density is not below {max_js}"


def _generator(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def random_orthogonal(dim: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """A Haar-random orthogonal matrix ``[dim, dim]`` (float64): a rotation or a reflection."""
    q, r = torch.linalg.qr(torch.randn(dim, dim, generator=generator, dtype=torch.float64))
    return q * torch.sign(torch.diagonal(r))


def assert_equivariant(field: Callable[[torch.Tensor, torch.Tensor], torch.Tensor], x: torch.Tensor,
                       t: torch.Tensor, atol: float = 1e-5, seed: int = 0,
                       types: Sequence[int] | None = None) -> None:
    """A vector field ``field(t, x)`` over particles ``x: [B, N, D]`` (float64) is E(D)-equivariant (rotations and
    reflections), invariant to translations, equivariant to permutations of identical particles (all of them, or
    those of one type in ``types``), and has zero mean over the particles, each to ``atol``: what an equivariant
    flow on the centred subspace needs."""
    generator = _generator(seed)
    v = field(t, x)
    zeros = torch.zeros_like(v.mean(1))
    torch.testing.assert_close(v.mean(1), zeros, atol=atol, rtol=0, msg="the field is not centred")
    rotation = random_orthogonal(x.shape[-1], generator).to(x)
    torch.testing.assert_close(field(t, x @ rotation), v @ rotation, atol=atol, rtol=0,
                               msg="not equivariant to a rotation or reflection")
    shift = torch.randn(len(x), 1, x.shape[-1], generator=generator, dtype=x.dtype).to(x.device)
    torch.testing.assert_close(field(t, x + shift), v, atol=atol, rtol=0, msg="not invariant to translations")
    kinds = torch.zeros(x.shape[1], dtype=torch.long) if types is None else torch.as_tensor(types)
    permutation = torch.arange(x.shape[1])
    for kind in kinds.unique():
        members = torch.nonzero(kinds == kind).flatten()
        permutation[members] = members[torch.randperm(len(members), generator=generator)]
    permutation = permutation.to(x.device)
    torch.testing.assert_close(field(t, x[:, permutation]), v[:, permutation], atol=atol, rtol=0,
                               msg="not equivariant to permutations of the particles")


def assert_distribution_contract(distribution: Distribution, n: int = 64, context: Any = None, seed: int = 0,
                                 parameters: Iterable[torch.Tensor] = (),
                                 save_load: Callable[[], Distribution] | None = None,
                                 normalised_on: tuple[float, float] | None = None, grid_points: int = 400,
                                 rtol: float = 1e-6, atol: float = 1e-6, normalisation_atol: float = 1e-3) -> None:
    """The Distribution contract.

    - ``sample(n)`` gives finite ``[n, *event_shape]``, the same for the same seed and different for another;
    - ``sample_and_log_prob(n)`` draws the same samples from the same seed, and its log-densities ``[n]`` equal
      ``log_prob`` of them (``rtol``, ``atol``);
    - the gradient of ``log_prob(x).sum()`` reaches every tensor of ``parameters``: finite and not all zero;
    - ``save_load()`` (a callable that saves the distribution's model, reloads it and returns the reloaded
      distribution) gives bitwise the same ``log_prob``;
    - ``normalised_on=(low, high)``: for an unconditional distribution with at most two event coordinates,
      exp(log_prob) integrates to 1 (``normalisation_atol``) over [low, high]^D by the midpoint rule on
      ``grid_points`` cells per axis (spectrally accurate for periodic densities such as torsion angles in rad).

    A conditional distribution is checked at ``context`` (one row per sample: ``n = len(context)``).
    """
    assert isinstance(distribution, Distribution), f"{type(distribution).__name__} is not a Distribution"
    event_shape = tuple(distribution.event_shape)
    x = distribution.sample(n, _generator(seed), context)
    assert tuple(x.shape) == (n, *event_shape), f"sample({n}) has shape {tuple(x.shape)}, not {(n, *event_shape)}"
    assert torch.isfinite(x).all(), "sample gave non-finite values"
    assert torch.equal(distribution.sample(n, _generator(seed), context), x), "the same seed gave other samples"
    assert not torch.equal(distribution.sample(n, _generator(seed + 1), context), x), \
        "another seed gave the same samples"

    x_joint, log_q = distribution.sample_and_log_prob(n, _generator(seed), context)
    assert torch.equal(x_joint, x), "sample_and_log_prob drew other samples than sample from the same seed"
    log_p = distribution.log_prob(x.detach(), context)
    assert tuple(log_p.shape) == (n,), f"log_prob gave shape {tuple(log_p.shape)}, not {(n,)}"
    assert tuple(log_q.shape) == (n,), f"sample_and_log_prob gave log-densities of shape {tuple(log_q.shape)}"
    assert torch.isfinite(log_p).all(), "log_prob of samples is not finite"
    torch.testing.assert_close(log_q.detach(), log_p.detach(), rtol=rtol, atol=atol, check_dtype=False,
                               msg=lambda m: f"sample_and_log_prob disagrees with log_prob of its samples: {m}")

    parameters = list(parameters)
    if parameters:
        gradients = torch.autograd.grad(log_p.sum(), parameters, allow_unused=True)
        for index, gradient in enumerate(gradients):
            assert gradient is not None, f"the gradient of log_prob does not reach parameter {index}"
            assert torch.isfinite(gradient).all(), f"the gradient of log_prob for parameter {index} is not finite"
            assert gradient.abs().sum() > 0, f"the gradient of log_prob for parameter {index} is zero"

    if save_load is not None:
        with torch.no_grad():
            reloaded = save_load().log_prob(x.detach(), context)
        assert torch.equal(reloaded, log_p.detach()), (
            f"log_prob changed in a save/load round trip (max difference {(reloaded - log_p).abs().max():.3g})")

    if normalised_on is not None:
        assert context is None, "normalisation is checked for unconditional distributions only"
        assert len(event_shape) <= 1 and math.prod(event_shape) <= 2, \
            f"normalisation on a grid needs at most two event coordinates, not {event_shape}"
        low, high = normalised_on
        width = (high - low) / grid_points
        axis = low + width * (torch.arange(grid_points, dtype=torch.float64) + 0.5)
        grid = torch.tensor(list(itertools.product(axis.tolist(), repeat=math.prod(event_shape))),
                            dtype=torch.float64).reshape(-1, *event_shape)
        with torch.no_grad():
            total = distribution.log_prob(grid).double().exp().sum().item() * width ** math.prod(event_shape)
        assert abs(total - 1.0) <= normalisation_atol, f"exp(log_prob) integrates to {total:.6g}, not 1"


def assert_kernel_contract(kernel: Kernel, state: ChainState, target: Target, steps: int = 2, seed: int = 0,
                           rtol: float = 1e-6, atol: float = 1e-6) -> None:
    """Each of ``steps`` steps from ``state`` returns a :class:`~molsamp.kernels.ChainState` whose positions keep
    the shape ``[C, *event]`` and dtype of ``state.x``, whose energies ``[C]`` are ``target.energy`` of them (kT;
    ``rtol``, ``atol``), whose velocities are None or of the positions' shape, and which carries no autograd
    graph."""
    generator = _generator(seed)
    for _ in range(steps):
        new = kernel.step(state, generator)
        assert isinstance(new, ChainState), f"step returned a {type(new).__name__}, not a ChainState"
        assert new.x.shape == state.x.shape and new.x.dtype == state.x.dtype, (
            f"positions changed from {tuple(state.x.shape)} {state.x.dtype} to {tuple(new.x.shape)} {new.x.dtype}")
        assert tuple(new.u.shape) == (len(state.x),), f"energies have shape {tuple(new.u.shape)}"
        assert new.v is None or new.v.shape == new.x.shape, f"velocities have shape {tuple(new.v.shape)}"
        assert not (new.x.requires_grad or new.u.requires_grad), "the state carries an autograd graph"
        with torch.no_grad():
            expected = target.energy(new.x)
        torch.testing.assert_close(new.u, expected, rtol=rtol, atol=atol, check_dtype=False,
                                   msg=lambda m: f"the state's energies are not the target's energies: {m}")
        state = new


def assert_kernel_stationary(kernel: Kernel, state: ChainState, observable: Callable[[torch.Tensor], torch.Tensor],
                             log_density: LogDensity, edges: np.ndarray, steps: int, max_js: float, seed: int = 0,
                             min_moved: float = 0.5) -> None:
    """The kernel leaves its target invariant: chains started at exact draws ``state`` (``[C, *event]``, with the
    kernel's energies) still match the exact marginal exp(log_density) of ``observable`` (``[C, *event]`` to ``[C]``,
    in the units of ``edges``) after ``steps`` steps (Jensen-Shannon below ``max_js`` nats, before and after), every
    chain stays finite, and at least a fraction ``min_moved`` of the chains moved, so that a kernel that does nothing
    cannot pass."""
    start = observable(state.x)
    js = _js_to_exact(start, log_density, edges)
    assert js < max_js, f"the start is not a draw of the target: Jensen-Shannon {js:.4g} nats >= {max_js}"
    generator = _generator(seed)
    for _ in range(steps):
        state = kernel.step(state, generator)
    end = observable(state.x)
    diverged = int((~torch.isfinite(end)).sum())
    assert diverged == 0, f"after {steps} steps, {diverged} of {len(end)} chains have non-finite positions"
    moved = (end != start).double().mean().item()
    assert moved >= min_moved, f"only {moved:.1%} of the chains moved in {steps} steps (at least {min_moved:.0%})"
    js = _js_to_exact(end, log_density, edges)
    assert js < max_js, f"after {steps} steps, Jensen-Shannon divergence {js:.4g} nats from the target >= {max_js}"


def _run(kernel: Kernel, state: ChainState, steps: int, generator: torch.Generator) -> ChainState:
    for _ in range(steps):
        state = kernel.step(state, generator)
    return state


def assert_kernel_resumes(make_kernel: Callable[[], Kernel], state: ChainState, steps: int, seed: int = 0,
                          checkpoint: Callable[[Kernel], Any] | None = None,
                          restore: Callable[[Kernel, Any], None] | None = None) -> None:
    """``2 * steps`` steps from ``state`` give bitwise the same positions, energies and velocities as ``steps`` steps,
    a save (the ChainState, the generator's state and ``checkpoint(kernel)``, through ``torch.save``), a fresh
    kernel from ``make_kernel()``, ``restore(kernel, saved)`` and ``steps`` more. ``make_kernel`` builds the same
    kernel every call (same settings and seeds); the run must move the chains."""
    straight = _run(make_kernel(), state, 2 * steps, _generator(seed))
    assert not torch.equal(straight.x, state.x), f"{2 * steps} steps did not move the chains"

    kernel, generator = make_kernel(), _generator(seed)
    halfway = _run(kernel, state, steps, generator)
    buffer = io.BytesIO()
    torch.save({"x": halfway.x, "u": halfway.u, "v": halfway.v, "generator": generator.get_state(),
                "kernel": None if checkpoint is None else checkpoint(kernel)}, buffer)
    buffer.seek(0)
    saved = torch.load(buffer, weights_only=True)

    kernel, generator = make_kernel(), torch.Generator()
    generator.set_state(saved["generator"])
    if restore is not None:
        restore(kernel, saved["kernel"])
    resumed = _run(kernel, ChainState(saved["x"], saved["u"], saved["v"]), steps, generator)
    assert torch.equal(resumed.x, straight.x), "a resumed run ends at other positions than a straight one"
    assert torch.equal(resumed.u, straight.u), "a resumed run ends with other energies than a straight one"
    assert (resumed.v is None) == (straight.v is None) and (resumed.v is None or torch.equal(resumed.v, straight.v)), \
        "a resumed run ends with other velocities than a straight one"


class ShiftedGaussianFlow:
    """A stand-in for :class:`~molsamp.timewarp.model.TimewarpFlow` with an exact, asymmetric conditional density:
    v ~ N(0, I), x' ~ N(0.6 x + 0.4 v, 0.7^2) (atom features ignored), for tests of conditional proposals."""

    def _mean(self, x, v):
        return 0.6 * x + 0.4 * v

    def sample(self, x_cond, features, generator=None):
        v = torch.randn(x_cond.shape, generator=generator, dtype=x_cond.dtype)
        noise = torch.randn(x_cond.shape, generator=generator, dtype=x_cond.dtype)
        x_next = self._mean(x_cond, v) + 0.7 * noise
        return x_next, v, self.log_prob(x_next, v, x_cond, features)

    def log_prob(self, x_next, v, x_cond, features):
        log_v = -0.5 * (v**2).flatten(1).sum(1) - 0.5 * v[0].numel() * math.log(2 * math.pi)
        log_x = (-0.5 * (((x_next - self._mean(x_cond, v)) / 0.7) ** 2).flatten(1).sum(1)
                 - x_next[0].numel() * math.log(0.7 * math.sqrt(2 * math.pi)))
        return log_v + log_x
