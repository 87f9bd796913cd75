"""A Boltzmann generator for a particle system: reference data from the project's MCMC, an equivariant flow trained
on it by flow matching, saved with its card, and independent samples with exact log-densities and importance
weights log w = -u(x) - log q(x)."""

from __future__ import annotations

__all__ = ["reference_samples", "train_flow", "save_flow", "load_flow", "default_model", "sample"]

import math
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from molsamp.errors import InputError
from molsamp.flows.cnf import EquivariantFlow
from molsamp.flows.references import mcmc_samples
from molsamp.samples import Samples

if TYPE_CHECKING:
    from molsamp.systems import System

KIND = "equivariant-flow"


def _check_particle_system(system: System) -> None:
    if system.analytic is None:
        raise InputError(f"system {system.name!r}: equivariant flows sample systems of identical particles "
                         "(dw4, lj13, lj55); this one has a force field")


def reference_samples(system: System, n_chains: int = 1000, n_samples: int = 10, burn_in: int = 5000,
                      thin: int = 50, seed: int = 0) -> Samples:
    """Equilibrium samples of a particle system by parallel random-walk MH (:func:`~molsamp.flows.references.
    mcmc_samples`) started from the system's lattice positions, the step tuned during burn-in; deterministic for
    a seed. ``info["js_halves"]`` is the convergence check."""
    _check_particle_system(system)
    return mcmc_samples(system.target(), torch.as_tensor(system.positions), n_chains=n_chains, n_samples=n_samples,
                        burn_in=burn_in, thin=thin, seed=seed)


def finite_rows(x: torch.Tensor, *values: torch.Tensor) -> torch.Tensor:
    """Mask ``[B]`` of the rows where ``x: [B, ...]`` and every ``[B]`` tensor in ``values`` are finite."""
    mask = torch.isfinite(x.flatten(1)).all(1)
    for value in values:
        mask &= torch.isfinite(value)
    return mask


def train_flow(system: System, data: Samples, steps: int = 4000, batch_size: int = 256, hidden: int = 64,
               layers: int = 4, learning_rate: float = 1e-3, seed: int = 0, progress: bool | None = None,
               log: Callable[[dict], None] | None = None) -> EquivariantFlow:
    """An :class:`EquivariantFlow` for ``system`` fitted to ``data`` by equivariant flow matching (float32 weights).

    Rows of ``data`` with a non-finite position or energy are dropped and counted (``log`` gets
    ``{"dropped": k}``); the prior's scale is the root-mean-square centred coordinate of the data."""
    from molsamp.flows.matching import train_flow_matching

    _check_particle_system(system)
    keep = finite_rows(data.x, data.u)
    x = data.x[keep].float()
    if log is not None:
        log({"data": len(data), "dropped": int((~keep).sum())})
    if len(x) < batch_size:
        raise InputError(f"{len(x)} finite training samples, fewer than one batch of {batch_size}")
    n, dim = system.analytic.event_shape
    scale = float((x - x.mean(1, keepdim=True)).pow(2).mean().sqrt())
    torch.manual_seed(seed)
    flow = EquivariantFlow(n, dim, hidden=hidden, layers=layers, prior_scale=scale)
    train_flow_matching(flow, x, steps=steps, batch_size=batch_size, learning_rate=learning_rate, seed=seed,
                        progress=progress, log=log)
    return flow


def save_flow(flow: EquivariantFlow, path: str | os.PathLike, system: System, **card: Any) -> Path:
    """Write ``flow`` for ``system`` with its model card (data, command, training time, measured ESS)."""
    from molsamp.checkpoints import save_checkpoint

    return save_checkpoint(flow, path, KIND, system=system.name, **card)


def default_model(system: System) -> Path:
    """The shipped checkpoint of ``system`` (``models/<name>-flow.pt``)."""
    from molsamp.shipped import MODELS_DIR

    return MODELS_DIR / f"{system.name}-flow.pt"


