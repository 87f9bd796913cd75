"""A Boltzmann generator for a particle system or a small molecule: reference data from the project's MCMC (or MD),
an equivariant flow trained on it by flow matching (or, for a molecule, a flow in internal coordinates trained by
maximum likelihood), saved with its card, and independent samples with exact log-densities and importance weights
log w = -u(x) - log q(x).

Particle systems (dw4, lj13, lj55) are sampled under their energy. A molecule (an OpenMM system such as
``ala2-vacuum``) is sampled under its force field with every bond term, restricted to its own stereoisomer
(:class:`~molsamp.flows.molecule.StereoisomerTarget`); an equivariant flow's draws are folded onto that
stereoisomer (:class:`~molsamp.flows.molecule.Handedness`), which keeps their log-densities exact."""

from __future__ import annotations

__all__ = ["flow_target", "handedness", "mirror_fold", "check_architecture", "reference_samples",
           "trajectory_samples", "train_flow", "save_flow", "load_flow", "default_model", "importance_samples",
           "refine_smc", "sample"]

import math
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from molsamp.errors import InputError
from molsamp.flows.cnf import EquivariantFlow, centred
from molsamp.flows.internal import InternalCoordinateFlow, ZMatrix, standardisation, train_internal_flow
from molsamp.flows.molecule import Handedness, StereoisomerTarget, atom_classes
from molsamp.flows.references import mcmc_samples
from molsamp.samples import Samples

if TYPE_CHECKING:
    from molsamp.distributions import Distribution
    from molsamp.systems import System

KIND = "equivariant-flow"
INTERNAL_KIND = "internal-coordinate-flow"
ARCHITECTURES = ("equivariant", "internal")


MOLECULE_LENGTH_UNIT = 0.1
"""nm: a molecule's flow feeds its network positions in Angstrom (:class:`~molsamp.flows.egnn.EGNNField`)."""

MOLECULE_STEP = 0.002
"""nm: the first random-walk step of SMC for a molecule, of the order of a bond length's thermal fluctuation."""


def _event_shape(system: System) -> tuple[int, int]:
    return tuple(system.analytic.event_shape) if system.analytic is not None else (system.n_atoms, 3)


def handedness(system: System) -> Handedness | None:
    """The stereocentres of a molecule's reference structure (None for a particle system)."""
    return None if system.analytic is not None else Handedness(system.topology, system.positions)


def mirror_fold(flow: EquivariantFlow | InternalCoordinateFlow, system: System) -> Handedness | None:
    """What an E(3)-equivariant flow's draws of a molecule are folded by (it puts equal mass on both mirror
    images); None for a particle system and for an internal-coordinate flow (its torsions carry the handedness)."""
    return handedness(system) if isinstance(flow, EquivariantFlow) else None


def flow_target(system: System):
    """The Boltzmann target of ``system``'s flow: a particle system's energy, or a molecule's force field (every bond
    term, kT units) restricted to its own stereoisomer."""
    if system.analytic is not None:
        return system.analytic
    return StereoisomerTarget(system.target(), handedness(system))


def reference_samples(system: System, n_chains: int = 1000, n_samples: int = 10, burn_in: int = 5000,
                      thin: int = 50, seed: int = 0) -> Samples:
    """Equilibrium samples of a particle system by parallel random-walk MH (:func:`~molsamp.flows.references.
    mcmc_samples`) started from the system's lattice positions, the step tuned during burn-in; deterministic for
    a seed. ``info["js_halves"]`` is the convergence check. Molecules take MD instead (:func:`trajectory_samples`)."""
    if system.analytic is None:
        raise InputError(f"{system.name!r} is a molecule: its training data are MD frames (for ala2-vacuum: python "
                         "data/flows/make_md.py), passed with --data")
    return mcmc_samples(system.target(), torch.as_tensor(system.positions), n_chains=n_chains, n_samples=n_samples,
                        burn_in=burn_in, thin=thin, seed=seed)


def trajectory_samples(system: System, path: str | os.PathLike) -> Samples:
    """The frames of an MD trajectory of the molecule ``system`` (``.h5``, or ``.dcd`` with the system's topology),
    centred, with their reduced energies under :func:`flow_target` (so frames of the other stereoisomer get +inf)."""
    from molsamp.trajectories import load_trajectory

    if system.analytic is not None:
        raise InputError(f"{system.name!r} is a particle system: its data come from reference_samples")
    traj, _ = load_trajectory(path, system)
    if traj.n_atoms != system.n_atoms:
        raise InputError(f"{path}: {traj.n_atoms} atoms, {system.name!r} has {system.n_atoms}")
    x = centred(torch.as_tensor(traj.xyz, dtype=torch.float64))
    u = flow_target(system).energy(x)
    return Samples.unweighted(x, u, info={"sampler": "MD", "trajectory": str(path), "frames": len(x)})


