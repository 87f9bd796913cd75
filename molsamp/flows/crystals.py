"""Crystal flows for periodic systems of rigid waters (``ice-xi-16``, ``ice-xi-128``): the rigid-body target, the
lattice chart of the system's crystal, a quasi-harmonic prior from MD, training by reverse KL on the energy, and
checkpoints with their model cards."""

from __future__ import annotations

__all__ = ["is_crystal", "crystal_target", "lattice_chart", "crystal_md_states", "harmonic_covariance", "PRIORS",
           "initial_flow", "train_crystal_flow", "train_crystal_system", "save_crystal_flow", "load_crystal_flow",
           "default_crystal_model", "crystal_samples", "learned_free_energy", "MDLadder", "load_md_ladder",
           "CRYSTAL_KIND"]

import dataclasses
import math
import os
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from molsamp.errors import InputError
from molsamp.flows.crystal import CrystalFlow, LatticeChart
from molsamp.flows.rigid_bodies import RigidBodies, RigidBodyTarget, water_body
from molsamp.samples import Samples
from molsamp.systems import System

CRYSTAL_KIND = "crystal-flow"
"""The checkpoint kind of :class:`~molsamp.flows.crystal.CrystalFlow`."""


def is_crystal(system: System) -> bool:
    """Whether ``system`` is periodic rigid water, the systems crystal flows sample."""
    if system.box is None:
        return False
    try:
        water_body(system.openmm_system)
    except InputError:
        return False
    return True


def _check_crystal(system: System) -> None:
    if not is_crystal(system):
        raise InputError(f"system {system.name!r} is not a periodic crystal of rigid waters (as ice-xi-16)")
    box = system.box
    if not np.allclose(box, np.diag(np.diagonal(box))):
        raise InputError(f"system {system.name!r}: crystal flows need an orthorhombic box, got {box.tolist()}")


def crystal_target(system: System, temperature: float | None = None, **options: Any) -> RigidBodyTarget:
    """The reduced energy of ``system``'s rigid-body states ``[B, M, 7]`` at ``temperature`` (K; default the
    system's); ``options`` go to :class:`~molsamp.targets.OpenMMTarget` (n_workers, platform)."""
    _check_crystal(system)
    if temperature is not None:
        system = dataclasses.replace(system, temperature=float(temperature))
    return RigidBodyTarget(system.target(**options), RigidBodies(water_body(system.openmm_system)))


def lattice_chart(system: System) -> LatticeChart:
    """The chart around ``system``'s crystal (its structure's positions, fitted by rigid waters), translation
    invariant (the energy is periodic)."""
    _check_crystal(system)
    bodies = RigidBodies(water_body(system.openmm_system))
    sites, orientations = bodies.bodies(torch.as_tensor(system.positions, dtype=torch.float64)[None])
    return LatticeChart(sites[0], orientations[0], torch.tensor(np.diagonal(system.box)), translation_invariant=True)


def crystal_md_states(system: System, temperature: float, picoseconds: float = 100.0, every: float = 0.2,
                      equilibration: float = 20.0, seed: int = 0) -> torch.Tensor:
    """Rigid-body states ``[F, M, 7]`` of a short MD of ``system`` at ``temperature`` (K): ``equilibration`` ps
    discarded, then a frame every ``every`` ps for ``picoseconds`` ps (OpenMM CPU, one thread, seeded)."""
    from molsamp.md import run_md
    from molsamp.trajectories import load_trajectory

    _check_crystal(system)
    hot = dataclasses.replace(system, temperature=float(temperature))
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "md.h5"
        run_md(hot, path, duration=equilibration + picoseconds, save_every=every, seed=seed, platform="CPU",
               progress=False, checkpoint_every=10**6)
        trajectory, _ = load_trajectory(path)
    frames = torch.as_tensor(trajectory.xyz[int(round(equilibration / every)):], dtype=torch.float64)
    centres, q = RigidBodies(water_body(system.openmm_system)).bodies(frames)
    return torch.cat([centres, q], -1)


@dataclasses.dataclass
class MDLadder:
    """MD of a crystal on a ladder of temperatures (``data/ice/make_md.py``).

    Attributes:
        temperatures: ``[K]`` (K), from the highest down.
        energies: per temperature, the potential energies (kJ/mol) of its runs' production frames ``[runs, frames]``
            (the input of :func:`~molsamp.free_energy.mbar.temperature_mbar`).
        states: rigid-body states ``[S, M, 7]`` (unit quaternions) kept at some temperatures, keyed by temperature.
    """

    temperatures: np.ndarray
    energies: list[np.ndarray]
    states: dict[float, torch.Tensor]

    def states_at(self, temperature: float) -> torch.Tensor:
        """The kept states at ``temperature`` K; an InputError names the temperatures that have some."""
        for kept, states in self.states.items():
            if math.isclose(kept, temperature):
                return states
        raise InputError(f"the MD ladder keeps no states at {temperature:g} K (it keeps them at "
                         f"{sorted(self.states)} K)")


