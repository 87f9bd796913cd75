"""Paths that couple a rigid solute to water (:class:`~molsamp.free_energy.rigid_solvation.RigidSolvation`): a
learned one for neural TI, and thermodynamic integration and MBAR along any such path from MD at its windows."""

from __future__ import annotations

__all__ = ["SolvationPath", "PathWindow", "sample_path_windows", "window_energies", "path_free_energy",
           "gauss_legendre_windows"]

import dataclasses
import math
import time

import numpy as np
import torch

from molsamp.free_energy.neural_ti import gauss_legendre
from molsamp.free_energy.rigid_solvation import Coupling, RigidSolvation


class SolvationPath(torch.nn.Module):
    """U_theta(x, t) = water energy(x) + coupling energy(x, coupling(t)) (kT) of a :class:`RigidSolvation`, with
    four schedules from an MLP of t (outputs m), each of its own time s: Lennard-Jones scale 1 - exp(s m0) (1 - s),
    its softness ``lj_softness`` exp(s m1) (1 - s), charge scale 1 - exp(s m2) (1 - s), Coulomb softness
    ``coulomb_softness`` exp(s m3) (1 - s) (nm^2), so that t = 0 is the decoupled and t = 1 the coupled state for
    any parameters (the authors' form for the solute). The MLP's last layer starts at zero.

    With ``charges_last`` (the default) the path has two pieces: for t < 1/2 the Lennard-Jones turns on (s = 2t)
    on an uncharged solute, for t > 1/2 the charges (s = 2t - 1) with the Lennard-Jones fully on and hard, so no
    learned schedule can charge a site whose Lennard-Jones is weak or soft. Without it both turn on together
    (s = t), and training can learn a path on which a water hydrogen collapses onto a polar solute's oxygen
    (docs/neural-ti.md)."""

    def __init__(self, solvation: RigidSolvation, hidden: int = 64, lj_softness: float = 0.5,
                 coulomb_softness: float = 0.01, charges_last: bool = True) -> None:
        super().__init__()
        self.solvation, self.lj_softness, self.coulomb_softness = solvation, lj_softness, coulomb_softness
        self.charges_last = charges_last
        self.schedule = torch.nn.Sequential(torch.nn.Linear(1, hidden), torch.nn.SiLU(), torch.nn.Linear(hidden, hidden),
                                            torch.nn.SiLU(), torch.nn.Linear(hidden, 4))
        torch.nn.init.zeros_(self.schedule[-1].weight)
        torch.nn.init.zeros_(self.schedule[-1].bias)

    @property
    def pieces(self) -> int:
        """How many smooth pieces of equal length the path has in t: TI's quadrature must take each whole."""
        return 2 if self.charges_last else 1

    def coupling(self, t: torch.Tensor) -> Coupling:
        """The coupling at times ``t: [B]`` (tensors of shape ``[B]``)."""
        m = self.schedule(t[:, None].to(self.schedule[0].weight))
        t = t.to(m)
        lj_time, charge_time = ((2 * t).clamp(max=1), (2 * t - 1).clamp(min=0)) if self.charges_last else (t, t)
        return Coupling(lennard_jones=1 - torch.exp(lj_time * m[:, 0]) * (1 - lj_time),
                        lj_softness=self.lj_softness * torch.exp(lj_time * m[:, 1]) * (1 - lj_time),
                        charge=1 - torch.exp(charge_time * m[:, 2]) * (1 - charge_time),
                        coulomb_softness=self.coulomb_softness * torch.exp(charge_time * m[:, 3]) * (1 - charge_time))

    def coupling_energy(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """The t-dependent part of U_theta ``[B]`` (kT): what dU_theta/dt and MBAR between times need."""
        return self.solvation.coupling_energy(x, self.coupling(t))

    def forward(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return self.solvation.water_energy(x) + self.coupling_energy(x, t)


def gauss_legendre_windows(n: int, pieces: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """Times of the windows for TI and MBAR, and TI's weights at them: 0, the ``n`` nodes of
    :func:`~molsamp.free_energy.neural_ti.gauss_legendre` over the path's ``pieces`` (:attr:`SolvationPath.pieces`),
    and 1 (weight 0 at the ends)."""
    times, weights = gauss_legendre(n, pieces)
    return np.concatenate([[0.0], times, [1.0]]), np.concatenate([[0.0], weights, [0.0]])


@dataclasses.dataclass(frozen=True)
class PathWindow:
    """MD at time ``t`` of a path: ``x`` frames ``[n, N, 3]`` (nm, float32), ``md_steps`` spent, ``wall_s``."""

    t: float
    x: np.ndarray
    md_steps: int
    wall_s: float


def sample_path_windows(path: SolvationPath, times: np.ndarray, n_frames: int, positions: np.ndarray,
                        interval: float = 0.5, equilibration: float = 20.0, temperature: float | None = None,
                        seed: int = 0, platform: str | None = None, progress: bool | None = None
                        ) -> list[PathWindow]:
    """MD at each of ``times`` on ``path`` (OpenMM: :meth:`RigidSolvation.openmm_system` at the path's coupling
    there), from ``positions``: see :func:`~molsamp.free_energy.rigid_solvation.end_state_samples` for the
    protocol."""
    from molsamp.free_energy.rigid_solvation import end_state_samples

    solvation = path.solvation
    windows = []
    for k, t in enumerate(times):
        start = time.perf_counter()
        with torch.no_grad():
            coupling = path.coupling(torch.tensor([float(t)], dtype=torch.float64))
        fixed = Coupling(*(float(value) for value in dataclasses.astuple(coupling)))
        run = end_state_samples(solvation.openmm_system(fixed), positions, solvation.n_solute, coupled=True,
                                n_frames=n_frames, interval=interval, equilibration=equilibration,
                                temperature=temperature or solvation.temperature, seed=seed * 1000 + k,
                                platform=platform, progress=progress)
        windows.append(PathWindow(float(t), run.x.astype(np.float32), run.md_steps, time.perf_counter() - start))
    return windows


def window_energies(path: SolvationPath, window: PathWindow, times: np.ndarray, batch: int = 64
                    ) -> tuple[np.ndarray, np.ndarray]:
    """The window's frames' coupling energies at every one of ``times`` ``[K, n]`` and their dU/dt at the window's
    own time ``[n]`` (kT), in float64 on the path's device."""
    device = next(path.parameters()).device
    u, dudt = [], []
    for chunk in torch.as_tensor(window.x, dtype=torch.float64, device=device).split(batch):
        same = torch.ones(len(chunk), dtype=torch.float64, device=device)
        with torch.no_grad():
            u.append(torch.stack([path.coupling_energy(chunk, float(t) * same) for t in times]).cpu().numpy())
        t = (window.t * same).requires_grad_()
        (grad,) = torch.autograd.grad(path.coupling_energy(chunk, t).sum(), t)
        dudt.append(grad.cpu().numpy())
    return np.concatenate(u, 1), np.concatenate(dudt)


def path_free_energy(times: np.ndarray, weights: np.ndarray, energies: list[np.ndarray], dudt: list[np.ndarray]
                     ) -> dict:
    """dF = F(t = 1) - F(t = 0) (kT) from MD at the windows of :func:`gauss_legendre_windows` (``times``,
    ``weights``), given each window's :func:`window_energies`: MBAR over all windows and TI by the quadrature of
    <dU/dt>. Each window's frames are thinned by their statistical inefficiency (of the energy difference to the
    next window for MBAR, of dU/dt for TI's error)."""
    from molsamp.free_energy._quiet import quiet_import
    from molsamp.free_energy.mbar import mbar

    timeseries = quiet_import("pymbar.timeseries")
    kept, ti_mean, ti_error = [], [], []
    for k, (u, derivative) in enumerate(zip(energies, dudt)):
        neighbour = k + 1 if k + 1 < len(times) else k - 1
        difference = u[neighbour] - u[k]
        kept.append(u[:, timeseries.subsample_correlated_data(difference)] if np.ptp(difference) > 1e-12 else u)
        g = timeseries.statistical_inefficiency(derivative) if np.ptp(derivative) > 1e-12 else 1.0
        ti_mean.append(float(derivative.mean()))
        ti_error.append(float(derivative.std(ddof=1) * math.sqrt(g / len(derivative))))
    estimate = mbar(np.concatenate(kept, axis=1), [k.shape[1] for k in kept])
    return {"mbar_dF_kT": estimate.delta_f, "mbar_err_kT": estimate.error,
            "ti_dF_kT": float(weights @ np.array(ti_mean)),
            "ti_err_kT": float(np.sqrt(weights**2 @ np.array(ti_error) ** 2)),
            "times": [round(float(t), 5) for t in times], "mean_dudt": [round(m, 3) for m in ti_mean],
            "decorrelated_samples": [int(k.shape[1]) for k in kept],
            "worst_neighbour_overlap": float(estimate.neighbour_overlap.min())}
