"""An equivariant continuous normalising flow over identical particles: a :class:`~molsamp.distributions.Distribution`
with exact log-densities, integrated by a well-kept adaptive ODE solver (torchdiffeq).

Configurations ``x: [B, N, D]`` live in the centred subspace (zero mean over particles, dimension (N - 1) D); the prior
is the isotropic Gaussian on it, and log-densities are with respect to the Lebesgue measure of that subspace, as the
translation-invariant Boltzmann densities of particle systems are. The flow pushes a prior draw z along
dx/dt = v(t, x) from t = 0 to 1 and log q(x(1)) = log p(z) - int_0^1 div v dt, with the divergence computed exactly
(one backward pass per coordinate) or, for large systems, estimated by Hutchinson's trace estimator (then the
log-density is noisy and importance weights are biased: labelled so).

Solver error: ``sample_and_log_prob`` returns the positions and the log-density of one and the same numerical
trajectory, so the log-density is exact for the numerical map up to the difference between the integrated divergence
and the numerical map's Jacobian, which shrinks with ``rtol``/``atol``; ``log_prob`` of given positions solves the
same ODE backwards, and agrees with the forward value to about the solver tolerance (tested).
"""

from __future__ import annotations

__all__ = ["EquivariantFlow"]

import math

import torch
from torch import nn

from molsamp.flows.egnn import EGNNField


def centred(x: torch.Tensor) -> torch.Tensor:
    """``x: [B, N, D]`` with the mean over particles removed."""
    return x - x.mean(1, keepdim=True)


class EquivariantFlow(nn.Module):
    """q(x) over centred configurations ``[B, N, D]`` of ``n_particles`` identical particles in ``dim`` dimensions.

    Args:
        n_particles, dim: the event shape.
        hidden, layers: size of the :class:`~molsamp.flows.egnn.EGNNField`.
        prior_scale: standard deviation of the centred Gaussian prior (the system's length unit).
        rtol, atol: tolerances of the adaptive Dormand-Prince solver.
        hutchinson: estimate the divergence stochastically (one Rademacher probe per solve) instead of exactly.
        atom_types, length_unit: for molecules, see :class:`~molsamp.flows.egnn.EGNNField`.
    """

    def __init__(self, n_particles: int, dim: int, hidden: int = 32, layers: int = 3, prior_scale: float = 1.0,
                 rtol: float = 1e-5, atol: float = 1e-5, hutchinson: bool = False,
                 atom_types: list[int] | None = None, length_unit: float = 1.0) -> None:
        super().__init__()
        if atom_types is not None and len(atom_types) != n_particles:
            raise ValueError(f"{len(atom_types)} atom types for {n_particles} particles")
        self.config = {"n_particles": n_particles, "dim": dim, "hidden": hidden, "layers": layers,
                       "prior_scale": prior_scale, "rtol": rtol, "atol": atol, "hutchinson": hutchinson,
                       "atom_types": atom_types, "length_unit": length_unit}
        self.field = EGNNField(hidden, layers, atom_types, length_unit)
        self.event_shape = torch.Size((n_particles, dim))
        self.n_evaluations = 0  # vector-field evaluations by the solver so far

    @property
    def degrees_of_freedom(self) -> int:
        n, d = self.event_shape
        return (n - 1) * d

    def prior_log_prob(self, z: torch.Tensor) -> torch.Tensor:
        """Log-density ``[B]`` of the centred Gaussian prior at centred ``z: [B, N, D]``."""
        scale = self.config["prior_scale"]
        return -0.5 * (z**2).sum((1, 2)) / scale**2 - 0.5 * self.degrees_of_freedom * math.log(2 * math.pi * scale**2)

    def sample_prior(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """``[n, N, D]`` centred Gaussian draws."""
        parameter = next(self.parameters())
        noise = torch.randn((n, *self.event_shape), generator=generator, dtype=parameter.dtype,
                            device=parameter.device)
        return centred(self.config["prior_scale"] * noise)

    def _integrate(self, x: torch.Tensor, start: float, end: float, generator: torch.Generator | None,
                   steps: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Positions at ``end`` and int_start^end div v dt along the trajectory from ``x`` at ``start``: by the
        adaptive solver at the flow's tolerances, or with ``steps`` by ``steps`` fixed Runge-Kutta-4 steps."""
        from torchdiffeq import odeint

        create_graph = torch.is_grad_enabled()
        probe = None
        if self.config["hutchinson"]:
            probe = torch.randint(0, 2, x.shape, generator=generator, dtype=x.dtype, device=x.device) * 2 - 1

        def dynamics(t: torch.Tensor, state: tuple[torch.Tensor, torch.Tensor]):
            y = state[0]
            with torch.enable_grad():
                if not y.requires_grad:
                    y = y.requires_grad_()
                v = self.field(t, y)
                divergence = _divergence(v, y, probe, create_graph)
            self.n_evaluations += 1
            return (v if create_graph else v.detach()), divergence

        times = torch.tensor([start, end], dtype=x.dtype, device=x.device)
        zeros = torch.zeros(len(x), dtype=x.dtype, device=x.device)
        if steps is None:
            solver = {"method": "dopri5", "rtol": self.config["rtol"], "atol": self.config["atol"]}
        else:
            solver = {"method": "rk4", "options": {"step_size": abs(end - start) / steps}}
        xs, integrals = odeint(dynamics, (x, zeros), times, **solver)
        return xs[-1], integrals[-1]

    def sample_and_log_prob(self, n: int, generator: torch.Generator | None = None, context: None = None
                            ) -> tuple[torch.Tensor, torch.Tensor]:
        """``n`` samples ``[n, N, D]`` and their log-densities ``[n]`` from one forward solve."""
        if context is not None:
            raise ValueError("an EquivariantFlow is unconditional: context must be None")
        z = self.sample_prior(n, generator)
        x, integral = self._integrate(z, 0.0, 1.0, generator)
        return centred(x), self.prior_log_prob(z) - integral

    def sample(self, n: int, generator: torch.Generator | None = None, context: None = None) -> torch.Tensor:
        return self.sample_and_log_prob(n, generator, context)[0]

    def log_prob(self, x: torch.Tensor, context: None = None, generator: torch.Generator | None = None,
                 steps: int | None = None) -> torch.Tensor:
        """Log-density ``[B]`` at ``x: [B, N, D]`` (centred first) by solving the flow backwards.

        The adaptive solver's step sizes depend on the whole batch, so a sample's value changes with its batch at
        the level of the tolerances. With ``steps``, ``steps`` fixed RK4 steps instead: a deterministic,
        differentiable function of each configuration alone (not exactly normalised), as an SMC path needs."""
        if context is not None:
            raise ValueError("an EquivariantFlow is unconditional: context must be None")
        z, integral = self._integrate(centred(x), 1.0, 0.0, generator, steps)
        return self.prior_log_prob(centred(z)) + integral


def _divergence(v: torch.Tensor, x: torch.Tensor, probe: torch.Tensor | None, create_graph: bool) -> torch.Tensor:
    """div_x v ``[B]``: exact (one backward pass per coordinate) or, with a ``probe``, Hutchinson's e^T (dv/dx) e."""
    if probe is not None:
        (product,) = torch.autograd.grad(v, x, probe, create_graph=create_graph)
        return (product * probe).sum((1, 2))
    flat = v.flatten(1)
    total = torch.zeros(len(v), dtype=v.dtype, device=v.device)
    for i in range(flat.shape[1]):
        (row,) = torch.autograd.grad(flat[:, i].sum(), x, create_graph=create_graph, retain_graph=True)
        total = total + row.flatten(1)[:, i]
    return total
