"""Private helpers shared by the analysis modules: tensor conversion and importance weights."""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from molsamp.errors import InputError

__all__ = ["as_tensor", "check_bins", "normalised_weights"]


def as_tensor(x, device: torch.device | str | None = None, name: str = "x") -> Tensor:
    """Float tensor on ``device``.

    Floating tensors keep their dtype (and their device when ``device`` is None), so gradients
    and float32 GPU work pass through; anything else (numpy arrays, lists, integer tensors)
    becomes float64.
    """
    if isinstance(x, Tensor):
        t = x if x.is_floating_point() else x.to(torch.float64)
        return t if device is None else t.to(device)
    try:
        array = np.asarray(x, dtype=np.float64)
    except (TypeError, ValueError) as error:
        raise InputError(f"{name} must be a numeric array: {error}") from None
    return torch.as_tensor(array, device=device)


def check_bins(bins: int) -> int:
    """``bins`` as a positive int, or an InputError."""
    if isinstance(bins, bool) or not isinstance(bins, (int, np.integer)) or bins < 1:
        raise InputError(f"bins must be a positive integer, got {bins!r}")
    return int(bins)


def normalised_weights(log_weights, n: int, like: Tensor, name: str = "log_weights") -> Tensor:
    """Weights [n] that sum to one from log-weights [n] (any additive constant); uniform when None.

    The weights take the dtype and device of ``like``.
    """
    if n == 0:
        raise InputError("no samples: cannot normalise an empty set of weights")
    if log_weights is None:
        return torch.full((n,), 1.0 / n, dtype=like.dtype, device=like.device)
    lw = as_tensor(log_weights, like.device, name).to(like.dtype)
    if lw.shape != (n,):
        raise InputError(f"{name} has shape {tuple(lw.shape)}; expected ({n},), one per sample")
    if torch.isnan(lw).any() or (lw == float("inf")).any():
        raise InputError(f"{name} contains NaN or +inf")
    total = torch.logsumexp(lw, 0)
    if not torch.isfinite(total):
        raise InputError(f"{name} are all -inf: every sample has zero weight")
    return torch.exp(lw - total)
