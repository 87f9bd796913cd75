"""Jensen-Shannon divergence between histograms and between torsion samples; the 2-Wasserstein distance between two
sample sets."""

from __future__ import annotations

import torch
from torch import Tensor

from molsamp.analysis._tensor import as_tensor
from molsamp.analysis.histograms import ramachandran_histogram, torsion_histogram
from molsamp.errors import InputError

__all__ = ["js_divergence", "torsion_js", "ramachandran_js", "wasserstein2"]


def _distribution(hist: Tensor, name: str) -> Tensor:
    """``hist`` divided by its sum, after checking it is a histogram."""
    if not torch.isfinite(hist).all() or (hist < 0).any():
        raise InputError(f"{name} must be finite and non-negative")
    total = hist.sum()
    if not total > 0:
        raise InputError(f"{name} is empty: every bin is zero")
    return hist / total


def js_divergence(p, q, device: torch.device | str | None = None) -> Tensor:
    """Jensen-Shannon divergence between two histograms, in nats.

    JS(p, q) = KL(p || m) / 2 + KL(q || m) / 2 with m = (p + q) / 2 and 0 ln 0 = 0. It is symmetric,
    zero only for p = q, and at most ln 2, reached when p and q share no bin.

    Parameters
    ----------
    p, q : array or Tensor, same shape (any)
        Non-negative counts or probabilities; the whole tensor is one distribution, normalised here.
    device : torch.device, optional
        Where to compute; default: the device of ``p``.

    Returns
    -------
    js : Tensor, shape=()
        Divergence in nats, in [0, ln 2].
    """
    p = as_tensor(p, device, "p")
    q = as_tensor(q, p.device, "q").to(p.dtype)
    if p.shape != q.shape:
        raise InputError(f"p has shape {tuple(p.shape)} but q has shape {tuple(q.shape)}; they must match")
    p, q = _distribution(p, "p"), _distribution(q, "q")
    m = (p + q) / 2
    kl_p = (torch.xlogy(p, p) - torch.xlogy(p, m)).sum()
    kl_q = (torch.xlogy(q, q) - torch.xlogy(q, m)).sum()
    return ((kl_p + kl_q) / 2).clamp(min=0.0)


def torsion_js(
    angles_a,
    angles_b,
    bins: int = 36,
    log_weights_a=None,
    log_weights_b=None,
    device: torch.device | str | None = None,
) -> float:
    """Mean over torsions of the 1D Jensen-Shannon divergence between two samples, in nats.

    Parameters
    ----------
    angles_a : array or Tensor, shape=(B, M) or (B,)
        Radians, the first sample of M torsions.
    angles_b : array or Tensor, shape=(B', M) or (B',)
        Radians, the second sample of the same torsions.
    bins : int
        Bins per torsion histogram (see :func:`torsion_histogram`).
    log_weights_a, log_weights_b : array or Tensor, shape=(B,) and (B',), optional
        Log importance weights of each sample; default: equal weights.
    device : torch.device, optional
        Where to compute; default: the device of ``angles_a``.

    Returns
    -------
    js : float
        Average of the M per-torsion divergences, in [0, ln 2].
    """
    a = as_tensor(angles_a, device, "angles_a")
    b = as_tensor(angles_b, a.device, "angles_b").to(a.dtype)
    if a.ndim != b.ndim or a.shape[1:] != b.shape[1:]:
        raise InputError(
            f"angles_a {tuple(a.shape)} and angles_b {tuple(b.shape)} must hold the same torsions (B, M)"
        )
    hist_a = torsion_histogram(a, bins, log_weights_a).reshape(-1, bins)
    hist_b = torsion_histogram(b, bins, log_weights_b).reshape(-1, bins)
    if hist_a.shape[0] == 0:
        raise InputError("angles_a and angles_b hold no torsions (M = 0)")
    return float(torch.stack([js_divergence(pa, pb) for pa, pb in zip(hist_a, hist_b)]).mean())


def ramachandran_js(
    phi_a,
    psi_a,
    phi_b,
    psi_b,
    bins: int = 36,
    log_weights_a=None,
    log_weights_b=None,
    device: torch.device | str | None = None,
) -> float:
    """Jensen-Shannon divergence between two Ramachandran (phi, psi) histograms, in nats.

    Parameters
    ----------
    phi_a, psi_a : array or Tensor, shape=(B,)
        Radians, the first sample.
    phi_b, psi_b : array or Tensor, shape=(B',)
        Radians, the second sample.
    bins : int
        Bins along each axis (see :func:`ramachandran_histogram`).
    log_weights_a, log_weights_b : array or Tensor, shape=(B,) and (B',), optional
        Log importance weights of each sample; default: equal weights.
    device : torch.device, optional
        Where to compute; default: the device of ``phi_a``.

    Returns
    -------
    js : float
        Divergence in [0, ln 2].
    """
    phi_a = as_tensor(phi_a, device, "phi_a")
    hist_a = ramachandran_histogram(phi_a, psi_a, bins, log_weights_a)
    hist_b = ramachandran_histogram(phi_b, psi_b, bins, log_weights_b, device=phi_a.device)
    return float(js_divergence(hist_a, hist_b))


def wasserstein2(a: Tensor, b: Tensor) -> float:
    """Exact 2-Wasserstein distance between the empirical measures of two equal-size sample sets ``a, b: [n, d]``
    (in their units), by optimal assignment (O(n^3): up to a few thousand samples)."""
    from scipy.optimize import linear_sum_assignment

    if a.shape != b.shape or a.dim() != 2:
        raise InputError(f"wasserstein2 needs two [n, d] sample sets of one shape, got {tuple(a.shape)} and "
                         f"{tuple(b.shape)}")
    cost = (torch.cdist(a.double(), b.double()) ** 2).cpu().numpy()
    rows, columns = linear_sum_assignment(cost)
    return float(cost[rows, columns].mean() ** 0.5)