def finite_rows(x: torch.Tensor, *values: torch.Tensor) -> torch.Tensor:
    """Mask ``[B]`` of the rows where ``x: [B, ...]`` and every ``[B]`` tensor in ``values`` are finite."""
    mask = torch.isfinite(x.flatten(1)).all(1)
    for value in values:
        mask &= torch.isfinite(value)
    return mask


def check_architecture(system: System, architecture: str, energy_steps: int = 0) -> None:
    """:class:`InputError` unless a flow of ``architecture`` (see :func:`train_flow`) with ``energy_steps`` can be
    trained for ``system``: internal coordinates are for molecules, and only they have energy steps."""
    if architecture not in ARCHITECTURES:
        raise InputError(f"unknown flow architecture {architecture!r}; there are: {', '.join(ARCHITECTURES)}")
    if architecture == "internal" and system.analytic is not None:
        raise InputError(f"{system.name!r} is a particle system: internal coordinates are for molecules")
    if energy_steps and architecture != "internal":
        raise InputError("energy steps (reverse KL) are for flows in internal coordinates (--architecture internal)")


def train_flow(system: System, data: Samples, steps: int = 4000, batch_size: int = 256, hidden: int | None = None,
               layers: int | None = None, learning_rate: float = 1e-3, seed: int = 0, progress: bool | None = None,
               log: Callable[[dict], None] | None = None,
               init: EquivariantFlow | InternalCoordinateFlow | None = None, architecture: str = "equivariant",
               energy_steps: int = 0, average: float | None = None) -> EquivariantFlow | InternalCoordinateFlow:
    """A flow for ``system`` fitted to ``data`` (float32 weights): with ``architecture="equivariant"`` an
    :class:`EquivariantFlow` (EGNN of ``hidden`` = 64 channels, ``layers`` = 4) by equivariant flow matching, its
    prior's scale the root-mean-square centred coordinate of the data; with ``"internal"`` (molecules) an
    :class:`~molsamp.flows.internal.InternalCoordinateFlow` (``layers`` = 8 couplings of ``hidden`` = 128),
    standardised by the data, by ``steps`` of maximum likelihood and then ``energy_steps`` of maximum likelihood plus
    the reverse KL to the molecule's force field (:func:`~molsamp.flows.internal.train_internal_flow`).

    Rows of ``data`` with a non-finite position or energy are dropped and counted (``log`` gets
    ``{"dropped": k}``). With ``init`` (a flow for ``system``, e.g. from :func:`load_flow`) training continues from
    it, with its architecture; ``hidden``, ``layers`` and ``architecture`` are then unused. With ``average`` (a
    decay, e.g. 0.999) the flow returned holds an exponential moving average of the weights over training."""
    from molsamp.flows.matching import train_flow_matching

    if init is not None:
        architecture = "internal" if isinstance(init, InternalCoordinateFlow) else "equivariant"
    check_architecture(system, architecture, energy_steps)
    internal = architecture == "internal"
    keep = finite_rows(data.x, data.u)
    x = data.x[keep].float()
    if log is not None:
        log({"data": len(data), "dropped": int((~keep).sum())})
    if len(x) < batch_size:
        raise InputError(f"{len(x)} finite training samples, fewer than one batch of {batch_size}")
    torch.manual_seed(seed)
    if internal:
        if init is None:
            zmatrix = ZMatrix.from_topology(system.topology)
            init = InternalCoordinateFlow(zmatrix, *standardisation(zmatrix, x), layers=layers or 8,
                                          hidden=hidden or 128, seed=seed)
        flow = init.float()
        train_internal_flow(flow, x, steps=steps, batch_size=batch_size, learning_rate=learning_rate, seed=seed,
                            target=system.target() if energy_steps else None, energy_steps=energy_steps,
                            progress=progress, log=log, average=average)
        return flow
    n, dim = _event_shape(system)
    scale = float((x - x.mean(1, keepdim=True)).pow(2).mean().sqrt())
    molecule = {} if system.analytic is not None else {"atom_types": atom_classes(system.topology),
                                                       "length_unit": MOLECULE_LENGTH_UNIT}
    flow = (EquivariantFlow(n, dim, hidden=hidden or 64, layers=layers or 4, prior_scale=scale, **molecule)
            if init is None else init.float())
    train_flow_matching(flow, x, steps=steps, batch_size=batch_size, learning_rate=learning_rate, seed=seed,
                        progress=progress, log=log, average=average)
    return flow


