"""Hydration free energies from SMILES: both legs, every window a task, results kept window by window."""

from __future__ import annotations

__all__ = ["hydration_free_energies", "hydration_free_energy", "METHODS", "KJ_PER_KCAL"]

import dataclasses
import hashlib
import io
import json
import os
import sys
import time
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from molsamp.errors import InputError, MolsampError
from molsamp.files import atomic_write
from molsamp.free_energy.alchemy import LambdaSchedule
from molsamp.free_energy.legs import PADDING, Leg, hydration_legs
from molsamp.free_energy.mbar import PoorOverlapWarning, mbar_from_windows
from molsamp.free_energy.windows import Protocol, WindowSamples, equilibrate, sample_window

if TYPE_CHECKING:
    from molsamp.parallel import TaskPool

METHODS = ("mbar",)
_LAYOUT = 2
"""Version of what a saved window means (2: windows at constant pressure); part of the settings' fingerprint."""
KJ_PER_KCAL = 4.184


@dataclasses.dataclass
class _Job:
    """One molecule's calculation: its legs, its folder of finished windows, and its seed."""

    smiles: str
    isomeric_smiles: str
    """The stereoisomer sampled (canonical isomeric SMILES)."""
    folder: Path
    settings: dict[str, Any]
    legs: dict[str, Leg]
    windows: dict[str, dict[int, WindowSamples]]
    equilibration_cost: tuple[int, float] = (0, 0.0)
    """MD steps and wall time (s) of the water box's equilibration."""
    reused_windows: int = 0
    """Windows found finished in ``folder`` when the job was set up (a resumed calculation)."""

    @property
    def seed(self) -> int:
        return self.settings["seed"]

    @property
    def equilibrated_path(self) -> Path:
        return self.folder / "solvent" / "equilibrated.npz"

    def window_path(self, leg: str, state: int) -> Path:
        return self.folder / leg / f"window-{state:03d}.npz"

    def window_seed(self, leg: str, state: int) -> int:
        return self.seed * 100_000 + (0 if leg == "solvent" else 50_000) + state + 1


def hydration_free_energy(smiles: str, **options: Any) -> dict[str, Any]:
    """The hydration free energy of one molecule; see :func:`hydration_free_energies` for the options and record.

    Raises the molecule's :class:`~molsamp.errors.MolsampError` instead of returning an error record.
    """
    return hydration_free_energies([smiles], on_error="raise", **options)[0]


def hydration_free_energies(
    smiles: Sequence[str],
    method: str = "mbar",
    forcefield: str = "gaff2",
    charges: str = "am1bcc",
    schedule: LambdaSchedule = LambdaSchedule(),
    protocol: Protocol = Protocol(),
    padding: float = PADDING,
    seed: int = 0,
    workdir: str | os.PathLike | None = None,
    scheduler: str | None = None,
    n_workers: int | None = None,
    platform: str | None = None,
    cache_dir: str | os.PathLike | None = None,
    progress: bool | None = None,
    on_error: str = "record",
) -> list[dict[str, Any]]:
    """Hydration free energies (kcal/mol) of several molecules by alchemical decoupling, vacuum leg minus solvent leg.

    Every lambda window of every molecule is an independent task, run on the Dask ``scheduler`` if given, else on a
    local pool of ``n_workers`` processes (see :class:`molsamp.parallel.TaskPool`). Each finished window is saved in
    ``workdir`` (default: ``<cache>/solvation/``, one folder per molecule and settings), so a rerun of an
    interrupted calculation only runs the missing windows. A molecule that cannot be set up gets a record with an
    ``error`` and does not stop the others (``on_error="raise"`` raises instead).

    A SMILES with unassigned stereocentres or stereo double bonds is sampled as its first stereoisomer (see
    :func:`molsamp.stereo.resolve_stereo`, which warns); pass an isomeric SMILES to choose another.

    Returns one JSON-ready record per molecule: ``smiles``, ``isomeric_smiles`` (the stereoisomer sampled),
    ``dG_kcal_mol``, ``dG_err_kcal_mol``, method, force field, water model, temperature, lambda schedule, per-leg
    free energies and neighbour overlaps, wall time, the number of windows reused from an earlier run, and the MD
    steps and energy evaluations spent.
    """
    from molsamp.parallel import TaskPool

    if method not in METHODS:
        raise MolsampError(f"method must be one of {list(METHODS)}, got {method!r}")
    if not padding > 0:  # NaN too
        raise InputError(f"padding must be positive, got {padding:g} nm")
    start = time.perf_counter()
    with TaskPool(scheduler, n_workers) as pool:
        jobs, records = _prepare_all(smiles, method, forcefield, charges, schedule, protocol, padding, seed, workdir,
                                     cache_dir, on_error)
        show = sys.stderr.isatty() if progress is None else progress
        _run_equilibrations(pool, [job for job in jobs if job is not None], protocol, platform, show)
        _run_windows(pool, [job for job in jobs if job is not None], schedule, protocol, platform, show)
    elapsed = time.perf_counter() - start
    for i, job in enumerate(jobs):
        if job is not None:
            records[i] = _record(job, protocol, schedule, elapsed / max(len(smiles), 1))
    return records


