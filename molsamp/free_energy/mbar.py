"""MBAR (pymbar) over alchemical windows: free-energy difference, its error and the overlap matrix."""

from __future__ import annotations

__all__ = ["FreeEnergyDifference", "PoorOverlapWarning", "mbar", "mbar_from_windows", "temperature_mbar",
           "MIN_OVERLAP", "MOLAR_GAS_CONSTANT"]

import dataclasses
import warnings
from collections.abc import Sequence

import numpy as np

from molsamp.free_energy._quiet import quiet_import
from molsamp.free_energy.windows import WindowSamples

MOLAR_GAS_CONSTANT = 8.314462618e-3
"""kJ/mol/K."""

MIN_OVERLAP = 0.03
"""Neighbouring states whose MBAR overlap falls below this get a :class:`PoorOverlapWarning`."""


class PoorOverlapWarning(UserWarning):
    """Neighbouring alchemical states overlap too little for a trustworthy MBAR estimate: add states between them."""


@dataclasses.dataclass(frozen=True)
class FreeEnergyDifference:
    """``delta_f`` = f(last state) - f(first state) and its standard error, in kT.

    Attributes:
        overlap: ``[K, K]`` MBAR overlap matrix (rows sum to 1; its entries scale with the sample counts).
        neighbour_overlap: ``[K-1]`` overlap of states k and k+1 from their own samples, as if both had as many
            samples: 0 for disjoint states, 0.5 for identical ones, whatever K and the sample counts.
        samples_per_state: decorrelated samples used from each state.
    """

    delta_f: float
    error: float
    overlap: np.ndarray
    neighbour_overlap: np.ndarray
    samples_per_state: np.ndarray


def _neighbour_overlap(pymbar, u_kn: np.ndarray, n_k: np.ndarray) -> np.ndarray:
    """Two-state MBAR overlap sum_n W_n,k W_n,k+1 (N_k + N_k+1) / 2 of each neighbouring pair, on their samples."""
    offsets = np.concatenate([[0], np.cumsum(n_k)])
    overlaps = []
    for k in range(len(n_k) - 1):
        columns = slice(offsets[k], offsets[k + 2])
        pair = pymbar.MBAR(u_kn[k:k + 2, columns], n_k[k:k + 2], solver_protocol="robust")
        weights = pair.weights()  # [N_k + N_k+1, 2]
        overlaps.append(float((weights[:, 0] * weights[:, 1]).sum()) * (n_k[k] + n_k[k + 1]) / 2)
    return np.array(overlaps)


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
                                    overlap=overlap, neighbour_overlap=_neighbour_overlap(pymbar, u_kn, n_k),
                                    samples_per_state=n_k)
    worst = int(np.argmin(estimate.neighbour_overlap))
    if estimate.neighbour_overlap[worst] < MIN_OVERLAP:
        warnings.warn(f"states {worst} and {worst + 1} overlap only {estimate.neighbour_overlap[worst]:.3f} "
                      f"(< {MIN_OVERLAP}); the MBAR estimate and its error are unreliable: add states between them",
                      PoorOverlapWarning, stacklevel=2)
    return estimate


def mbar_from_windows(windows: Sequence[WindowSamples]) -> FreeEnergyDifference:
    """MBAR over the windows of one leg (one per state, in any order), each subsampled to decorrelated samples by
    the statistical inefficiency of its reduced-energy difference to the next state (the previous one for the last
    state), as alchemlyb's ``dE`` decorrelation."""
    timeseries = quiet_import("pymbar.timeseries")
    windows = sorted(windows, key=lambda w: w.state)
    if [w.state for w in windows] != list(range(len(windows))):
        raise ValueError(f"need one window per state 0..{len(windows) - 1}, got states {[w.state for w in windows]}")
    kept = []
    for window in windows:
        u = window.reduced_potentials
        neighbour = window.state + 1 if window.state + 1 < len(u) else window.state - 1
        difference = u[neighbour] - u[window.state]  # what MBAR uses; the total energy decorrelates more slowly
        if np.ptp(difference) > 1e-12:
            kept.append(u[:, timeseries.subsample_correlated_data(difference)])
        else:
            kept.append(u)
    return mbar(np.concatenate(kept, axis=1), [k.shape[1] for k in kept])


def temperature_mbar(temperatures: Sequence[float], energies: Sequence[np.ndarray], start: float, end: float
                     ) -> FreeEnergyDifference:
    """MBAR over a ladder of temperatures at constant volume: ``delta_f`` = f(``end``) - f(``start``), the reduced
    free energies (kT, f = -log Z) at the two temperatures (K, both on the ladder), from the potential energies
    ``energies[k]`` (kJ/mol) sampled at ``temperatures[k]``: a time series ``[frames]``, or independent runs
    ``[runs, frames]``, using the states from ``start`` to ``end``. Each series is subsampled to decorrelated samples
    by its statistical inefficiency; u_k(x) = U(x) / R T_k."""
    timeseries = quiet_import("pymbar.timeseries")
    temperatures = np.asarray(temperatures, dtype=np.float64)
    positions = [int(np.flatnonzero(np.isclose(temperatures, t))[0]) if np.isclose(temperatures, t).any() else None
                 for t in (start, end)]
    if None in positions:
        raise ValueError(f"{start} K and {end} K must both be on the ladder {temperatures.tolist()}")
    first, last = positions
    step = 1 if last >= first else -1
    states = list(range(first, last + step, step))
    decorrelated = [np.concatenate([run[timeseries.subsample_correlated_data(run)]
                                    for run in np.atleast_2d(np.asarray(energies[k], dtype=np.float64))])
                    for k in states]
    u = np.concatenate(decorrelated)
    return mbar(u[None, :] / (MOLAR_GAS_CONSTANT * temperatures[states, None]), [len(d) for d in decorrelated])
