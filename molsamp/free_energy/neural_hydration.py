"""Hydration free energies of small rigid molecules by neural thermodynamic integration (after Mate, Fleuret and
Bereau, 2024): MD of the two end states, a coupling path learned by target score matching on rigid-body
interpolations between them, and the free energy along that path.

Two estimates come out: the authors' plain one (<dU_theta/dt> over interpolated configurations, no sampling at
intermediate t; exact only where exp(-U_theta(., t)) is the interpolant's density, and on the default path,
Lennard-Jones before charges, far off: interpolated waters enter the solute's hard core) and the exact one, TI
along the learned path from MD at its Gauss-Legendre windows (with MBAR over the same windows as a check). The record's
``dG_kcal_mol`` is the exact one, given windows that resolve the path: where neighbouring windows barely overlap
the record's ``warnings`` say so (measured for methane and water: docs/neural-ti.md).

Scope: neutral solutes with at least 3 atoms, every atom within three bonds of every other (methane, water,
ammonia, methanol, ethane...), held rigid at their force-field minimum (methyl and hydroxyl rotations frozen), in
rigid TIP3P water at constant volume.
"""

from __future__ import annotations

__all__ = ["NeuralTISettings", "neural_ti_hydration", "prepared_system"]

import dataclasses
import hashlib
import json
import os
import sys
import time
import warnings
from pathlib import Path
from typing import Any

from typing import TYPE_CHECKING

import numpy as np

from molsamp.files import atomic_write
from molsamp.free_energy.hydration import KJ_PER_KCAL
from molsamp.free_energy.mbar import MIN_OVERLAP, PoorOverlapWarning
from molsamp.openmm_pool import MOLAR_GAS_CONSTANT

if TYPE_CHECKING:  # torch, OpenMM and the rigid-body machinery load when a calculation runs, not with the CLI
    import openmm

    from molsamp.free_energy.solvation_path import PathWindow, SolvationPath


@dataclasses.dataclass(frozen=True)
class NeuralTISettings:
    """How :func:`neural_ti_hydration` runs: a cube of ``box`` nm filled with water and brought to 1 bar by
    ``pressure_equilibration`` ps of MD (then held at that volume); ``end_frames`` MD frames of each end
    state ``interval`` ps apart after ``equilibration`` ps; ``steps`` of score matching (batches of
    ``batch_size`` pairs, the learning rate falling from 1e-3 to 1e-5); the plain estimate over ``plain_nodes``
    Gauss-Legendre nodes of ``plain_pairs`` pairs; the exact one from ``windows`` inner windows of
    ``window_frames`` frames each. With ``charges_last`` the path turns the solute's Lennard-Jones on first and its
    charges after (:class:`~molsamp.free_energy.solvation_path.SolvationPath`; both counts must then be even)."""

    box: float = 1.9
    pressure_equilibration: float = 60.0
    temperature: float = 298.15
    end_frames: int = 400
    interval: float = 0.5
    equilibration: float = 20.0
    steps: int = 1000
    batch_size: int = 24
    plain_nodes: int = 16
    plain_pairs: int = 32
    windows: int = 8
    window_frames: int = 200
    charges_last: bool = True
    seed: int = 0

    def __post_init__(self) -> None:
        from molsamp.errors import InputError

        for name in ("windows", "plain_nodes"):
            if self.charges_last and getattr(self, name) % 2:
                raise InputError(f"{name} must be even, got {getattr(self, name)}: the path turns on the solute's "
                                 "Lennard-Jones, then its charges, each over half of them")


