"""Effective sample sizes: Kish's for importance weights, autocorrelation-based for time series."""

from __future__ import annotations

import torch
from torch import Tensor

from molsamp.analysis._tensor import as_tensor, normalised_weights
from molsamp.errors import InputError

__all__ = ["kish_ess", "autocorrelation", "integrated_autocorrelation_time", "time_series_ess", "torsion_ess"]


def kish_ess(log_weights, device: torch.device | str | None = None) -> float:
    """Kish's effective sample size (sum w)^2 / sum w^2 of importance weights.

    Parameters
    ----------
    log_weights : array or Tensor, shape=(B,)
        Log importance weights, any additive constant (-inf means weight 0).
    device : torch.device, optional
        Where to compute (always in float64); default: the device of ``log_weights``.

    Returns
    -------
    ess : float
        In [1, B]: B for equal weights, 1 when a single sample carries all the weight.

    Examples
    --------
    >>> kish_ess([0.0, 0.0, 0.0, 0.0])
    4.0
    >>> kish_ess([0.0, float("-inf"), float("-inf")])
    1.0
    """
    lw = as_tensor(log_weights, device, "log_weights").to(torch.float64)
    if lw.ndim != 1:
        raise InputError(f"log_weights has shape {tuple(lw.shape)}; expected (B,)")
    w = normalised_weights(lw, lw.shape[0], lw)  # exp(lw - logsumexp(lw)): no overflow
    return float(1.0 / (w * w).sum())


def _check_finite(x: Tensor) -> None:
    if not torch.isfinite(x).all():
        raise InputError("x contains NaN or inf")


def _centred_series(x, device: torch.device | str | None) -> Tensor:
    """``x`` [T] or [T, D] minus its mean over time, after checking its shape and variance."""
    x = as_tensor(x, device, "x")
    if x.ndim not in (1, 2) or x.shape[0] < 2:
        raise InputError(f"x has shape {tuple(x.shape)}; expected a time series (T,) or (T, D) with T >= 2")
    _check_finite(x)
    centred = x - x.mean(0)
    if (centred.abs().amax(0) == 0).any():
        raise InputError("x has a constant column: its autocorrelation is undefined")
    return centred


def autocorrelation(x, device: torch.device | str | None = None) -> Tensor:
    """Normalised autocorrelation function rho(t) of a time series, or of several chains pooled, via FFT.

    Uses the standard (biased, 1/T) estimator of the autocovariance, which keeps rho positive
    semi-definite; rho(0) = 1. Chains are pooled as Stan does (Vehtari et al. 2021, eq. 10):
    rho(t) = 1 - (W - mean over chains of acov(t)) / var+, where W is the mean within-chain variance and
    var+ = (T - 1) / T W + the variance of the chain means. Chains that sit in different states keep rho high, so
    they count as few effective samples, however well each chain mixes within its state.

    Parameters
    ----------
    x : array or Tensor, shape=(T,), (T, D) or (C, T, D)
        Time series; columns are separate observables; a leading axis holds C chains of equal length.
    device : torch.device, optional
        Where to compute; default: the device of ``x``.

    Returns
    -------
    rho : Tensor, shape (T,), (T, D) or, for chains, (T, D)
        rho[t] for lags t = 0 .. T-1, per column.
    """
    x = as_tensor(x, device, "x")
    if x.ndim == 3:
        return _pooled_autocorrelation(x)
    acov = _lag_sums(_centred_series(x, device))
    return acov / acov[0]


def _lag_sums(centred: Tensor) -> Tensor:
    """Sums over s of x[s] x[s + t] along the first axis of a centred series, for lags t = 0 .. T-1 (zero-padded
    FFT)."""
    t = centred.shape[0]
    n = 1 << (2 * t - 1).bit_length()  # zero-pad to a power of two >= 2T: no circular wrap-around
    spectrum = torch.fft.rfft(centred, n=n, dim=0)
    return torch.fft.irfft(spectrum * spectrum.conj(), n=n, dim=0)[:t]