def load_md_ladder(folder: str | os.PathLike) -> MDLadder:
    """The MD ladder in ``folder``: one ``<T>K-seed<s>.npz`` per run, holding ``temperature`` (K), ``seed``,
    ``energies`` ``[frames]`` (kJ/mol) and optionally ``state`` ``[S, M, 7]`` (float32). Runs at one temperature
    must have as many frames."""
    runs: dict[float, list[np.ndarray]] = {}
    paths = sorted(Path(folder).glob("*K-seed*.npz"))
    if not paths:
        raise InputError(f"{folder}: no MD runs (<T>K-seed<s>.npz) in it")
    energies, states = {}, {}
    for path in paths:
        with np.load(path) as run:
            temperature = float(run["temperature"])
            runs.setdefault(temperature, []).append(run["energies"])
            if "state" in run.files:
                states.setdefault(temperature, []).append(run["state"])
    temperatures = np.array(sorted(runs, reverse=True))
    for temperature in temperatures:
        lengths = {len(e) for e in runs[temperature]}
        if len(lengths) > 1:
            raise InputError(f"{folder}: the runs at {temperature:g} K have different lengths {sorted(lengths)}")
        energies[temperature] = np.stack(runs[temperature])
    kept = {}
    for temperature, parts in states.items():
        state = torch.as_tensor(np.concatenate(parts), dtype=torch.float64)
        state[..., 3:] /= state[..., 3:].norm(dim=-1, keepdim=True)  # stored in float32
        kept[temperature] = state
    return MDLadder(temperatures, [energies[t] for t in temperatures], kept)


HESSIAN_STEP = 1e-3
"""Central-difference step of :func:`harmonic_covariance` in the chart's units (nm, radians): at 1e-4 the
single-precision forces of OpenMM's CPU platform and the jumps of PME's real-space cutoff make the Hessian of
ice-xi-128 indefinite; at 1e-3 it is symmetric to about 1%."""


def harmonic_covariance(target: RigidBodyTarget, chart: LatticeChart, step: float = HESSIAN_STEP,
                        batch_size: int = 256) -> torch.Tensor:
    """The covariance ``[D, D]`` of the crystal's harmonic approximation in ``chart``'s local coordinates: the
    inverse Hessian of e(y) = u(state(y)) - log|d state / d y| (the negative log-density of y, kT) at its minimum
    next to the lattice (L-BFGS from y = 0), by central differences of e's exact gradients, symmetrised. Free of
    sampling noise, unlike an MD covariance; it misses the anharmonicity. :class:`InputError` if it is not positive
    definite (no minimum next to the lattice)."""
    from molsamp.kernels import energy_and_gradient

    def energy(y: torch.Tensor) -> torch.Tensor:
        state, log_jacobian = chart.state(y)
        return target.energy(state) - log_jacobian

    y = torch.zeros(1, chart.dim, dtype=torch.float64, requires_grad=True)
    optimiser = torch.optim.LBFGS([y], max_iter=1500, history_size=50, tolerance_change=1e-12,
                                  line_search_fn="strong_wolfe")

    def closure() -> torch.Tensor:
        optimiser.zero_grad()
        value = energy(y).sum()
        value.backward()
        return value

    optimiser.step(closure)
    shifts = step * torch.eye(chart.dim, dtype=torch.float64)
    points = torch.cat([y.detach() + shifts, y.detach() - shifts])
    gradients = torch.cat([energy_and_gradient(energy, points[first:first + batch_size])[1]
                           for first in range(0, len(points), batch_size)])
    hessian = (gradients[:chart.dim] - gradients[chart.dim:]) / (2 * step)
    cholesky, info = torch.linalg.cholesky_ex(0.5 * (hessian + hessian.T))
    if int(info):
        raise InputError("the crystal's Hessian at its minimum next to the lattice is not positive definite; fit the "
                         "prior to MD alone (prior='md')")
    return torch.cholesky_inverse(cholesky)


