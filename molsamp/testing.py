"""Reusable checks for tests of targets and samplers."""

from __future__ import annotations

__all__ = ["assert_grad_matches_finite_differences", "assert_grad_matches_force"]

import numpy as np
import torch

from molsamp.targets import Target


def assert_grad_matches_finite_differences(target: Target, x: torch.Tensor, step: float = 1e-5,
                                           n_coordinates: int = 12, rtol: float = 1e-3, atol: float = 1e-3,
                                           seed: int = 0) -> None:
    """Autograd gradient of ``target.energy`` at ``x: [1, N, dim]`` equals central finite differences.

    Checks ``n_coordinates`` randomly chosen coordinates; ``step`` in the units of ``x``.
    """
    x = x.detach().clone().double().requires_grad_(True)
    target.energy(x).sum().backward()
    generator = np.random.default_rng(seed)
    for flat in generator.choice(x.numel(), size=min(n_coordinates, x.numel()), replace=False):
        shift = torch.zeros_like(x).flatten()
        shift[flat] = step
        shift = shift.view_as(x)
        with torch.no_grad():
            numeric = (target.energy(x + shift) - target.energy(x - shift)).item() / (2 * step)
        analytic = x.grad.flatten()[flat].item()
        assert abs(numeric - analytic) <= atol + rtol * abs(numeric), (
            f"coordinate {flat}: autograd {analytic:.6g} vs finite difference {numeric:.6g}")


def assert_grad_matches_force(target: Target, x: torch.Tensor, forces: np.ndarray, rtol: float = 1e-4,
                              atol: float = 1e-6) -> None:
    """Autograd gradient of ``target.energy`` at ``x: [B, N, 3]`` equals ``-forces / kT`` (forces in kJ/mol/nm)."""
    x = x.detach().clone().double().requires_grad_(True)
    target.energy(x).sum().backward()
    np.testing.assert_allclose(x.grad.numpy(), -np.asarray(forces) / target.kT, rtol=rtol, atol=atol)
