"""Markov chain kernels: the one Metropolis-Hastings rule, Langevin dynamics, gradient-based MCMC, and their
composition.

Every MCMC sampler of molsamp is a :class:`Kernel` that maps a :class:`ChainState` of ``C`` parallel chains to the
next. :class:`MetropolisHastings` turns any :class:`Proposal` and any :class:`~molsamp.targets.Target` into an
exact kernel; :class:`RandomWalk` and :class:`MALA` (Metropolis-adjusted Langevin) are proposals for it;
:class:`HMC` is an exact Hamiltonian Monte Carlo kernel; :class:`Langevin` integrates BAOAB dynamics on a
differentiable target; :class:`Cycle` applies kernels one after another (each leaves the target invariant, so their
composition does too). Torsion jumps, Timewarp proposals, SMC moves and the MD of :mod:`molsamp.md` are
compositions of these.
"""

from __future__ import annotations

__all__ = ["ChainState", "Kernel", "Proposal", "RandomWalk", "MALA", "metropolis_accept", "MetropolisHastings",
           "HMC", "Cycle", "Langevin", "energy_and_gradient"]

import dataclasses
import math
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Protocol

import torch

if TYPE_CHECKING:
    from molsamp.targets import Target


@dataclasses.dataclass(frozen=True)
class ChainState:
    """The states of ``C`` parallel chains: positions ``x: [C, *event]`` (the target's coordinates: nm, rad or
    reduced lengths), their reduced energies ``u: [C]`` (kT) under the kernel's target, and velocities ``v`` of
    ``x``'s shape where the kernel carries them (None otherwise; Metropolis-Hastings moves keep them)."""

    x: torch.Tensor
    u: torch.Tensor
    v: torch.Tensor | None = None

    @classmethod
    def start(cls, x: torch.Tensor, target: Target) -> ChainState:
        """Chains at ``x`` with their energies evaluated on ``target``."""
        with torch.no_grad():
            return cls(x, target.energy(x))


class Kernel(Protocol):
    """A Markov kernel that leaves its target invariant: ``step(state, generator) -> state``."""

    def step(self, state: ChainState, generator: torch.Generator | None = None) -> ChainState: ...


class Proposal(Protocol):
    """A proposal density q(x' | x): ``propose(x) -> (x', log q(x | x') - log q(x' | x))``, both batched over chains
    (``[C, *event]`` and ``[C]``). The log ratio is 0 for a symmetric proposal."""

    def propose(self, x: torch.Tensor, generator: torch.Generator | None = None
                ) -> tuple[torch.Tensor, torch.Tensor]: ...


class RandomWalk:
    """The symmetric Gaussian proposal x' = x + scale * N(0, I) (log ratio 0), in the units of x."""

    def __init__(self, scale: float) -> None:
        self.scale = scale

    def propose(self, x: torch.Tensor, generator: torch.Generator | None = None
                ) -> tuple[torch.Tensor, torch.Tensor]:
        noise = torch.randn(x.shape, generator=generator, dtype=x.dtype, device=x.device)
        return x + self.scale * noise, torch.zeros(len(x), dtype=x.dtype, device=x.device)


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


def _select(accept: torch.Tensor, new: torch.Tensor, old: torch.Tensor) -> torch.Tensor:
    return torch.where(accept.reshape(-1, *([1] * (new.ndim - 1))), new, old)


class MetropolisHastings:
    """The exact kernel of a :class:`Proposal` on a :class:`~molsamp.targets.Target`: ``n_steps`` proposals per
    chain and step, each accepted with probability min(1, exp(u - u') q(x | x') / q(x' | x)). Energies of +inf (clashes, overflow) are
    never accepted. ``accepted`` and ``offered`` count the decisions so far, ``last_accepted`` ``[C]`` holds the
    latest step's."""

    def __init__(self, proposal: Proposal, target: Target, n_steps: int = 1) -> None:
        self.proposal, self.target, self.n_steps = proposal, target, n_steps
        self.accepted = self.offered = 0
        self.last_accepted: torch.Tensor | None = None

    @property
    def acceptance(self) -> float:
        """Fraction of the proposals accepted so far (NaN before the first)."""
        return self.accepted / self.offered if self.offered else math.nan

    @torch.no_grad()
    def step(self, state: ChainState, generator: torch.Generator | None = None) -> ChainState:
        for _ in range(self.n_steps):
            x_new, log_q_ratio = self.proposal.propose(state.x, generator)
            u_new = self.target.energy(x_new)
            accept = metropolis_accept(state.u - u_new + log_q_ratio, generator)
            self.last_accepted = accept
            self.accepted += int(accept.sum())
            self.offered += accept.numel()
            state = ChainState(_select(accept, x_new, state.x), torch.where(accept, u_new, state.u), state.v)
        return state


