"""MBAR (pymbar) over alchemical windows: free-energy difference, its error and the overlap matrix."""

from __future__ import annotations

__all__ = ["FreeEnergyDifference", "PoorOverlapWarning", "mbar", "mbar_from_windows", "MIN_OVERLAP"]

import dataclasses
import warnings
from collections.abc import Sequence

import numpy as np

from molsamp.free_energy._quiet import quiet_import
from molsamp.free_energy.windows import WindowSamples

MIN_OVERLAP = 0.03
"""Neighbouring states whose MBAR overlap falls below this get a :class:`PoorOverlapWarning`."""


class PoorOverlapWarning(UserWarning):
    """Neighbouring alchemical states overlap too little for a trustworthy MBAR estimate: add states between them."""


@dataclasses.dataclass(frozen=True)
class FreeEnergyDifference:
    """``delta_f`` = f(last state) - f(first state) and its standard error, in kT.

    Attributes:
        overlap: ``[K, K]`` MBAR overlap matrix (rows sum to 1).
        samples_per_state: decorrelated samples used from each state.
    """

    delta_f: float
    error: float
    overlap: np.ndarray
    samples_per_state: np.ndarray

    @property
    def neighbour_overlap(self) -> np.ndarray:
        """``[K-1]`` overlap between states k and k+1 (0: none, 0.5: identical)."""
        return np.diagonal(self.overlap, offset=1).copy()


def mbar(reduced_potentials: np.ndarray, samples_per_state: Sequence[int]) -> FreeEnergyDifference:
    """MBAR estimate from ``reduced_potentials`` ``[K, N]`` (kT: every sample evaluated in every state, samples
    grouped by the state they were drawn from, ``samples_per_state[k]`` of them from state k).

    Warns with :class:`PoorOverlapWarning` when neighbouring states overlap less than :data:`MIN_OVERLAP`.
    """
    pymbar = quiet_import("pymbar")
    u_kn = np.asarray(reduced_potentials, dtype=np.float64)
    n_k = np.asarray(samples_per_state, dtype=int)
    if u_kn.ndim != 2 or u_kn.shape != (len(n_k), n_k.sum()):
        raise ValueError(f"reduced_potentials must be [K, sum(samples_per_state)] = [{len(n_k)}, {n_k.sum()}], "
                         f"got {list(u_kn.shape)}")
    if not np.isfinite(u_kn).all():
        raise ValueError("reduced potentials contain NaN or infinity")
    estimator = pymbar.MBAR(u_kn, n_k, solver_protocol="robust")
    result = estimator.compute_free_energy_differences()
    overlap = np.asarray(estimator.compute_overlap()["matrix"])
    estimate = FreeEnergyDifference(delta_f=float(result["Delta_f"][0, -1]), error=float(result["dDelta_f"][0, -1]),
                                    overlap=overlap, samples_per_state=n_k)
    worst = int(np.argmin(estimate.neighbour_overlap))
    if estimate.neighbour_overlap[worst] < MIN_OVERLAP:
        warnings.warn(f"states {worst} and {worst + 1} overlap only {estimate.neighbour_overlap[worst]:.3f} "
                      f"(< {MIN_OVERLAP}); the MBAR estimate and its error are unreliable: add states between them",
                      PoorOverlapWarning, stacklevel=2)
    return estimate


def mbar_from_windows(windows: Sequence[WindowSamples]) -> FreeEnergyDifference:
    """MBAR over the windows of one leg (one per state, in any order), each subsampled to decorrelated samples by
    the statistical inefficiency of its own reduced potential."""
    timeseries = quiet_import("pymbar.timeseries")
    windows = sorted(windows, key=lambda w: w.state)
    if [w.state for w in windows] != list(range(len(windows))):
        raise ValueError(f"need one window per state 0..{len(windows) - 1}, got states {[w.state for w in windows]}")
    kept = []
    for window in windows:
        own = window.reduced_potentials[window.state]
        if np.ptp(own) > 0:
            kept.append(window.reduced_potentials[:, timeseries.subsample_correlated_data(own)])
        else:
            kept.append(window.reduced_potentials)
    return mbar(np.concatenate(kept, axis=1), [k.shape[1] for k in kept])