def load_flow(path: str | os.PathLike, system: System, dtype: torch.dtype = torch.float64,
              device: torch.device | str | None = None) -> EquivariantFlow:
    """The flow at ``path``, checked to be trained for ``system``; in ``dtype`` (float64 by default, so that the
    log-densities of the weights keep their digits). :class:`InputError` if it is missing or for another system."""
    from molsamp.checkpoints import load_checkpoint

    if not Path(path).is_file() and Path(path) == default_model(system):
        raise InputError(f"no shipped flow for {system.name!r}; train one with 'molsamp train flow {system.name} "
                         f"-o {system.name}-flow.pt' and pass --model")
    flow = load_checkpoint(path, KIND, EquivariantFlow, device)
    trained_for = flow.metadata.get("system")
    if trained_for != system.name or tuple(flow.event_shape) != tuple(system.analytic.event_shape):
        raise InputError(f"{path}: a flow for {trained_for!r} ({tuple(flow.event_shape)}), not for "
                         f"{system.name!r} ({tuple(system.analytic.event_shape)})")
    return flow.to(dtype)


def importance_samples(flow: EquivariantFlow, target, n: int, generator: torch.Generator,
                       batch_size: int = 500, progress: bool | None = None) -> Samples:
    """``n`` flow draws with their exact log-densities ``log_q``, reduced energies and normalised log-weights
    -u - log q. Draws with a non-finite position, log-density or energy (NaN, overflow) are dropped and counted in
    ``info["dropped"]``; u = +inf stays, with weight 0. ``info`` has the Kish ESS (count and % of the draws
    kept), ``log_Z`` (log mean weight over all ``n`` draws, dropped ones counting as 0: the estimate of
    log of the target's normalising constant), and the flow's field evaluations."""
    from tqdm import tqdm

    from molsamp.analysis import kish_ess

    start, evaluations = time.perf_counter(), flow.n_evaluations
    xs, log_qs, us = [], [], []
    show = sys.stderr.isatty() if progress is None else progress
    with tqdm(total=n, disable=not show, unit="sample", desc="flow samples") as bar:
        for first in range(0, n, batch_size):
            with torch.no_grad():
                x, log_q = flow.sample_and_log_prob(min(batch_size, n - first), generator)
                u = target.energy(x).double()
            xs.append(x), log_qs.append(log_q.double()), us.append(u)
            bar.update(len(x))
    x, log_q, u = torch.cat(xs), torch.cat(log_qs), torch.cat(us)
    keep = finite_rows(x, log_q) & ~torch.isnan(u) & ~torch.isneginf(u)
    x, log_q, u = x[keep], log_q[keep], u[keep]
    log_w = -u - log_q
    ess = kish_ess(log_w) if torch.isfinite(log_w).any() else 0.0
    info = {"sampler": "equivariant flow, importance weights", "draws": n, "dropped": int((~keep).sum()),
            "ess": ess, "ess_percent": 100.0 * ess / max(len(x), 1),
            "log_Z": float(torch.logsumexp(log_w, 0) - math.log(n)),
            "flow_evaluations": flow.n_evaluations - evaluations, "energy_evaluations": n,
            "seconds": time.perf_counter() - start}
    return Samples(x, u, log_w - torch.logsumexp(log_w, 0), log_q=log_q, info=info)


def sample(system: System, n: int, model: str | os.PathLike | None = None, seed: int = 0, batch_size: int = 500,
           progress: bool | None = None) -> Samples:
    """``n`` independent samples of ``system`` from its trained flow (default: the shipped one), weighted to the
    Boltzmann distribution exactly (see :func:`importance_samples`); positions centred, in the system's units."""
    _check_particle_system(system)
    flow = load_flow(model or default_model(system), system)
    samples = importance_samples(flow, system.target(), n, torch.Generator().manual_seed(seed), batch_size, progress)
    samples.info.update(seed=seed, model=str(model or default_model(system)))
    return samples