PRIORS = ("harmonic", "md")
"""Priors of a crystal flow: ``"harmonic"``, the MD frames' mean with the harmonic covariance mixed with theirs
(:func:`harmonic_covariance`, :meth:`CrystalFlow.fit`); ``"md"``, the frames' mean and covariance alone."""


def initial_flow(system: System, states: torch.Tensor, temperature: float, prior: str = "harmonic",
                 **options: Any) -> CrystalFlow:
    """A flow for ``system`` at ``temperature`` (K) whose prior is fitted to ``states`` (MD frames at that
    temperature) as ``prior`` says (:data:`PRIORS`); ``options`` go to :meth:`CrystalFlow.fit` (layers, hidden,
    bins, bound, shrinkage, harmonic_weight, conditioner, float32_conditioner, split)."""
    chart = lattice_chart(system)
    if prior not in PRIORS:
        raise InputError(f"unknown crystal prior {prior!r}; use one of {', '.join(PRIORS)}")
    if prior == "harmonic":
        with crystal_target(system, temperature) as target:
            options["harmonic"] = harmonic_covariance(target, chart)
    return CrystalFlow.fit(chart, states, **options)


def _learning_rate(step: int, steps: int, first: float, last: float) -> float:
    """Exponential decay from ``first`` to ``last`` over ``steps``."""
    return first * (last / first) ** (step / max(steps - 1, 1))


def train_crystal_flow(flow: CrystalFlow, target: RigidBodyTarget, steps: int = 2000, batch_size: int = 32,
                       learning_rate: float = 1e-3, final_learning_rate: float = 1e-5, seed: int = 0,
                       progress: bool | None = None, log: Callable[[dict], None] | None = None,
                       log_every: int = 50) -> CrystalFlow:
    """Train ``flow`` in place by reverse KL, the mean of u(x) + log q(x) over its own draws (Adam, the learning rate
    decaying exponentially). Draws whose energy is not finite are left out of a step's loss and counted in the log
    (``{"step", "loss", "dropped", "seconds"}`` every ``log_every`` steps)."""
    from tqdm import tqdm

    generator = torch.Generator(device=flow.mean.device).manual_seed(seed)
    optimiser = torch.optim.Adam(flow.parameters(), lr=learning_rate)
    show = sys.stderr.isatty() if progress is None else progress
    start, losses, dropped = time.perf_counter(), [], 0
    flow.train()
    for step in tqdm(range(steps), disable=not show, unit="step", desc="reverse KL"):
        for group in optimiser.param_groups:
            group["lr"] = _learning_rate(step, steps, learning_rate, final_learning_rate)
        states, log_q = flow.sample_and_log_prob(batch_size, generator)
        u = target.energy(states)
        finite = torch.isfinite(u) & torch.isfinite(log_q)
        dropped += int((~finite).sum())
        if not bool(finite.any()):
            continue
        loss = (u[finite] + log_q[finite]).mean()
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        losses.append(float(loss.detach()))
        if log is not None and (step + 1) % log_every == 0:
            log({"step": step + 1, "loss": float(np.mean(losses[-log_every:])), "dropped": dropped,
                 "seconds": time.perf_counter() - start})
    flow.eval()
    return flow


LARGE_CRYSTAL = 32
"""Molecules above which a crystal flow's couplings condition by attention over molecules (by default)."""


