"""Energy targets: reduced energies u(x) = U(x)/kT of batches of positions, differentiable with autograd."""

from __future__ import annotations

__all__ = ["Target", "EnergyFunction", "OpenMMTarget", "DoubleWell", "LennardJones", "check_positions"]

import dataclasses
from collections.abc import Callable
from typing import TYPE_CHECKING, Protocol, runtime_checkable

import numpy as np
import torch

from molsamp.errors import InputError
from molsamp.openmm_pool import MOLAR_GAS_CONSTANT, OpenMMPool

if TYPE_CHECKING:
    import openmm


@runtime_checkable
class Target(Protocol):
    """An unnormalised Boltzmann density exp(-u(x)) over configurations of shape ``event_shape``.

    ``energy(x)`` maps ``x: Tensor[B, *event_shape]`` to reduced energies ``Tensor[B]`` (units of kT): positions
    ``[B, N, dim]`` (nm, or reduced lengths for analytic targets; differentiable with respect to x) for molecular and
    analytic targets, torsion angles ``[B, T]`` (rad) for
    :class:`~molsamp.conformers.target.TorsionalTarget`. ``kT`` (kJ/mol, or 1-like in reduced units) converts u to
    an energy.
    """

    event_shape: tuple[int, ...]
    kT: float

    def energy(self, x: torch.Tensor) -> torch.Tensor: ...


@dataclasses.dataclass(frozen=True)
class EnergyFunction:
    """A Target made from a reduced-energy function (kT units, differentiable): for learned, intermediate and test
    energies that have no system behind them. ``kT`` sets the scale of the forces -kT grad u (1 in reduced units)."""

    function: Callable[[torch.Tensor], torch.Tensor]
    kT: float = 1.0
    event_shape: tuple[int, ...] = ()

    def energy(self, x: torch.Tensor) -> torch.Tensor:
        return self.function(x)

    __call__ = energy


def check_positions(x: torch.Tensor, n_atoms: int, dim: int = 3) -> None:
    """Raise :class:`InputError` unless ``x`` is a finite ``[B, n_atoms, dim]`` tensor."""
    if x.ndim != 3 or x.shape[1:] != (n_atoms, dim):
        raise InputError(f"positions must have shape [batch, {n_atoms}, {dim}], got {list(x.shape)}")
    if not bool(torch.isfinite(x).all()):
        bad = (~torch.isfinite(x)).flatten(1).any(1).nonzero().flatten().tolist()
        raise InputError(f"positions contain NaN or infinite values (batch indices {bad[:10]})")


