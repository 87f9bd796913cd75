"""Time-lagged independent component analysis (TICA): the slowest linear collective variables of a time series."""

from __future__ import annotations

import dataclasses

import torch
from torch import Tensor

from molsamp.analysis._tensor import as_tensor
from molsamp.analysis.ess import autocorrelation
from molsamp.errors import InputError

__all__ = ["Tica", "fit_tica", "first_zero_ess"]


@dataclasses.dataclass(frozen=True)
class Tica:
    """A fitted TICA model: ``mean [D]``, ``eigenvalues [K]`` (autocorrelations at the lag, slowest first) and
    ``components [D, K]`` (columns normalised to unit variance of the projections)."""

    mean: Tensor
    eigenvalues: Tensor
    components: Tensor

    def transform(self, features) -> Tensor:
        """Projections ``[T, K]`` of ``features [T, D]`` on the components, slowest first."""
        x = as_tensor(features, self.mean.device, "features").to(self.mean.dtype)
        return (x - self.mean) @ self.components


def fit_tica(features, lag: int, dim: int | None = None, regularisation: float = 1e-8,
             device: torch.device | str | None = None) -> Tica:
    """Fit TICA to ``features [T, D]`` at ``lag`` frames, keeping ``dim`` components (all by default).

    Uses symmetrised (reversible) covariances C0 and C(lag) and solves C(lag) v = lambda C0 v by whitening C0
    (eigenvalues of C0 below ``regularisation`` times its largest are dropped).
    """
    x = as_tensor(features, device, "features")
    if x.ndim != 2 or not 0 < lag < len(x) // 2:
        raise InputError(f"features must be (T, D) with T > 2 * lag > 0; got shape {tuple(x.shape)} and lag {lag}")
    x = x.double()
    mean = x.mean(0)
    a, b = x[:-lag] - mean, x[lag:] - mean
    c0 = (a.T @ a + b.T @ b) / (2 * len(a))
    ct = (a.T @ b + b.T @ a) / (2 * len(a))
    values, vectors = torch.linalg.eigh(c0)
    keep = values > regularisation * values.max()
    whiten = vectors[:, keep] / values[keep].sqrt()
    eigenvalues, rotation = torch.linalg.eigh(whiten.T @ ct @ whiten)
    order = torch.argsort(eigenvalues, descending=True)[:dim]
    return Tica(mean, eigenvalues[order], whiten @ rotation[:, order])


def first_zero_ess(x, device: torch.device | str | None = None) -> float | Tensor:
    """Effective sample size T / (1 + 2 sum_{t=1}^{t0-1} rho(t)) with the sum truncated at the first lag t0 where
    the autocorrelation rho falls to zero or below (as Timewarp, Klein et al. 2023). ``x: [T]`` or ``[T, D]``."""
    rho = autocorrelation(x, device)
    columns = rho.reshape(rho.shape[0], -1)
    positive = torch.cumprod((columns > 0).to(columns.dtype), dim=0)  # 1 until the first non-positive lag
    tau = 1 + 2 * (columns * positive)[1:].sum(0)
    ess = rho.shape[0] / tau
    return float(ess) if rho.ndim == 1 else ess
