"""Importance-weighted torsion and Ramachandran histograms and free-energy surfaces."""

from __future__ import annotations

import math

import torch
from torch import Tensor

from molsamp.analysis._tensor import as_tensor, check_bins, normalised_weights
from molsamp.errors import InputError

__all__ = ["torsion_histogram", "ramachandran_histogram", "free_energy_surface"]


def _bin_index(angles: Tensor, bins: int) -> Tensor:
    """Bin of each angle on ``bins`` equal bins over one turn, the first starting at -pi.

    Angles are taken modulo 2 pi, so pi and -pi share the first bin.
    """
    turn = 2 * math.pi
    index = torch.floor(torch.remainder(angles + math.pi, turn) * (bins / turn)).long()
    return index.clamp_(0, bins - 1)


def torsion_histogram(angles, bins: int = 36, log_weights=None, device: torch.device | str | None = None) -> Tensor:
    """Normalised histogram of torsion angles over one turn.

    Parameters
    ----------
    angles : array or Tensor, shape=(B,) or (B, M)
        Radians; taken modulo 2 pi. Bin k covers [-pi + k w, -pi + (k + 1) w) with w = 2 pi / bins.
    bins : int
        Number of equal bins.
    log_weights : array or Tensor, shape=(B,), optional
        Log importance weights, any additive constant (-inf means weight 0); default: equal weights.
        Plain weights w enter as ``log(w)``.
    device : torch.device, optional
        Where to compute; default: the device of ``angles``.

    Returns
    -------
    hist : Tensor, shape=(bins,) or (M, bins)
        Probability mass per bin; each histogram sums to one.
    """
    bins = check_bins(bins)
    angles = as_tensor(angles, device, "angles")
    if angles.ndim not in (1, 2):
        raise InputError(f"angles has shape {tuple(angles.shape)}; expected (B,) or (B, M)")
    w = normalised_weights(log_weights, angles.shape[0], angles)
    columns = angles.reshape(angles.shape[0], -1)  # [B, M]
    m = columns.shape[1]
    flat = (_bin_index(columns, bins) + bins * torch.arange(m, device=columns.device)).reshape(-1)
    hist = columns.new_zeros(m * bins).index_add_(0, flat, w[:, None].expand(-1, m).reshape(-1))
    hist = hist.reshape(m, bins)
    return hist[0] if angles.ndim == 1 else hist


def ramachandran_histogram(
    phi, psi, bins: int = 36, log_weights=None, device: torch.device | str | None = None
) -> Tensor:
    """Normalised 2D histogram of (phi, psi) pairs.

    Parameters
    ----------
    phi, psi : array or Tensor, shape=(B,)
        Radians, binned as in :func:`torsion_histogram`.
    bins : int
        Number of equal bins along each axis.
    log_weights : array or Tensor, shape=(B,), optional
        Log importance weights, any additive constant; default: equal weights.
    device : torch.device, optional
        Where to compute; default: the device of ``phi``.

    Returns
    -------
    hist : Tensor, shape=(bins, bins)
        Probability mass per bin, summing to one; first axis phi, second psi.
    """
    bins = check_bins(bins)
    phi = as_tensor(phi, device, "phi")
    psi = as_tensor(psi, phi.device, "psi").to(phi.dtype)
    if phi.ndim != 1 or phi.shape != psi.shape:
        raise InputError(f"phi {tuple(phi.shape)} and psi {tuple(psi.shape)} must be 1D of the same length")
    w = normalised_weights(log_weights, phi.shape[0], phi)
    flat = _bin_index(phi, bins) * bins + _bin_index(psi, bins)
    return phi.new_zeros(bins * bins).index_add_(0, flat, w).reshape(bins, bins)


def free_energy_surface(hist, kT: float = 1.0, device: torch.device | str | None = None) -> Tensor:
    """Free energy -kT ln p of a histogram, shifted so that its minimum is zero.

    Parameters
    ----------
    hist : array or Tensor, any shape
        Non-negative counts or probabilities (normalised here).
    kT : float
        Energy unit of the result: 1.0 gives kT; 2.494 gives kJ/mol at 300 K.
    device : torch.device, optional
        Where to compute; default: the device of ``hist``.

    Returns
    -------
    fes : Tensor, same shape as ``hist``
        Free energy, 0 at the most populated bin and +inf at empty bins.
    """
    hist = as_tensor(hist, device, "hist")
    if not torch.isfinite(hist).all() or (hist < 0).any():
        raise InputError("hist must be finite and non-negative")
    if not (hist > 0).any():
        raise InputError("hist is empty: every bin is zero")
    if not kT > 0:
        raise InputError(f"kT must be positive, got {kT!r}")
    return kT * torch.log(hist.max() / hist)