def save_flow(flow: EquivariantFlow | InternalCoordinateFlow, path: str | os.PathLike, system: System,
              **card: Any) -> Path:
    """Write ``flow`` for ``system`` with its model card (data, command, training time, measured ESS)."""
    from molsamp.checkpoints import save_checkpoint

    kind = INTERNAL_KIND if isinstance(flow, InternalCoordinateFlow) else KIND
    return save_checkpoint(flow, path, kind, system=system.name, **card)


def default_model(system: System) -> Path:
    """The shipped checkpoint of ``system`` (``models/<name>-flow.pt``)."""
    from molsamp.shipped import MODELS_DIR

    return MODELS_DIR / f"{system.name}-flow.pt"


def load_flow(path: str | os.PathLike, system: System, dtype: torch.dtype = torch.float64,
              device: torch.device | str | None = None) -> EquivariantFlow | InternalCoordinateFlow:
    """The flow at ``path`` (equivariant or internal-coordinate), checked to be trained for ``system``; in
    ``dtype`` (float64 by default, so that the log-densities of the weights keep their digits; an internal-coordinate
    flow always in float64, which costs little without an ODE solver). :class:`InputError` if it is missing or for
    another system."""
    from molsamp.checkpoints import checkpoint_kind, load_checkpoint

    if not Path(path).is_file() and Path(path) == default_model(system):
        raise InputError(f"no shipped flow for {system.name!r}; train one with 'molsamp train flow {system.name} "
                         f"-o {system.name}-flow.pt' and pass --model")
    if checkpoint_kind(path) == INTERNAL_KIND:
        flow = load_checkpoint(path, INTERNAL_KIND, InternalCoordinateFlow, device)
    else:
        flow = load_checkpoint(path, KIND, EquivariantFlow, device)
    trained_for = flow.metadata.get("system")
    if trained_for != system.name or tuple(flow.event_shape) != _event_shape(system):
        raise InputError(f"{path}: a flow for {trained_for!r} ({tuple(flow.event_shape)}), not for "
                         f"{system.name!r} ({_event_shape(system)})")
    return flow.to(torch.float64 if isinstance(flow, InternalCoordinateFlow) else dtype)


def importance_samples(flow: Distribution, target, n: int, generator: torch.Generator,
                       batch_size: int = 500, progress: bool | None = None,
                       fold: Handedness | None = None) -> Samples:
    """``n`` draws of a flow (any :class:`~molsamp.distributions.Distribution`) with their exact log-densities
    ``log_q``, reduced energies and normalised log-weights -u - log q; for a molecule, folded onto its stereoisomer
    by ``fold`` (:func:`handedness`). Draws with a non-finite position, log-density or energy (NaN, overflow) are
    dropped and counted in ``info["dropped"]``; u = +inf stays, with weight 0. ``info`` has the Kish ESS (count and
    % of the draws kept), ``log_Z`` (log mean weight over all ``n`` draws, dropped ones counting as 0: the estimate
    of log of the target's normalising constant) with its delta-method standard error ``log_Z_error`` (sqrt of
    (n / ESS - 1) / n over the kept draws), and the field evaluations of an equivariant flow."""
    from tqdm import tqdm

    from molsamp.analysis import kish_ess

    start, evaluations = time.perf_counter(), getattr(flow, "n_evaluations", None)
    xs, log_qs, us = [], [], []
    show = sys.stderr.isatty() if progress is None else progress
    with tqdm(total=n, disable=not show, unit="sample", desc="flow samples") as bar:
        for first in range(0, n, batch_size):
            with torch.no_grad():
                x, log_q = flow.sample_and_log_prob(min(batch_size, n - first), generator)
                if fold is not None:
                    x, log_q = fold.fold(x, log_q)
                x = x.double()
                u = target.energy(x).double()
            xs.append(x), log_qs.append(log_q.double()), us.append(u)
            bar.update(len(x))
    x, log_q, u = torch.cat(xs), torch.cat(log_qs), torch.cat(us)
    keep = finite_rows(x, log_q) & ~torch.isnan(u) & ~torch.isneginf(u)
    x, log_q, u = x[keep], log_q[keep], u[keep]
    log_w = -u - log_q
    ess = kish_ess(log_w) if torch.isfinite(log_w).any() else 0.0
    info = {"sampler": "flow, importance weights", "draws": n, "dropped": int((~keep).sum()),
            "ess": ess, "ess_percent": 100.0 * ess / max(len(x), 1),
            "log_Z": float(torch.logsumexp(log_w, 0) - math.log(n)),
            "log_Z_error": math.sqrt(max(len(x) / ess - 1, 0.0) / len(x)) if ess > 0 else math.inf,
            "flow_evaluations": None if evaluations is None else flow.n_evaluations - evaluations,
            "energy_evaluations": n, "seconds": time.perf_counter() - start}
    return Samples(x, u, log_w - torch.logsumexp(log_w, 0), log_q=log_q, info=info)