class Cycle:
    """Kernels applied one after another, in order or (``shuffle=True``) in a fresh random order each step; each
    leaves the target invariant, so the cycle does."""

    def __init__(self, kernels: Sequence[Kernel], shuffle: bool = False) -> None:
        self.kernels, self.shuffle = list(kernels), shuffle

    def step(self, state: ChainState, generator: torch.Generator | None = None) -> ChainState:
        order = torch.randperm(len(self.kernels), generator=generator).tolist() if self.shuffle else \
            range(len(self.kernels))
        for k in order:
            state = self.kernels[k].step(state, generator)
        return state


def energy_and_gradient(energy: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor
                        ) -> tuple[torch.Tensor, torch.Tensor]:
    """``energy(x)`` ``[B]`` and the gradient of its sum with respect to ``x`` (both detached)."""
    with torch.enable_grad():
        x = x.detach().requires_grad_()
        u = energy(x)
        (gradient,) = torch.autograd.grad(u.sum(), x)
    return u.detach(), gradient


class Langevin:
    """``n_steps`` of BAOAB Langevin dynamics (Leimkuhler-Matthews) per :meth:`step` on a differentiable target's
    reduced energy u (forces -kT grad u by autograd). Time in the units of ``timestep``, ``friction`` in inverse
    time, ``mass`` broadcasts against x. Velocities ride in the state (drawn from Maxwell-Boltzmann when it has
    none). BIASED by the time step: it samples exp(-u) up to an O(timestep^2) error; wrap it in an MH test or make
    the step small where that matters."""

    def __init__(self, target: Target, n_steps: int, timestep: float, friction: float = 1.0,
                 mass: torch.Tensor | float = 1.0) -> None:
        self.target, self.n_steps, self.timestep, self.friction, self.mass = target, n_steps, timestep, friction, mass

    def step(self, state: ChainState, generator: torch.Generator | None = None) -> ChainState:
        x, kT = state.x.detach(), self.target.kT
        mass = torch.as_tensor(self.mass, dtype=x.dtype, device=x.device)
        thermal = torch.sqrt(kT / mass)
        v = state.v if state.v is not None else thermal * torch.randn(x.shape, generator=generator, dtype=x.dtype,
                                                                     device=x.device)
        damping = math.exp(-self.friction * self.timestep)
        noise = math.sqrt(1 - damping**2) * thermal
        half = 0.5 * self.timestep
        u, gradient = energy_and_gradient(self.target.energy, x)
        for _ in range(self.n_steps):
            v = v - half * kT * gradient / mass
            x = x + half * v
            v = damping * v + noise * torch.randn(x.shape, generator=generator, dtype=x.dtype, device=x.device)
            x = x + half * v
            u, gradient = energy_and_gradient(self.target.energy, x)
            v = v - half * kT * gradient / mass
        return ChainState(x, u, v.detach())


def _squared_norm(x: torch.Tensor) -> torch.Tensor:
    """Sum of squares over the event dimensions: ``[C, *event]`` to ``[C]``."""
    return (x**2).flatten(1).sum(1)


def _finite(x: torch.Tensor) -> torch.Tensor:
    """Whether every entry of each chain's ``x: [C, ...]`` is finite, ``[C]``."""
    return torch.isfinite(x).flatten(1).all(1)


