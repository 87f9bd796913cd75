"""A Lennard-Jones solute in a periodic Lennard-Jones fluid: the first test system of neural TI (reduced units,
solvent sigma = epsilon = 1), with the standard soft-core path for MBAR and a learned interpolating potential."""

from __future__ import annotations

__all__ = ["LennardJonesSolute", "LennardJonesInterpolant"]

import dataclasses
import math
from typing import ClassVar

import numpy as np
import torch

from molsamp.kernels import ChainState, Langevin
from molsamp.targets import EnergyFunction


@dataclasses.dataclass(frozen=True)
class LennardJonesSolute:
    """Particle 0 is the solute; ``n_solvent`` solvent particles fill a cubic periodic box at ``density``.

    Pairs interact by the soft-core Lennard-Jones form ``scale * 4 eps [s^2 - s]``, ``s = (sigma^2 / (a sigma^2 +
    r^2))^3``, truncated and shifted to zero at ``cutoff``; solute-solvent sigma and epsilon follow Lorentz-Berthelot.
    The coupled state has a = 0 and scale = 1 everywhere; the decoupled one has no solute-solvent interaction.
    Energies are reduced (units of kT = ``temperature`` epsilon). A :class:`~molsamp.targets.Target` (its coupled
    state) like the analytic targets.
    """

    dim: ClassVar[int] = 3

    n_solvent: int = 128
    density: float = 0.7
    temperature: float = 1.0
    solute_sigma: float = 2.0
    solute_epsilon: float = 2.0
    cutoff: float = 2.5
    softcore_alpha: float = 0.5

    def __post_init__(self) -> None:
        if self.cutoff > self.box / 2:
            raise ValueError(f"cutoff {self.cutoff} exceeds half the box ({self.box / 2:.3f}): add solvent")

    @property
    def box(self) -> float:
        return (self.n_solvent / self.density) ** (1 / 3)

    @property
    def n_atoms(self) -> int:
        return self.n_solvent + 1

    @property
    def event_shape(self) -> tuple[int, int]:
        return (self.n_atoms, self.dim)

    @property
    def kT(self) -> float:
        """kT in units of the solvent epsilon (the reduced temperature)."""
        return self.temperature

    @property
    def pair_sigma_epsilon(self) -> tuple[float, float]:
        """Solute-solvent sigma and epsilon."""
        return 0.5 * (1 + self.solute_sigma), math.sqrt(self.solute_epsilon)

    def distances(self, x: torch.Tensor) -> torch.Tensor:
        """Minimum-image distances ``[B, N, N]``."""
        d = x[:, :, None, :] - x[:, None, :, :]
        d = d - self.box * torch.round(d / self.box)
        diagonal = torch.eye(x.shape[1], dtype=x.dtype, device=x.device)  # 1 on the diagonal, masked later
        return torch.sqrt((d**2).sum(-1) + diagonal)

    def _pair_energy(self, r: torch.Tensor, sigma: float, epsilon: float, softness: torch.Tensor,
                     scale: torch.Tensor) -> torch.Tensor:
        def lj(r2):
            s = (sigma**2 / (softness * sigma**2 + r2)) ** 3
            return 4 * epsilon * (s**2 - s)

        inside = r < self.cutoff
        return torch.where(inside, scale * (lj(r**2) - lj(torch.full_like(r, self.cutoff**2))), torch.zeros_like(r))

    def energy(self, x: torch.Tensor, solvent_softness: torch.Tensor | float = 0.0,
               solvent_scale: torch.Tensor | float = 1.0, solute_softness: torch.Tensor | float = 0.0,
               solute_scale: torch.Tensor | float = 1.0) -> torch.Tensor:
        """Reduced energy ``[B]`` of positions ``[B, N, 3]``; the alchemical parameters are scalars or ``[B]``."""
        def per_batch(value):
            return torch.as_tensor(value, dtype=x.dtype, device=x.device).reshape(-1, 1)

        r = self.distances(x)
        n = x.shape[1]
        upper = torch.triu(torch.ones(n, n, dtype=torch.bool, device=x.device), diagonal=1)
        solvent_pairs = r[:, 1:, 1:][:, upper[1:, 1:]]
        solute_pairs = r[:, 0, 1:]
        sigma, epsilon = self.pair_sigma_epsilon
        u = (self._pair_energy(solvent_pairs, 1.0, 1.0, per_batch(solvent_softness), per_batch(solvent_scale)).sum(1)
             + self._pair_energy(solute_pairs, sigma, epsilon, per_batch(solute_softness),
                                 per_batch(solute_scale)).sum(1))
        return u / self.temperature

    def coupled_energy(self, x: torch.Tensor, coupling: torch.Tensor | float) -> torch.Tensor:
        """The standard alchemical path: solute-solvent scale ``coupling`` and soft core ``alpha (1 - coupling)``
        (0: decoupled, 1: coupled)."""
        coupling = torch.as_tensor(coupling, dtype=x.dtype, device=x.device)
        return self.energy(x, solute_softness=self.softcore_alpha * (1 - coupling), solute_scale=coupling)

    def lattice(self, batch: int, device: torch.device | str = "cpu") -> torch.Tensor:
        """``[batch, N, 3]`` starting positions: the solute at the origin, solvent on the sites of a cubic lattice
        farthest from it."""
        side = math.ceil(self.n_atoms ** (1 / 3))
        grid = (np.stack(np.meshgrid(*[np.arange(side)] * 3, indexing="ij"), -1).reshape(-1, 3) + 0.5) / side
        grid = (grid - 0.5) * self.box
        far = grid[np.argsort(-np.linalg.norm(grid, axis=1), kind="stable")[: self.n_solvent]]
        x = np.concatenate([np.zeros((1, 3)), far])
        return torch.as_tensor(x, dtype=torch.float64, device=device).expand(batch, -1, -1).clone()

    def sample(self, coupling: float, n_chains: int, n_samples: int, steps_between: int = 50,
               equilibration_steps: int = 2000, timestep: float = 0.005, friction: float = 1.0,
               generator: torch.Generator | None = None, device: torch.device | str = "cpu") -> torch.Tensor:
        """``[n_chains * n_samples, N, 3]`` samples at ``coupling`` from parallel BAOAB Langevin chains (unit
        masses), wrapped into the box, on ``device`` (``generator``, if given, must be on it too)."""
        target = EnergyFunction(lambda x: self.coupled_energy(x, coupling), self.temperature)
        equilibration = Langevin(target, equilibration_steps, timestep, friction)
        dynamics = Langevin(target, steps_between, timestep, friction)
        state = equilibration.step(ChainState.start(self.lattice(n_chains, device), target), generator)
        samples = []
        for _ in range(n_samples):
            state = dynamics.step(state, generator)
            samples.append(state.x.remainder(self.box))
        return torch.stack(samples, 1).reshape(-1, self.n_atoms, 3)

    def align(self, x0: torch.Tensor, grad0: torch.Tensor, x1: torch.Tensor, grad1: torch.Tensor
              ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """Pair end states for interpolation: both translated so the solute sits at the origin, and the solvent of
        ``x1`` (with its gradients) relabelled to the nearest solvent of ``x0`` (Hungarian assignment on
        minimum-image squared distances). The energies are unchanged: translation and relabelling are symmetries."""
        from scipy.optimize import linear_sum_assignment

        x0, x1 = self._centre(x0), self._centre(x1)
        d = x0[:, 1:, None, :] - x1[:, None, 1:, :]
        cost = ((d - self.box * torch.round(d / self.box)) ** 2).sum(-1).cpu().numpy()
        order = torch.as_tensor(np.stack([linear_sum_assignment(c)[1] for c in cost]) + 1, device=x1.device)
        index = torch.cat([torch.zeros(len(x1), 1, dtype=torch.long, device=x1.device), order], 1)
        index = index[..., None].expand(-1, -1, 3)
        return x0, grad0, torch.gather(x1, 1, index), torch.gather(grad1, 1, index)

    def _centre(self, x: torch.Tensor) -> torch.Tensor:
        shifted = x - x[:, :1]
        return shifted - self.box * torch.round(shifted / self.box)

    def interpolate(self, x0: torch.Tensor, x1: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """x0 moved a fraction ``t`` (``[B]``) of the minimum-image way to x1 (straight lines on the torus)."""
        d = x1 - x0
        d = d - self.box * torch.round(d / self.box)
        return x0 + t.reshape(-1, 1, 1) * d


class LennardJonesInterpolant(torch.nn.Module):
    """U_theta(x, t) = U(x; a(t)) + t (1 - t) U_NN(x, t) for a :class:`LennardJonesSolute`.

    U(x; a) is the physical soft-core energy with learned schedules (after Mate et al.): solvent softness and
    scale reduction ``exp(m) t (1 - t)`` vanish at both ends; solute softness and scale reduction
    ``exp(t m) (1 - t)`` run from 1 (decoupled) to 0 (coupled); ``soften_solvent=False`` keeps the solvent's own
    interactions physical at every t (fewer terms in dU/dt, so a less noisy TI integrand). U_NN sums a learned function of each pair's
    distance, the two particles' distances to the solute and t, smoothly cut off. So U_theta is the decoupled
    energy at t = 0 and the coupled one at t = 1, exactly.
    """

    def __init__(self, system: LennardJonesSolute, hidden: int = 32, n_basis: int = 12,
                 soften_solvent: bool = True) -> None:
        super().__init__()
        self.system, self.soften_solvent = system, soften_solvent
        self.schedule = torch.nn.Sequential(torch.nn.Linear(1, hidden), torch.nn.SiLU(), torch.nn.Linear(hidden, 4))
        self.centres = torch.nn.Parameter(torch.linspace(0.8, system.cutoff, n_basis), requires_grad=False)
        self.pair = torch.nn.Sequential(torch.nn.Linear(2 * n_basis + 2, hidden), torch.nn.SiLU(),
                                        torch.nn.Linear(hidden, hidden), torch.nn.SiLU(), torch.nn.Linear(hidden, 1))
        torch.nn.init.zeros_(self.pair[-1].weight)
        torch.nn.init.zeros_(self.pair[-1].bias)
        torch.nn.init.zeros_(self.schedule[-1].weight)
        torch.nn.init.zeros_(self.schedule[-1].bias)
        self.double()

    def alchemical_parameters(self, t: torch.Tensor) -> dict[str, torch.Tensor]:
        m = self.schedule(t[:, None])
        ends = t * (1 - t) * float(self.soften_solvent)
        return {"solvent_softness": torch.exp(m[:, 0]) * ends, "solvent_scale": 1 - torch.exp(m[:, 1]) * ends,
                "solute_softness": torch.exp(t * m[:, 2]) * (1 - t), "solute_scale": 1 - torch.exp(t * m[:, 3]) * (1 - t)}

    def _basis(self, r: torch.Tensor) -> torch.Tensor:
        width = (self.centres[1] - self.centres[0]).item()
        return torch.exp(-(((r[..., None] - self.centres) / width) ** 2))

    def forward(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        system = self.system
        base = system.energy(x, **self.alchemical_parameters(t))
        r = system.distances(x)
        n = x.shape[1]
        i, j = torch.triu_indices(n, n, offset=1, device=x.device)
        batch, pair = torch.nonzero(r[:, i, j] < system.cutoff, as_tuple=True)  # only pairs inside the cutoff
        i, j = i[pair], j[pair]
        rij = r[batch, i, j]
        near = self._basis(r[:, 0])  # [B, N, basis]: distance of every particle to the solute
        features = torch.cat([self._basis(rij), near[batch, i] + near[batch, j], (i == 0).to(x.dtype)[:, None],
                              t[batch, None]], -1)
        envelope = 0.5 * (torch.cos(math.pi * rij / system.cutoff) + 1)
        per_pair = self.pair(features)[:, 0] * envelope
        correction = torch.zeros(len(x), dtype=x.dtype, device=x.device).index_add(0, batch, per_pair)
        return base + t * (1 - t) * correction