class FixedStepDensity:
    """A flow's log-density by ``steps`` fixed RK4 steps (:meth:`EquivariantFlow.log_prob`): a deterministic,
    differentiable function of each configuration alone, the beta = 0 end of an SMC path. It differs from the
    exact density of the flow's samples by the solver's error; the initial SMC weights log q_rk4 - log q correct
    for exactly that, so the error costs ESS, never exactness."""

    def __init__(self, flow: EquivariantFlow, steps: int) -> None:
        self.flow, self.steps, self.event_shape = flow, steps, flow.event_shape

    def log_prob(self, x: torch.Tensor, context: None = None) -> torch.Tensor:
        return self.flow.log_prob(x.to(next(self.flow.parameters())), steps=self.steps).double()


class CentredRandomWalk:
    """The symmetric proposal x' = x + scale * centred N(0, I) over ``[B, N, D]``: a random walk within the
    centred configurations, where the flow lives (log ratio 0)."""

    def __init__(self, scale: float) -> None:
        self.scale = scale

    def propose(self, x: torch.Tensor, generator: torch.Generator | None = None
                ) -> tuple[torch.Tensor, torch.Tensor]:
        noise = torch.randn(x.shape, generator=generator, dtype=x.dtype, device=x.device)
        return x + self.scale * centred(noise), torch.zeros(len(x), dtype=x.dtype, device=x.device)