class _OpenMMEnergy(torch.autograd.Function):
    """Reduced energy from OpenMM; backward multiplies the stored -F/kT by the incoming gradient."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, target: OpenMMTarget) -> torch.Tensor:
        energies, gradients = target.evaluate(x.detach().cpu().numpy())
        ctx.save_for_backward(torch.as_tensor(gradients, dtype=x.dtype, device=x.device))
        return torch.as_tensor(energies, dtype=x.dtype, device=x.device)

    @staticmethod
    def backward(ctx, grad_output: torch.Tensor):
        (gradients,) = ctx.saved_tensors
        return grad_output[:, None, None] * gradients, None


class OpenMMTarget:
    """Reduced potential energy of an OpenMM ``System``, evaluated in a pool of worker processes.

    Each worker owns one OpenMM Context (one CPU thread each on the CPU platform), and a batch is split into
    contiguous chunks, one per worker. Configurations whose energy or forces overflow get ``u = +inf`` and zero
    gradient; they are counted in ``n_overflow``. Workers start on first use and stop on :meth:`close`, on exit
    from a ``with`` block, or when the target is garbage-collected.

    Args:
        system: the OpenMM System (positions in nm, energies in kJ/mol).
        temperature: K.
        n_workers: worker processes; default one per core on the CPU and Reference platforms and 0 (evaluate in
            this process) on GPU platforms.
        platform: OpenMM platform name; default CUDA when present, else Reference for a small molecule and CPU
            otherwise (:func:`~molsamp.openmm_pool.select_platform`).
    """

    dim = 3

    def __init__(
        self,
        system: openmm.System,
        temperature: float,
        n_workers: int | None = None,
        platform: str | None = None,
    ) -> None:
        self.n_atoms = system.getNumParticles()
        self.event_shape = (self.n_atoms, 3)
        self.temperature = float(temperature)
        self.kT = MOLAR_GAS_CONSTANT * self.temperature  # kJ/mol
        self.n_overflow = 0
        self._pool = OpenMMPool(system, n_workers=n_workers, platform=platform)

    @property
    def platform(self) -> str:
        """Name of the OpenMM platform the workers use."""
        return self._pool.platform

    @property
    def n_workers(self) -> int:
        return self._pool.n_workers

    def energy(self, x: torch.Tensor) -> torch.Tensor:
        """Reduced energies ``[B]`` (kT) of positions ``x: [B, N, 3]`` (nm); backward gives -F/kT. Forces are only
        computed when a gradient can be asked for (``x`` requires grad and grad mode is on)."""
        x = torch.as_tensor(x)
        check_positions(x, self.n_atoms)
        if torch.is_grad_enabled() and x.requires_grad:
            return _OpenMMEnergy.apply(x, self)
        energies = self._reduced(self._pool.energies(x.detach().cpu().numpy()))
        return torch.as_tensor(energies, dtype=x.dtype, device=x.device)

    __call__ = energy

    def evaluate(self, positions: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Reduced energies ``[B]`` and their gradients ``[B, N, 3]`` (kT/nm) as numpy arrays, no autograd."""
        energies, forces = self._pool.evaluate(np.asarray(positions, dtype=np.float64))
        overflow = ~np.isfinite(forces).all(axis=(1, 2))
        energies = self._reduced(np.where(overflow, np.nan, energies))
        gradients = np.where(np.isinf(energies)[:, None, None], 0.0, -forces / self.kT)
        return energies, gradients

    def _reduced(self, energies: np.ndarray) -> np.ndarray:
        """Energies (kJ/mol) in kT, with +inf (counted in ``n_overflow``) where they are not finite."""
        overflow = ~np.isfinite(energies)
        self.n_overflow += int(overflow.sum())
        return np.where(overflow, np.inf, energies / self.kT)

    def close(self) -> None:
        """Stop the worker processes (idempotent)."""
        self._pool.close()

    def __enter__(self) -> OpenMMTarget:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _pairwise_distances(x: torch.Tensor) -> torch.Tensor:
    """Distances ``[B, N(N-1)/2]`` between all pairs i < j of ``x: [B, N, dim]``."""
    i, j = torch.triu_indices(x.shape[1], x.shape[1], offset=1, device=x.device)
    return (x[:, i] - x[:, j]).norm(dim=-1)


class DoubleWell:
    """Multi-particle double-well pair potential (DW4 of Koehler, Klein and Noe 2020), reduced units.

    ``U = sum_{i<j} a (d_ij - d0) + b (d_ij - d0)^2 + c (d_ij - d0)^4`` and ``u = U / temperature``.
    """

    def __init__(self, n_particles: int = 4, dim: int = 2, a: float = 0.0, b: float = -4.0, c: float = 0.9,
                 d0: float = 4.0, temperature: float = 1.0) -> None:
        self.n_atoms, self.dim, self.event_shape = n_particles, dim, (n_particles, dim)
        self.a, self.b, self.c, self.d0 = a, b, c, d0
        self.kT = temperature

    def energy(self, x: torch.Tensor) -> torch.Tensor:
        check_positions(x, self.n_atoms, self.dim)
        s = _pairwise_distances(x) - self.d0
        return (self.a * s + self.b * s**2 + self.c * s**4).sum(-1) / self.kT

    __call__ = energy


class LennardJones:
    """Lennard-Jones cluster with a harmonic oscillator on the distances to the centre of mass, reduced units.

    ``U = sum_{i<j} eps [(rm/d_ij)^12 - 2 (rm/d_ij)^6] + k/2 sum_i |x_i - mean(x)|^2`` and ``u = U / temperature``,
    as LJ13 and LJ55 in Koehler et al. (2020) and Klein et al. (2023).
    """

    def __init__(self, n_particles: int = 13, dim: int = 3, epsilon: float = 1.0, rm: float = 1.0,
                 oscillator_scale: float = 1.0, temperature: float = 1.0) -> None:
        self.n_atoms, self.dim, self.event_shape = n_particles, dim, (n_particles, dim)
        self.epsilon, self.rm, self.oscillator_scale = epsilon, rm, oscillator_scale
        self.kT = temperature

    def energy(self, x: torch.Tensor) -> torch.Tensor:
        check_positions(x, self.n_atoms, self.dim)
        r6 = (self.rm / _pairwise_distances(x)) ** 6
        lennard_jones = self.epsilon * (r6**2 - 2 * r6).sum(-1)
        centred = x - x.mean(dim=1, keepdim=True)
        oscillator = 0.5 * self.oscillator_scale * centred.pow(2).sum(dim=(1, 2))
        return (lennard_jones + oscillator) / self.kT

    __call__ = energy


ANALYTIC_TARGETS = {"double-well": DoubleWell, "lennard-jones": LennardJones}