def _prepare_all(smiles: Sequence[str], method: str, forcefield: str, charges: str, schedule: LambdaSchedule,
                 protocol: Protocol, padding: float, seed: int, workdir: str | os.PathLike | None,
                 cache_dir: str | os.PathLike | None, on_error: str) -> tuple[list[_Job | None], list[dict[str, Any]]]:
    """A job per molecule (None, with an error record, for a molecule that cannot be set up)."""
    from molsamp.files import writable_folder
    from molsamp.forcefields import CACHE_NAME, cache_root

    if workdir is None:
        root = writable_folder(cache_root(cache_dir) / "solvation", CACHE_NAME)
    else:
        root = writable_folder(workdir, "work folder")
    settings = {"layout": _LAYOUT, "method": method, "forcefield": forcefield, "charges": charges,
                "padding_nm": padding, "seed": seed,
                "schedule": schedule.to_dict(), "protocol": dataclasses.asdict(protocol)}
    jobs: list[_Job | None] = []
    records: list[dict[str, Any]] = []
    for molecule_smiles in smiles:
        try:
            jobs.append(_prepare(molecule_smiles, settings, root, cache_dir))
            records.append({})
        except MolsampError as error:
            if on_error == "raise":
                raise
            jobs.append(None)
            records.append({"smiles": molecule_smiles, "error": str(error)})
    return jobs, records


def _run_equilibrations(pool: TaskPool, jobs: list[_Job], protocol: Protocol, platform: str | None,
                        show: bool) -> None:
    """Equilibrate the water boxes not yet equilibrated (saved as they finish); minimise the vacuum legs."""
    from tqdm import tqdm

    todo = [job for job in jobs if not job.equilibrated_path.is_file()]
    tasks = [(job.legs["solvent"], protocol, job.seed, platform) for job in todo]
    for index, (leg, wall_time) in tqdm(pool.run(_timed_equilibrate, tasks), total=len(todo), desc="equilibrating",
                                        unit="box", disable=not show or not todo):
        _save_equilibrated(todo[index].equilibrated_path, leg, wall_time, protocol.steps(protocol.equilibration))
    for job in jobs:
        with np.load(job.equilibrated_path) as data:
            job.legs["solvent"] = dataclasses.replace(job.legs["solvent"], positions=data["positions"],
                                                      box=data["box"])
            job.equilibration_cost = (int(data["md_steps"]), float(data["wall_time"]))
        job.legs["vacuum"] = equilibrate(job.legs["vacuum"], protocol, job.seed, platform)


def _timed_equilibrate(leg: Leg, *args: Any) -> tuple[Leg, float]:
    """:func:`equilibrate` and its wall time (s)."""
    start = time.perf_counter()
    return equilibrate(leg, *args), time.perf_counter() - start


def _run_windows(pool: TaskPool, jobs: list[_Job], schedule: LambdaSchedule, protocol: Protocol,
                 platform: str | None, show: bool) -> None:
    """Sample every missing window of every job, saving each as it finishes."""
    from tqdm import tqdm

    pending = [(job, leg, state) for job in jobs for leg in ("solvent", "vacuum") for state in range(len(schedule))
               if state not in job.windows[leg]]
    tasks = [(job.legs[leg], schedule, state, protocol, job.window_seed(leg, state), platform)
             for job, leg, state in pending]
    for index, window in tqdm(pool.run(sample_window, tasks), total=len(pending), desc="lambda windows",
                              unit="window", disable=not show or not pending):
        job, leg, state = pending[index]
        _save_window(job.window_path(leg, state), window)
        job.windows[leg][state] = window