def refine_smc(flow: EquivariantFlow | InternalCoordinateFlow, target, draws: Samples, n_betas: int = 5,
               n_steps: int = 2, step: float | None = None, solver_steps: int = 20, batch_size: int = 500,
               generator: torch.Generator | None = None, progress: bool | None = None) -> Samples:
    """Flow draws carried to the target by annealed SMC (:func:`~molsamp.samplers.annealed_smc`) along
    q_rk4^(1 - beta) exp(-beta u) (an equivariant flow; q itself for a flow in internal coordinates, whose density
    is one exact pass), ``n_betas`` equal steps in beta, each with ``n_steps`` random-walk Metropolis-Hastings moves
    of all particles (:class:`CentredRandomWalk`; ``step`` in the system's length unit, default 5% of an equivariant
    flow's prior scale or :data:`MOLECULE_STEP` for a molecule in internal coordinates, tuned towards 30% acceptance
    between betas), resampling below half the ESS.

    The kernels need the flow's density at every proposal but not its gradient: gradient kernels (MALA, HMC) would
    differentiate through the solver and the exact divergence, which does not fit in memory on a CPU.

    ``draws`` are the flow's own samples with their exact log-densities (:func:`importance_samples`); an
    equivariant flow's start with weights q_rk4 / q (:class:`FixedStepDensity`). Particles are refined in independent
    batches of ``batch_size`` (memory), and the batches combined by their normalising-constant estimates, so the
    weighted result is consistent for exp(-u). Kish's ESS counts weight degeneracy only; resampled particles are copies,
    so ``info["distinct"]`` counts the distinct configurations. ``info`` also has ``log_Z`` (draws dropped by
    :func:`importance_samples` count as weight 0), energy evaluations (the draws', one per proposal, and one per
    particle and beta), the flow's field evaluations, acceptance and time.
    """
    from tqdm import tqdm

    from molsamp.analysis import kish_ess
    from molsamp.kernels import MetropolisHastings
    from molsamp.samplers import annealed_smc

    if draws.log_q is None:
        raise ValueError("refine_smc needs the flow's log-densities of the draws (draws.log_q)")
    start, evaluations = time.perf_counter(), getattr(flow, "n_evaluations", None)
    equivariant = isinstance(flow, EquivariantFlow)
    density = FixedStepDensity(flow, solver_steps) if equivariant else flow
    betas = [(k + 1) / n_betas for k in range(n_betas)]
    if step is None:
        step = 0.05 * flow.config["prior_scale"] if equivariant else MOLECULE_STEP
    tuning = {"step": step, "kernels": []}

    def kernel(path):
        if tuning["kernels"]:
            tuning["step"] *= math.exp(2 * (tuning["kernels"][-1].acceptance - 0.3))
        move = MetropolisHastings(CentredRandomWalk(tuning["step"]), path, n_steps)
        tuning["kernels"].append(move)
        return move

    parts = []
    show = sys.stderr.isatty() if progress is None else progress
    for first in tqdm(range(0, len(draws), batch_size), disable=not show, unit="batch", desc="SMC"):
        x, u, log_q = (t[first:first + batch_size] for t in (draws.x, draws.u, draws.log_q))
        with torch.no_grad():
            log_w = density.log_prob(x) - log_q
        part = annealed_smc(x, density, target, kernel, betas, log_q=log_q + log_w, u=u, log_w=log_w,
                            recompute="energy", generator=generator)
        parts.append((part, part.info["log_Z"] + math.log(len(x))))
    log_w = torch.cat([p.log_weights + log_mass for p, log_mass in parts])
    log_total = torch.logsumexp(torch.tensor([log_mass for _, log_mass in parts]), 0)
    parts = [p for p, _ in parts]
    x = torch.cat([p.x for p in parts])
    draws_made, kernels = draws.info.get("draws", len(draws)), tuning["kernels"]
    offered = sum(k.offered for k in kernels)
    ess = kish_ess(log_w)
    info = {"sampler": "flow, annealed SMC (random-walk MH)", "draws": draws_made,
            "dropped": draws.info.get("dropped", 0), "ess": ess, "ess_percent": 100.0 * ess / len(log_w),
            "distinct": len(torch.unique(x.flatten(1), dim=0)), "log_Z": float(log_total) - math.log(draws_made),
            "betas": n_betas, "n_steps": n_steps, "solver_steps": solver_steps if equivariant else None,
            "step": tuning["step"], "acceptance": sum(k.accepted for k in kernels) / max(offered, 1),
            "energy_evaluations": draws_made + offered + len(x) * n_betas,
            "flow_evaluations": None if evaluations is None else
            draws.info.get("flow_evaluations", 0) + flow.n_evaluations - evaluations,
            "seconds": draws.info.get("seconds", 0.0) + time.perf_counter() - start}
    return Samples(x, torch.cat([p.u for p in parts]), log_w - torch.logsumexp(log_w, 0), info=info)


def sample(system: System, n: int, model: str | os.PathLike | None = None, refine: str | None = None,
           seed: int = 0, batch_size: int = 500, progress: bool | None = None, smc_betas: int = 5,
           smc_moves: int = 2, dtype: torch.dtype = torch.float32) -> Samples:
    """``n`` independent samples of ``system`` from its trained flow (default: the shipped one), weighted to the
    Boltzmann distribution exactly (see :func:`importance_samples`); with ``refine="smc"`` (particle systems) then
    carried to the target by annealed SMC (:func:`refine_smc` with ``smc_betas`` betas and ``smc_moves`` moves per
    beta). Positions centred, in the system's units.

    The flow is integrated in ``dtype``: float32 by default, 2 to 3 times faster than float64 on a CPU, its rounding
    error in log q being far below the solver's (docs/flows.md)."""
    if refine not in (None, "smc"):
        raise InputError(f"unknown refinement {refine!r}; the one there is: 'smc'")
    flow = load_flow(model or default_model(system), system, dtype=dtype)
    if refine == "smc" and system.analytic is None and isinstance(flow, EquivariantFlow):
        raise InputError(f"SMC refinement of an equivariant flow is for particle systems; for the molecule "
                         f"{system.name!r} each move would need a solve of the flow with the exact divergence of "
                         "every coordinate (a flow in internal coordinates can be refined)")
    target = flow_target(system)
    generator = torch.Generator().manual_seed(seed)
    samples = importance_samples(flow, target, n, generator, batch_size, progress, fold=mirror_fold(flow, system))
    if refine == "smc":
        samples = refine_smc(flow, target, samples, n_betas=smc_betas, n_steps=smc_moves,
                             batch_size=batch_size, generator=generator, progress=progress)
    samples.info.update(seed=seed, model=str(model or default_model(system)))
    return samples