def neural_ti_hydration(smiles: str, settings: NeuralTISettings = NeuralTISettings(), forcefield: str = "gaff2",
                        charges: str = "am1bcc", workdir: str | os.PathLike | None = None,
                        cache_dir: str | os.PathLike | None = None, platform: str | None = None,
                        device: str | None = None, progress: bool | None = None) -> dict[str, Any]:
    """The hydration free energy (kcal/mol) of the rigid solute ``smiles`` by neural TI; see the module. MD runs on
    the OpenMM ``platform`` (default: the fastest), training and energies on the torch ``device`` (default: cuda
    when available, else cpu).

    Every stage is kept in ``workdir`` (default: ``<cache>/solvation-neural-ti/<InChIKey>-<settings hash>``) as it
    finishes, training by its checkpoint, so a rerun resumes where the last one stopped (on the same kind of
    device: a checkpoint's random stream belongs to it, so a GPU run has its own folder). Raises
    :class:`~molsamp.errors.InputError` for a molecule outside the scope, naming the reason."""
    import torch

    from molsamp.files import writable_folder
    from molsamp.forcefields import CACHE_NAME, cache_root, parametrize
    from molsamp.free_energy.neural_ti import (EndStates, Interpolant, TrainingSettings, neural_ti_estimate,
                                              train_neural_ti)
    from molsamp.free_energy.rigid_solvation import COUPLED, DECOUPLED, RigidSolvation
    from molsamp.free_energy.solvation_path import (PathWindow, SolvationPath, gauss_legendre_windows,
                                                    path_free_energy, window_energies)
    from molsamp.stereo import resolve_stereo

    start = time.perf_counter()
    device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    isomeric = resolve_stereo(smiles, "first")
    parameters = parametrize(isomeric, forcefield=forcefield, cache_dir=cache_dir, charges=charges)
    fingerprint = {"smiles": isomeric, "forcefield": forcefield, "charges": charges,
                   "parameters": parameters.recipe, **dataclasses.asdict(settings)}
    if device.type != "cpu":
        fingerprint["torch_device"] = device.type
    digest = hashlib.sha256(json.dumps(fingerprint, sort_keys=True).encode()).hexdigest()[:12]
    if workdir is None:
        root = writable_folder(cache_root(cache_dir) / "solvation-neural-ti", CACHE_NAME)
    else:
        root = writable_folder(workdir, "work folder")
    folder = writable_folder(root / f"{parameters.inchikey}-{digest}", "work folder")
    atomic_write(folder / "settings.json", json.dumps(fingerprint, indent=1))
    show = sys.stderr.isatty() if progress is None else progress
    system, positions, n_solute = prepared_system(folder / "system.npz", isomeric, settings, forcefield, charges,
                                                  cache_dir, platform)
    solvation = RigidSolvation(system, positions, n_solute, temperature=settings.temperature)

    ends = [_end_state(folder / f"end-{k}.npz", system, positions, n_solute, bool(k), settings, platform, show)
            for k in (0, 1)]
    x0, x1 = (torch.as_tensor(end.x, dtype=torch.float32, device=device) for end in ends)
    gradient_start = time.perf_counter()
    end_states = EndStates.from_energies(x0, lambda x: solvation.energy(x, DECOUPLED),
                                         x1, lambda x: solvation.energy(x, COUPLED))
    path = SolvationPath(solvation, charges_last=settings.charges_last).to(device)
    interpolant = Interpolant(path=solvation.interpolate, align=solvation.align)
    training = TrainingSettings(steps=settings.steps, batch_size=settings.batch_size,
                                decay_every=max(settings.steps // 2, 1), score_weight=1e-3 * settings.box**2)
    generator = torch.Generator(device).manual_seed(settings.seed)
    history = train_neural_ti(path, end_states, training, interpolant, generator, checkpoint=folder / "path.pt",
                              checkpoint_every=100, progress=show)
    training_s = time.perf_counter() - gradient_start
    running, running_error = history.running_estimate()
    plain = neural_ti_estimate(path, end_states, n_t=settings.plain_nodes, pairs_per_t=settings.plain_pairs,
                               interpolant=interpolant,
                               generator=torch.Generator(device).manual_seed(settings.seed + 1), pieces=path.pieces)

    path = path.double()
    times, weights = gauss_legendre_windows(settings.windows, path.pieces)
    windows = [PathWindow(0.0, ends[0].x, ends[0].md_steps, 0.0)]
    windows += _path_windows(folder, path, times[1:-1], positions, settings, platform, show)
    windows.append(PathWindow(1.0, ends[1].x, ends[1].md_steps, 0.0))
    energies = [window_energies(path, window, times) for window in windows]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", PoorOverlapWarning)  # said below, in terms of the path
        along = path_free_energy(times, weights, [u for u, _ in energies], [dudt for _, dudt in energies])
    kcal = MOLAR_GAS_CONSTANT * settings.temperature / KJ_PER_KCAL
    notes = [_reliability_note(along, kcal)] if along["worst_neighbour_overlap"] < MIN_OVERLAP else []
    for note in notes:
        warnings.warn(f"{smiles}: {note}", PoorOverlapWarning, stacklevel=2)
    md_steps = sum(w.md_steps for w in windows)
    potential_evaluations = settings.steps * settings.batch_size + settings.plain_nodes * settings.plain_pairs
    return {
        "smiles": smiles, "isomeric_smiles": isomeric,
        "dG_kcal_mol": along["ti_dF_kT"] * kcal, "dG_err_kcal_mol": along["ti_err_kT"] * kcal,
        "method": "neural-ti", "forcefield": forcefield, "charges": charges, "water_model": "TIP3P",
        "solute": "rigid, at its force-field minimum", "temperature_K": settings.temperature,
        "box_nm": solvation.box, "waters": solvation.n_water, "settings": dataclasses.asdict(settings),
        "estimates_kcal_mol": {name: [_finite(value * kcal), _finite(error * kcal)] for name, (value, error) in {
            "ti_along_learned_path": (along["ti_dF_kT"], along["ti_err_kT"]),
            "mbar_along_learned_path": (along["mbar_dF_kT"], along["mbar_err_kT"]),
            "plain": (plain.delta_f, plain.error), "running": (running, running_error)}.items()},
        "path": {"times": along["times"], "mean_dudt_kT": along["mean_dudt"],
                 "worst_neighbour_overlap": along["worst_neighbour_overlap"]}, "warnings": notes,
        "training": {"steps": settings.steps, "final_loss": float(np.mean(history.loss[-50:])),
                     "wall_time_s": training_s, "potential_evaluations": potential_evaluations},
        "md_steps": md_steps, "end_state_md_steps": ends[0].md_steps + ends[1].md_steps,
        "energy_evaluations": md_steps + potential_evaluations + sum(u.size for u, _ in energies),
        "wall_time_s": time.perf_counter() - start, "workdir": str(folder),
    }


def prepared_system(path: str | os.PathLike, smiles: str, settings: NeuralTISettings = NeuralTISettings(),
                    forcefield: str = "gaff2", charges: str = "am1bcc", cache_dir: str | os.PathLike | None = None,
                    platform: str | None = None) -> tuple[openmm.System, np.ndarray, int]:
    """:func:`~molsamp.free_energy.rigid_solvation.rigid_solvation_system` for ``smiles`` and ``settings``, made
    once and kept at ``path`` (.npz): its volume comes from MD, so every later stage must use the same one."""
    import openmm

    from molsamp.free_energy.rigid_solvation import rigid_solvation_system

    path = Path(path)
    if not path.is_file():
        system, positions, n_solute = rigid_solvation_system(
            smiles, box=settings.box, forcefield=forcefield, charges=charges,
            pressure_equilibration=settings.pressure_equilibration, temperature=settings.temperature,
            cache_dir=cache_dir, seed=settings.seed, platform=platform)
        _save_arrays(path, system=openmm.XmlSerializer.serialize(system), positions=positions, n_solute=n_solute)
    with np.load(path) as data:
        return openmm.XmlSerializer.deserialize(str(data["system"])), data["positions"], int(data["n_solute"])


def _reliability_note(along: dict, kcal: float) -> str:
    """What a user reads when neighbouring windows along the path barely overlap: the windows do not resolve the
    path, so TI's quadrature error (not in its error bar) may dominate."""
    return (f"windows along the learned path: neighbours overlap only {along['worst_neighbour_overlap']:.3f} "
            f"(< {MIN_OVERLAP}), so they do not resolve it; TI "
            f"({along['ti_dF_kT'] * kcal:.2f} kcal/mol) may be off by far more than its error bar (MBAR along the "
            f"path: {along['mbar_dF_kT'] * kcal:.2f} +- {along['mbar_err_kT'] * kcal:.2f}); rerun with more "
            "--windows, or use --method mbar")


def _finite(value: float) -> float | None:
    """``value``, or None (JSON's null) where it is not finite (a running error over too few steps)."""
    return float(value) if np.isfinite(value) else None


def _end_state(path: Path, system, positions: np.ndarray, n_solute: int, coupled: bool,
               settings: NeuralTISettings, platform: str | None, show: bool) -> PathWindow:
    from molsamp.free_energy.rigid_solvation import end_state_samples
    from molsamp.free_energy.solvation_path import PathWindow

    if not path.is_file():
        start = time.perf_counter()
        run = end_state_samples(system, positions, n_solute, coupled, settings.end_frames, settings.interval,
                                settings.equilibration, settings.temperature, seed=settings.seed * 10 + coupled,
                                platform=platform, progress=show)
        _save(path, PathWindow(float(coupled), run.x.astype(np.float32), run.md_steps, time.perf_counter() - start))
    return _load(path)


def _path_windows(folder: Path, path: SolvationPath, times: np.ndarray, positions: np.ndarray,
                  settings: NeuralTISettings, platform: str | None, show: bool) -> list[PathWindow]:
    from molsamp.free_energy.solvation_path import sample_path_windows

    windows = []
    for k, t in enumerate(times):
        file = folder / f"window-{k:02d}.npz"
        if not file.is_file():
            (window,) = sample_path_windows(path, np.array([t]), settings.window_frames, positions,
                                            interval=settings.interval, equilibration=settings.equilibration,
                                            temperature=settings.temperature, seed=settings.seed * 100 + k,
                                            platform=platform, progress=show)
            _save(file, window)
        windows.append(_load(file))
    return windows


def _save(path: Path, window: PathWindow) -> None:
    _save_arrays(path, **dataclasses.asdict(window))


def _save_arrays(path: Path, **arrays: Any) -> None:
    import io

    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    atomic_write(path, buffer.getvalue())


def _load(path: Path) -> PathWindow:
    from molsamp.free_energy.solvation_path import PathWindow

    with np.load(path) as data:
        return PathWindow(float(data["t"]), data["x"], int(data["md_steps"]), float(data["wall_s"]))