def train_crystal_system(system: System, temperature: float, steps: int = 4000, batch_size: int = 32,
                         hidden: int | None = None, layers: int = 8, learning_rate: float = 1e-3, seed: int = 0,
                         md_picoseconds: float = 100.0, conditioner: str | None = None,
                         float32_conditioner: bool | None = None, split: str = "coordinates", prior: str = "harmonic",
                         init: CrystalFlow | None = None, progress: bool | None = None,
                         log: Callable[[dict], None] | None = None) -> tuple[CrystalFlow, dict[str, Any]]:
    """A crystal flow for ``system`` at ``temperature`` (K) and its model card: a ``prior`` (:data:`PRIORS`) fitted
    to ``md_picoseconds`` ps of the project's MD at that temperature (:func:`crystal_md_states`), then reverse KL on
    the energy (:func:`train_crystal_flow`). The couplings' ``conditioner`` (see :class:`CrystalFlow`) is by
    default ``"mlp"`` (``hidden`` 256) up to :data:`LARGE_CRYSTAL` molecules and ``"attention"`` (``hidden`` 64)
    above; it computes in float32 by default for attention, in float64 for the MLP (as the shipped ice-xi-16 flows
    were trained). ``split`` says how attention couplings split the coordinates (see :class:`CrystalFlow`).

    With ``init`` (a flow from :func:`load_crystal_flow`), that flow trains on in place with its architecture and
    prior, no MD is run, and the card carries its earlier data, prior, training time and energy evaluations."""
    if init is not None:
        return _continue_crystal_training(init, system, temperature, steps, batch_size, learning_rate, seed,
                                          progress, log)
    if conditioner is None:
        conditioner = "mlp" if system.n_atoms // 4 <= LARGE_CRYSTAL else "attention"
    if hidden is None:
        hidden = 256 if conditioner == "mlp" else 64
    if float32_conditioner is None:
        float32_conditioner = conditioner == "attention"
    start = time.perf_counter()
    states = crystal_md_states(system, temperature, picoseconds=md_picoseconds, seed=seed)
    md_seconds = time.perf_counter() - start
    if log is not None:
        log({"md_frames": len(states), "md_picoseconds": md_picoseconds, "seconds": md_seconds})
    torch.manual_seed(seed)
    flow = initial_flow(system, states, temperature, prior, layers=layers, hidden=hidden, seed=seed,
                        conditioner=conditioner, float32_conditioner=float32_conditioner, split=split)
    start = time.perf_counter()
    with crystal_target(system, temperature) as target:
        train_crystal_flow(flow, target, steps=steps, batch_size=batch_size, learning_rate=learning_rate,
                           seed=seed, progress=progress, log=log)
    card = {"data": {"md_frames": len(states), "md_picoseconds": md_picoseconds, "md_seconds": md_seconds},
            "prior": prior,
            "training_seconds": time.perf_counter() - start, "energy_evaluations": steps * batch_size,
            "parameters": sum(p.numel() for p in flow.parameters())}
    return flow, card


def _continue_crystal_training(flow: CrystalFlow, system: System, temperature: float, steps: int, batch_size: int,
                               learning_rate: float, seed: int, progress: bool | None,
                               log: Callable[[dict], None] | None) -> tuple[CrystalFlow, dict[str, Any]]:
    earlier = flow.metadata
    if earlier.get("system") != system.name or not math.isclose(earlier.get("temperature", math.nan), temperature):
        raise InputError(f"the flow to continue is for {earlier.get('system')!r} at {earlier.get('temperature')} K, "
                         f"not {system.name!r} at {temperature:g} K")
    start = time.perf_counter()
    with crystal_target(system, temperature) as target:
        train_crystal_flow(flow, target, steps=steps, batch_size=batch_size, learning_rate=learning_rate, seed=seed,
                           progress=progress, log=log)
    card = {key: earlier[key] for key in ("data", "prior") if key in earlier}
    card.update(training_seconds=earlier.get("training_seconds", 0.0) + time.perf_counter() - start,
                energy_evaluations=earlier.get("energy_evaluations", 0) + steps * batch_size,
                parameters=sum(p.numel() for p in flow.parameters()))
    return flow, card


def save_crystal_flow(flow: CrystalFlow, path: str | os.PathLike, system: System, temperature: float,
                      **card: Any) -> Path:
    """Write ``flow`` for ``system`` at ``temperature`` (K) with its model card, its weights and prior rounded to
    float32 (half the file; the loaded flow computes in float64 with those weights, and its log q is exact for
    them)."""
    import copy

    from molsamp.checkpoints import save_checkpoint

    saved = copy.deepcopy(flow).float()
    saved.config = {**saved.config, "mean": saved.config["mean"].float(),
                    "covariance": saved.config["covariance"].float()}  # the prior's buffers in the state rule on load
    return save_checkpoint(saved, path, CRYSTAL_KIND, system=system.name, temperature=float(temperature), **card)