class MALA:
    """The Metropolis-adjusted Langevin proposal on a differentiable target's reduced energy u (kT):
    x' = x - (step^2 / 2) grad u(x) + step * N(0, I), with ``step`` in the units of x. Its log ratio
    log q(x | x') - log q(x' | x) needs grad u(x') too: two energy and gradient evaluations per proposal, besides
    the energy that :class:`MetropolisHastings` evaluates at x'. ``MetropolisHastings(MALA(target, step), target)``
    is exact. Where x' would not be finite the proposal stays at x, and where grad u(x') is not finite it is
    proposed anyway: both get log ratio -inf, so both are rejected, as is an x' of infinite or NaN energy (by the MH
    test); the target never sees a non-finite position."""

    def __init__(self, target: Target, step: float) -> None:
        self.target, self.step_size = target, step

    def propose(self, x: torch.Tensor, generator: torch.Generator | None = None
                ) -> tuple[torch.Tensor, torch.Tensor]:
        x = x.detach()
        h = self.step_size
        _, gradient = energy_and_gradient(self.target.energy, x)
        noise = torch.randn(x.shape, generator=generator, dtype=x.dtype, device=x.device)
        x_new = x - 0.5 * h**2 * gradient + h * noise
        moved = _finite(x_new)
        x_new = _select(moved, x_new, x)
        _, gradient_new = energy_and_gradient(self.target.energy, x_new)
        backward = (x - x_new + 0.5 * h**2 * gradient_new) / h
        log_ratio = 0.5 * _squared_norm(noise) - 0.5 * _squared_norm(backward)
        return x_new, torch.where(moved & _finite(gradient_new), log_ratio, -math.inf)


class HMC:
    """Hamiltonian Monte Carlo on a differentiable target's reduced energy u (kT): each :meth:`step` draws fresh
    momenta p ~ N(0, mass) per chain, integrates ``n_leapfrog`` leapfrog steps of size ``step`` (time in the units
    of ``step``, ``mass`` broadcasts against x) and accepts each chain's end point by the Metropolis test on
    H = u(x) + sum p^2 / (2 mass), which makes it exact. Rejected chains keep their positions and energies; every
    chain keeps its velocities (if any). A trajectory that meets a non-finite position, energy or gradient (its
    start included) stops there and is rejected; the target never sees a non-finite position. ``accepted``,
    ``offered`` and ``last_accepted`` ``[C]`` count the decisions as in :class:`MetropolisHastings`;
    ``n_evaluations`` counts energy and gradient evaluations, one per chain and configuration (``n_leapfrog + 1``
    per chain and step)."""

    def __init__(self, target: Target, step: float, n_leapfrog: int, mass: torch.Tensor | float = 1.0) -> None:
        self.target, self.step_size, self.n_leapfrog, self.mass = target, step, n_leapfrog, mass
        self.accepted = self.offered = self.n_evaluations = 0
        self.last_accepted: torch.Tensor | None = None

    @property
    def acceptance(self) -> float:
        """Fraction of the trajectories accepted so far (NaN before the first)."""
        return self.accepted / self.offered if self.offered else math.nan

    def _evaluate(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        self.n_evaluations += len(x)
        return energy_and_gradient(self.target.energy, x)

    @torch.no_grad()
    def step(self, state: ChainState, generator: torch.Generator | None = None) -> ChainState:
        start = state.x.detach()
        mass = torch.as_tensor(self.mass, dtype=start.dtype, device=start.device)
        p = torch.sqrt(mass) * torch.randn(start.shape, generator=generator, dtype=start.dtype, device=start.device)
        x, half = start, 0.5 * self.step_size
        u, gradient = self._evaluate(x)
        h_start = u + 0.5 * _squared_norm(p / torch.sqrt(mass))
        alive = torch.isfinite(u) & _finite(gradient)
        for _ in range(self.n_leapfrog):
            p = p - half * gradient
            x = x + self.step_size * p / mass
            alive = alive & _finite(x)
            x = _select(alive, x, start)  # a finite stand-in, so that the target never sees NaN
            u, gradient = self._evaluate(x)
            alive = alive & torch.isfinite(u) & _finite(gradient)
            p = p - half * gradient
        h_end = u + 0.5 * _squared_norm(p / torch.sqrt(mass))
        accept = metropolis_accept(torch.where(alive, h_start - h_end, -math.inf), generator)
        self.last_accepted = accept
        self.accepted += int(accept.sum())
        self.offered += accept.numel()
        return ChainState(_select(accept, x, start), torch.where(accept, u, state.u), state.v)
