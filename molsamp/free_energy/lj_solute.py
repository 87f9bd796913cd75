"""A Lennard-Jones solute in a periodic Lennard-Jones fluid, the first test system of neural TI (Mate, Fleuret and
Bereau 2024; reduced units, solvent sigma = epsilon = 1, kT = ``temperature``), with the standard soft-core path for
MBAR and TI, exact (HMC) sampling of any point on it, and the learned interpolating potential U_theta(x, t)."""

from __future__ import annotations

__all__ = ["LennardJonesSolute", "LennardJonesSamples", "LennardJonesInterpolant"]

import dataclasses
import math
from typing import ClassVar, NamedTuple

import numpy as np
import torch

from molsamp.kernels import HMC, ChainState
from molsamp.targets import EnergyFunction


class LennardJonesSamples(NamedTuple):
    """``x``: samples ``[n, N, 3]`` (float64, wrapped into the box); ``evaluations``: energy and gradient
    evaluations spent on them (equilibration included); ``acceptance``: fraction of HMC trajectories accepted."""

    x: torch.Tensor
    evaluations: int
    acceptance: float


@dataclasses.dataclass(frozen=True)
class LennardJonesSolute:
    """Particle 0 is the solute; ``n_solvent`` solvent particles fill a cubic periodic box at ``density``.

    Pairs interact by the soft-core Lennard-Jones form ``scale * 4 eps [s^2 - s]``, ``s = (sigma^2 / (a sigma^2 +
    r^2))^3``; solute-solvent sigma and epsilon follow Lorentz-Berthelot. With ``cutoff=None`` (the default, as the
    authors) every pair interacts at its minimum-image distance, unshifted; with a cutoff, pairs are truncated and
    shifted to zero there. The coupled state has a = 0 and scale = 1 everywhere; the decoupled one has no
    solute-solvent interaction. Energies are reduced (kT). A :class:`~molsamp.targets.Target` (its coupled state).
    The defaults are the authors' system: 512 solvent particles, density 0.7, solute sigma and epsilon twice the
    solvent's, kT = epsilon.
    """

    dim: ClassVar[int] = 3

    n_solvent: int = 512
    density: float = 0.7
    temperature: float = 1.0
    solute_sigma: float = 2.0
    solute_epsilon: float = 2.0
    cutoff: float | None = None
    softcore_alpha: float = 1.0

    def __post_init__(self) -> None:
        if self.cutoff is not None and self.cutoff > self.box / 2:
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

    def squared_distances(self, x: torch.Tensor) -> torch.Tensor:
        """Minimum-image squared distances ``[B, N, N]`` (1 on the diagonal, which no energy uses)."""
        d = x[:, :, None, :] - x[:, None, :, :]
        d = d - self.box * torch.round(d / self.box)
        return (d**2).sum(-1) + torch.eye(x.shape[1], dtype=x.dtype, device=x.device)

    def _pair_energy(self, r2: torch.Tensor, sigma: float, epsilon: float, softness: torch.Tensor,
                     scale: torch.Tensor) -> torch.Tensor:
        def lj(r2):
            s = (sigma**2 / (softness * sigma**2 + r2)) ** 3
            return 4 * epsilon * (s**2 - s)

        if self.cutoff is None:
            return scale * lj(r2)
        shifted = lj(r2) - lj(torch.full_like(r2, self.cutoff**2))
        return torch.where(r2 < self.cutoff**2, scale * shifted, torch.zeros_like(r2))

    def energy(self, x: torch.Tensor, solvent_softness: torch.Tensor | float = 0.0,
               solvent_scale: torch.Tensor | float = 1.0, solute_softness: torch.Tensor | float = 0.0,
               solute_scale: torch.Tensor | float = 1.0) -> torch.Tensor:
        """Reduced energy ``[B]`` of positions ``[B, N, 3]``; the alchemical parameters are scalars or ``[B]``."""
        def per_batch(value):
            return torch.as_tensor(value, dtype=x.dtype, device=x.device).reshape(-1, 1)

        r2 = self.squared_distances(x)
        n = x.shape[1]
        upper = torch.triu(torch.ones(n, n, dtype=torch.bool, device=x.device), diagonal=1)
        sigma, epsilon = self.pair_sigma_epsilon
        u = (self._pair_energy(r2[:, 1:, 1:][:, upper[1:, 1:]], 1.0, 1.0, per_batch(solvent_softness),
                               per_batch(solvent_scale)).sum(1)
             + self._pair_energy(r2[:, 0, 1:], sigma, epsilon, per_batch(solute_softness),
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

    def sample(self, coupling: float, n_chains: int, n_samples: int, steps_between: int = 10,
               equilibration_steps: int = 200, step: float = 0.01, n_leapfrog: int = 10,
               generator: torch.Generator | None = None, device: torch.device | str = "cpu"
               ) -> LennardJonesSamples:
        """``n_chains * n_samples`` exact samples at ``coupling`` from parallel HMC chains (unit masses;
        ``steps_between`` trajectories of ``n_leapfrog`` steps of size ``step`` between samples) started on
        :meth:`lattice`, on ``device`` (``generator``, if given, must be on it too)."""
        target = EnergyFunction(lambda x: self.coupled_energy(x, coupling), self.temperature)
        hmc = HMC(target, step, n_leapfrog)
        state = ChainState.start(self.lattice(n_chains, device), target)
        for _ in range(equilibration_steps):
            state = hmc.step(state, generator)
        samples = []
        for _ in range(n_samples):
            for _ in range(steps_between):
                state = hmc.step(state, generator)
            samples.append(state.x.remainder(self.box))
        return LennardJonesSamples(torch.stack(samples, 1).reshape(-1, self.n_atoms, 3), hmc.n_evaluations,
                                   hmc.acceptance)

    def align(self, x0: torch.Tensor, grad0: torch.Tensor, x1: torch.Tensor, grad1: torch.Tensor
              ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """Pair end states for interpolation: both translated so the solute sits at the origin, and the solvent of
        ``x1`` (with its gradients) relabelled to the nearest solvent of ``x0`` (Hungarian assignment on
        minimum-image squared distances). The energies are unchanged: translation and relabelling are symmetries."""
        from molsamp.free_energy.neural_ti import centred, periodic_assignment

        x0, x1 = centred(x0, self.box), centred(x1, self.box)
        order = periodic_assignment(x0[:, 1:], x1[:, 1:], self.box) + 1
        index = torch.cat([torch.zeros(len(x1), 1, dtype=torch.long, device=x1.device), order], 1)
        index = index[..., None].expand(-1, -1, 3)
        return x0, grad0, torch.gather(x1, 1, index), torch.gather(grad1, 1, index)

    def interpolate(self, x0: torch.Tensor, x1: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """x0 moved a fraction ``t`` (``[B]``) of the minimum-image way to x1 (straight lines on the torus)."""
        d = x1 - x0
        d = d - self.box * torch.round(d / self.box)
        return x0 + t.reshape(-1, 1, 1) * d


class LennardJonesInterpolant(torch.nn.Module):
    """U_theta(x, t) = U(x; a(t)) + t (1 - t) U_NN(x, t) for a :class:`LennardJonesSolute`, after Mate et al.

    U(x; a) is the physical soft-core energy with four learned schedules, outputs of an MLP of t (hidden layers of
    ``schedule_hidden``): solvent-solvent softness ``exp(m0) t (1 - t)`` and scale ``1 - exp(m2) t (1 - t)``, which
    soften the solvent at intermediate t and vanish at both ends; solute-solvent softness ``exp(t m1) (1 - t)`` and
    scale ``1 - exp(t m3) (1 - t)``, which run from decoupled at t = 0 to coupled at t = 1. ``network(x, t) -> [B]``
    is U_NN (e.g. :class:`~molsamp.free_energy.solvent_gnn.SolventMessagePassing`; None: none). So U_theta is the
    decoupled energy at t = 0 and the coupled one at t = 1 exactly, for any parameters. Its dtype is that of its
    parameters (float32 unless converted).
    """

    def __init__(self, system: LennardJonesSolute, network: torch.nn.Module | None = None,
                 schedule_hidden: int = 256) -> None:
        super().__init__()
        self.system, self.network = system, network
        self.schedule = torch.nn.Sequential(torch.nn.Linear(1, schedule_hidden), torch.nn.SiLU(),
                                            torch.nn.Linear(schedule_hidden, schedule_hidden), torch.nn.SiLU(),
                                            torch.nn.Linear(schedule_hidden, 4))

    def alchemical_parameters(self, t: torch.Tensor) -> dict[str, torch.Tensor]:
        """The soft-core parameters of :meth:`LennardJonesSolute.energy` at times ``t: [B]``."""
        m = self.schedule(t[:, None])
        middle = t * (1 - t)
        return {"solvent_softness": torch.exp(m[:, 0]) * middle, "solvent_scale": 1 - torch.exp(m[:, 2]) * middle,
                "solute_softness": torch.exp(t * m[:, 1]) * (1 - t),
                "solute_scale": 1 - torch.exp(t * m[:, 3]) * (1 - t)}

    def forward(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        base = self.system.energy(x, **self.alchemical_parameters(t))
        if self.network is None:
            return base
        return base + t * (1 - t) * self.network(x, t)
