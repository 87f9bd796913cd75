"""Conformational states of peptide backbones from phi/psi: populations of the Ramachandran basins."""

from __future__ import annotations

import math

import torch

from molsamp.analysis._tensor import as_tensor, normalised_weights
from molsamp.errors import InputError

__all__ = ["RAMACHANDRAN_STATES", "ramachandran_states", "ramachandran_populations"]

RAMACHANDRAN_STATES = ("beta", "alpha_R", "alpha_L")
"""Basins: ``beta`` (C7eq, beta and PII: phi < 0 outside alpha_R), ``alpha_R`` (phi < 0, -120 < psi < 50 degrees)
and ``alpha_L`` (phi > 0: alpha_L and C7ax)."""


def ramachandran_states(phi, psi, device: torch.device | str | None = None) -> torch.Tensor:
    """Basin index ``[B]`` (into :data:`RAMACHANDRAN_STATES`) of each frame's phi and psi ``[B]`` (rad).

    Examples
    --------
    >>> ramachandran_states([-1.4, -1.2, 1.0], [2.6, -0.7, 0.6]).tolist()
    [0, 1, 2]
    """
    phi = as_tensor(phi, device, "phi")
    psi = as_tensor(psi, phi.device, "psi").to(phi.dtype)
    if phi.shape != psi.shape or phi.ndim != 1:
        raise InputError(f"phi and psi must both have shape (B,), got {tuple(phi.shape)} and {tuple(psi.shape)}")
    alpha_r = (phi < 0) & (psi > math.radians(-120)) & (psi < math.radians(50))
    return torch.where(phi > 0, 2, torch.where(alpha_r, 1, 0))


def ramachandran_populations(phi, psi, log_weights=None, device: torch.device | str | None = None) -> dict[str, float]:
    """Population of each basin of :data:`RAMACHANDRAN_STATES` (fractions summing to 1), optionally weighted.

    Examples
    --------
    >>> ramachandran_populations([-1.4, -1.2, 1.0, -1.3], [2.6, -0.7, 0.6, 2.8])
    {'beta': 0.5, 'alpha_R': 0.25, 'alpha_L': 0.25}
    """
    states = ramachandran_states(phi, psi, device)
    weights = normalised_weights(log_weights, len(states), as_tensor(phi, device).double())
    totals = torch.zeros(len(RAMACHANDRAN_STATES), dtype=weights.dtype, device=weights.device)
    totals.index_add_(0, states, weights)
    return {name: float(total) for name, total in zip(RAMACHANDRAN_STATES, totals)}