def _pooled_autocorrelation(x: Tensor) -> Tensor:
    """Stan's multi-chain autocorrelation ``[T, D]`` of chains ``x [C, T, D]`` (see :func:`autocorrelation`)."""
    if x.shape[1] < 2 or x.shape[0] < 1:
        raise InputError(f"x has shape {tuple(x.shape)}; expected chains (C, T, D) with C >= 1 and T >= 2")
    _check_finite(x)
    t = x.shape[1]
    means = x.mean(1, keepdim=True)
    acov = _lag_sums((x - means).transpose(0, 1)) / t  # [T, C, D]
    within = acov[0].mean(0) * t / (t - 1)
    between = means[:, 0].var(0) if x.shape[0] > 1 else torch.zeros_like(within)
    var_plus = within * (t - 1) / t + between
    if (var_plus == 0).any():
        raise InputError("x has a constant column: its autocorrelation is undefined")
    return 1 - (within - acov.mean(1)) / var_plus


def integrated_autocorrelation_time(x, c: float = 5.0, device: torch.device | str | None = None) -> float | Tensor:
    """Integrated autocorrelation time tau = 1 + 2 sum_{t>=1} rho(t), in steps.

    The sum is truncated with Sokal's automatic window: at the smallest lag W with W >= c tau(W),
    where tau(W) is the sum up to W (as in emcee). tau is 1 for independent samples and
    (1 + a) / (1 - a) for an AR(1) process with coefficient a. If no window qualifies, the series
    is too short for a reliable estimate (T should exceed about 50 tau) and the sum runs to T-1. An
    anti-correlated series (tau < 1, or even negative, from the estimate) counts as independent: tau >= 1.

    Parameters
    ----------
    x : array or Tensor, shape=(T,), (T, D) or (C, T, D)
        Time series; columns are separate observables; C chains pooled as in :func:`autocorrelation`.
    c : float
        Window constant; 5 is Sokal's recommendation.
    device : torch.device, optional
        Where to compute; default: the device of ``x``.

    Returns
    -------
    tau : float or Tensor, shape=(D,)
        A float for a 1D series, one value per column otherwise.
    """
    rho = autocorrelation(x, device)
    columns = rho.reshape(rho.shape[0], -1)  # [T, D]
    taus = 2 * torch.cumsum(columns, 0) - 1  # tau(W) for every window W
    lags = torch.arange(columns.shape[0], device=columns.device, dtype=columns.dtype)[:, None]
    inside = lags < c * taus
    window = torch.where(inside.all(0), columns.shape[0] - 1, torch.argmin(inside.to(torch.int8), 0))
    tau = taus.gather(0, window[None]).squeeze(0).clamp(min=1.0)
    return float(tau) if rho.ndim == 1 else tau


def time_series_ess(x, c: float = 5.0, device: torch.device | str | None = None) -> float | Tensor:
    """Effective number of independent samples T / tau of a correlated time series (C T / tau for C chains).

    Parameters
    ----------
    x : array or Tensor, shape=(T,), (T, D) or (C, T, D)
        Time series; columns are separate observables; C chains pooled as in :func:`autocorrelation`.
    c : float
        Window constant of :func:`integrated_autocorrelation_time`.
    device : torch.device, optional
        Where to compute; default: the device of ``x``.

    Returns
    -------
    ess : float or Tensor, shape=(D,)
        A float for a 1D series, one value per column otherwise.
    """
    x = as_tensor(x, device, "x")
    tau = integrated_autocorrelation_time(x, c, device)
    return x.shape[0] * x.shape[1] / tau if x.ndim == 3 else x.shape[0] / tau


def torsion_ess(angles, c: float = 5.0, device: torch.device | str | None = None) -> Tensor:
    """Effective sample size of each torsion of a time series of angles, free of the 2 pi wrap-around.

    An angle series is not a good observable itself (a jump across +-pi looks like a large move), so the ESS of
    a torsion is the smaller of the ESS of its sine and its cosine, each from :func:`time_series_ess`.

    Parameters
    ----------
    angles : array or Tensor, shape=(T, M) or (C, T, M)
        Torsion angles (rad), one column per torsion; C chains pooled as in :func:`autocorrelation`.
    c : float
        Window constant of :func:`integrated_autocorrelation_time`.
    device : torch.device, optional
        Where to compute; default: the device of ``angles``.

    Returns
    -------
    ess : Tensor, shape=(M,)
    """
    angles = as_tensor(angles, device, "angles")
    if angles.ndim not in (2, 3):
        raise InputError(f"angles has shape {tuple(angles.shape)}; expected (T, M) or chains (C, T, M)")
    m = angles.shape[-1]
    ess = time_series_ess(torch.cat([torch.sin(angles), torch.cos(angles)], dim=-1), c)
    return torch.minimum(ess[:m], ess[m:])