def _prepare(smiles: str, settings: dict[str, Any], root: Path, cache_dir: str | os.PathLike | None) -> _Job:
    """The job of one molecule: its stereoisomer, parameters and legs, and the windows already in its folder (named
    by the InChIKey and a hash of the settings and of the parametrisation recipe)."""
    from molsamp.files import writable_folder
    from molsamp.forcefields import parametrize
    from molsamp.stereo import resolve_stereo

    isomeric = resolve_stereo(smiles, "first")
    parameters = parametrize(isomeric, forcefield=settings["forcefield"], cache_dir=cache_dir,
                             charges=settings["charges"])
    fingerprint = {**settings, "parameters": parameters.recipe}
    digest = hashlib.sha256(json.dumps(fingerprint, sort_keys=True).encode()).hexdigest()[:12]
    folder = root / f"{parameters.inchikey}-{digest}"
    for leg in ("solvent", "vacuum"):
        writable_folder(folder / leg, "work folder")
    atomic_write(folder / "settings.json",
                 json.dumps({"smiles": smiles, "isomeric_smiles": isomeric, **fingerprint}, indent=1))
    solvent, vacuum = hydration_legs(isomeric, forcefield=settings["forcefield"], padding=settings["padding_nm"],
                                     cache_dir=cache_dir, seed=settings["seed"], charges=settings["charges"])
    job = _Job(smiles=smiles, isomeric_smiles=isomeric, folder=folder, settings=settings,
               legs={"solvent": solvent, "vacuum": vacuum}, windows={"solvent": {}, "vacuum": {}})
    for leg in job.windows:
        for path in sorted((folder / leg).glob("window-*.npz")):
            window = _load_window(path)
            job.windows[leg][window.state] = window
    job.reused_windows = sum(len(windows) for windows in job.windows.values())
    return job


def _save_equilibrated(path: Path, leg: Leg, wall_time: float, md_steps: int) -> None:
    buffer = io.BytesIO()
    np.savez(buffer, positions=leg.positions, box=leg.box, wall_time=wall_time, md_steps=md_steps)
    atomic_write(path, buffer.getvalue())


def _save_window(path: Path, window: WindowSamples) -> None:
    buffer = io.BytesIO()
    np.savez(buffer, **dataclasses.asdict(window))
    atomic_write(path, buffer.getvalue())


def _load_window(path: Path) -> WindowSamples:
    with np.load(path) as data:
        return WindowSamples(state=int(data["state"]), reduced_potentials=data["reduced_potentials"],
                             md_steps=int(data["md_steps"]), energy_evaluations=int(data["energy_evaluations"]),
                             wall_time=float(data["wall_time"]))


def _record(job: _Job, protocol: Protocol, schedule: LambdaSchedule, elapsed: float) -> dict[str, Any]:
    settings = job.settings
    kcal_per_kT = protocol.kT / KJ_PER_KCAL
    legs, notes = {}, []
    for name, windows in job.windows.items():
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", PoorOverlapWarning)
            estimate = mbar_from_windows(list(windows.values()))
        for warning in caught:
            notes.append(f"{name} leg: {warning.message}")
            warnings.warn(f"{job.smiles}, {name} leg: {warning.message}", warning.category, stacklevel=3)
        legs[name] = {"dF_kT": estimate.delta_f, "dF_err_kT": estimate.error,
                      "neighbour_overlap": [round(float(x), 4) for x in estimate.neighbour_overlap],
                      "decorrelated_samples": [int(n) for n in estimate.samples_per_state]}
    dg = legs["vacuum"]["dF_kT"] - legs["solvent"]["dF_kT"]
    err = float(np.hypot(legs["vacuum"]["dF_err_kT"], legs["solvent"]["dF_err_kT"]))
    windows = [w for leg in job.windows.values() for w in leg.values()]
    md_steps = job.equilibration_cost[0] + sum(w.md_steps for w in windows)
    return {
        "smiles": job.smiles, "isomeric_smiles": job.isomeric_smiles,
        "dG_kcal_mol": dg * kcal_per_kT, "dG_err_kcal_mol": err * kcal_per_kT,
        "method": settings["method"], "forcefield": settings["forcefield"], "charges": settings["charges"],
        "water_model": "TIP3P", "temperature_K": protocol.temperature, "pressure_bar": protocol.pressure,
        "lambda_schedule": schedule.to_dict(), "protocol": dataclasses.asdict(protocol),
        "padding_nm": settings["padding_nm"], "legs": legs, "warnings": notes,
        "wall_time_s": elapsed, "reused_windows": job.reused_windows,
        "task_time_s": job.equilibration_cost[1] + sum(w.wall_time for w in windows),
        "md_steps": md_steps, "energy_evaluations": md_steps + sum(w.energy_evaluations for w in windows),
        "workdir": str(job.folder),
    }