def load_crystal_flow(path: str | os.PathLike, system: System, temperature: float | None = None) -> CrystalFlow:
    """The crystal flow at ``path``, checked to be for ``system`` (and ``temperature`` K, if given)."""
    from molsamp.checkpoints import load_checkpoint

    flow = load_checkpoint(path, CRYSTAL_KIND, CrystalFlow.from_config)
    card = flow.metadata
    flow = flow.to(torch.float64)
    flow.metadata = card
    if card.get("system") != system.name or tuple(flow.event_shape) != (system.n_atoms // 4, 7):
        raise InputError(f"{path}: a crystal flow for {card.get('system')!r}, not for {system.name!r}")
    if temperature is not None and not math.isclose(card.get("temperature", math.nan), temperature):
        raise InputError(f"{path}: trained at {card.get('temperature')} K, not {temperature} K")
    return flow


def default_crystal_model(system: System, temperature: float) -> Path:
    """The shipped checkpoint of ``system`` at ``temperature`` (``models/<name>-<T>K-flow.pt``)."""
    from molsamp.shipped import MODELS_DIR

    return MODELS_DIR / f"{system.name}-{temperature:g}K-flow.pt"


def _model(system: System, temperature: float, model: str | os.PathLike | None) -> CrystalFlow:
    path = Path(model) if model is not None else default_crystal_model(system, temperature)
    if model is None and not path.is_file():
        raise InputError(f"no shipped crystal flow for {system.name!r} at {temperature:g} K; train one with "
                         f"'molsamp train flow {system.name} --temperature {temperature:g} -o FILE.pt' and pass "
                         "--model")
    return load_crystal_flow(path, system, temperature)


def crystal_samples(system: System, temperature: float, n: int, model: str | os.PathLike | None = None,
                    seed: int = 0, batch_size: int = 1000, progress: bool | None = None) -> Samples:
    """``n`` independent samples of ``system`` at ``temperature`` (K) from its crystal flow (default: the shipped
    one), weighted to the Boltzmann distribution exactly (:func:`~molsamp.flows.generator.importance_samples`).
    ``x`` holds the O, H, H positions (nm) of each water in topology order; the rigid-body states are the
    observable ``"state"``. ``info`` adds the reduced free energy f = -log Z (kT), per molecule, with its error,
    and the temperature."""
    from molsamp.flows.generator import importance_samples

    flow = _model(system, temperature, model)
    with crystal_target(system, temperature) as target, torch.no_grad():
        draws = importance_samples(flow, target, n, torch.Generator().manual_seed(seed), batch_size, progress)
        sites = target.bodies.atoms(draws.x[..., :3], draws.x[..., 3:])
    molecules = flow.chart.n_molecules
    oxygen_and_hydrogens = sites.reshape(len(sites), molecules, -1, 3)[:, :, :3].reshape(len(sites), -1, 3)
    info = {**draws.info, "temperature": float(temperature), "free_energy_kT": -draws.info["log_Z"],
            "free_energy_per_molecule_kT": -draws.info["log_Z"] / molecules,
            "free_energy_error_kT": draws.info["log_Z_error"], "seed": seed,
            "model": str(model or default_crystal_model(system, temperature)), "box_nm": system.box}
    return dataclasses.replace(draws, x=oxygen_and_hydrogens, observables={"state": draws.x}, info=info)


def learned_free_energy(system: System, start: float, end: float, states: torch.Tensor,
                        start_model: str | os.PathLike | None = None, end_model: str | os.PathLike | None = None,
                        batch_size: int = 1000) -> dict[str, Any]:
    """Learned free-energy perturbation (Wirnsberger et al., J. Chem. Phys. 2020) from ``start`` to ``end`` K:
    Boltzmann ``states`` ``[S, M, 7]`` at ``start`` (e.g. MD frames) are mapped to ``end`` through the two crystal
    flows' shared base (z of the ``start`` flow, then the ``end`` flow), M(x), with log|J_M(x)| = log q_start(x) - log
    q_end(M(x)) exact; the work W = u_end(M(x)) - u_start(x) - log|J_M(x)| gives delta f = f(end) - f(start) =
    -log mean exp(-W) (kT), its delta-method error (for independent states) and the ESS of exp(-W)."""
    from molsamp.analysis import kish_ess

    flows = [_model(system, t, m) for t, m in ((start, start_model), (end, end_model))]
    works = []
    with crystal_target(system, start) as hot, crystal_target(system, end) as cold, torch.no_grad():
        for first in range(0, len(states), batch_size):
            batch = torch.as_tensor(states[first:first + batch_size], dtype=torch.float64)
            z, shift, log_q_start = flows[0].inverse(batch)
            mapped, log_q_end = flows[1].transform(z, shift)
            works.append(cold.energy(mapped) - hot.energy(batch) - (log_q_start - log_q_end))
    work = torch.cat(works)
    n = len(work)
    log_mean = float(torch.logsumexp(-work, 0)) - math.log(n)
    ess = kish_ess(-work)
    return {"delta_f_kT": -log_mean, "error_kT": math.sqrt(max(n / ess - 1, 0.0) / n),
            "delta_f_per_molecule_kT": -log_mean / flows[0].chart.n_molecules, "ess_percent": 100 * ess / n,
            "states": n, "mean_work_kT": float(work.mean()), "from_K": float(start), "to_K": float(end)}
