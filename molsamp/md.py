"""Reference Langevin molecular dynamics of a :class:`~molsamp.systems.System`, with checkpoint/resume.

OpenMM systems run ``LangevinMiddleIntegrator`` in an OpenMM Context; analytic systems run a float64 torch BAOAB
integrator on their Target. Frames go to an append-only partial folder next to the output, so a run killed at any
moment resumes where its last checkpoint left it and ends with the same frames as an uninterrupted run.
"""

from __future__ import annotations

__all__ = ["run_md", "run_resumable", "Engine", "OpenMMEngine", "load_trajectory", "FORMATS"]

import io
import json
import math
import os
import shutil
import struct
import sys
import time
from pathlib import Path
from collections.abc import Callable
from typing import TYPE_CHECKING, Protocol

import numpy as np

from molsamp.errors import InputError
from molsamp.files import atomic_write

if TYPE_CHECKING:
    import mdtraj

    from molsamp.systems import System

FORMATS = (".h5", ".dcd")
"""Trajectory formats by suffix: mdtraj HDF5 (energies inside) or DCD (energies in ``<stem>.energies.csv``)."""

class Engine(Protocol):
    """What :func:`run_resumable` needs of a sampler: positions in nm (reduced lengths), energies in kJ/mol (or kT
    units), and its whole state as bytes (it is rebuilt from them on resume)."""

    def step(self, n: int) -> None: ...

    def observe(self) -> tuple[np.ndarray, float]: ...  # positions [N, 3], potential energy

    def save_state(self) -> bytes: ...


class OpenMMEngine:
    """``LangevinMiddleIntegrator`` in one Context; a CPU Context uses one thread, so runs are bitwise reproducible."""

    def __init__(self, system: System, seed: int, platform: str, state: bytes | None) -> None:
        import openmm

        from molsamp.openmm_pool import create_context, openmm_seed

        integrator = openmm.LangevinMiddleIntegrator(system.temperature, system.friction, system.timestep)
        integrator.setRandomNumberSeed(openmm_seed(seed))
        self.context = create_context(system.openmm_system, integrator, platform, threads=1)
        self.integrator = integrator
        if state is None:
            self.context.setPositions(system.positions)
            openmm.LocalEnergyMinimizer.minimize(self.context, 10.0, 200)
            self.context.setVelocitiesToTemperature(system.temperature, openmm_seed(seed))
        else:
            self.context.loadCheckpoint(state)

    def step(self, n: int) -> None:
        self.integrator.step(n)

    def observe(self) -> tuple[np.ndarray, float]:
        state = self.context.getState(getPositions=True, getEnergy=True)
        return state.getPositions(asNumpy=True)._value, state.getPotentialEnergy()._value

    def save_state(self) -> bytes:
        return self.context.createCheckpoint()


class _TorchEngine:
    """BAOAB Langevin dynamics on an analytic Target (float64, reduced units, forces by autograd)."""

    def __init__(self, system: System, seed: int, state: bytes | None) -> None:
        import torch

        self.torch, self.target, self.kT, self.dt = torch, system.analytic, float(system.analytic.kT), system.timestep
        self.friction = system.friction
        self.mass = torch.as_tensor(system.masses, dtype=torch.float64)[:, None]
        self.generator = torch.Generator().manual_seed(seed)
        if state is None:
            self.x = torch.as_tensor(system.positions, dtype=torch.float64).clone()
            self.v = (self.kT / self.mass).sqrt() * torch.randn(self.x.shape, generator=self.generator,
                                                                dtype=torch.float64)
        else:
            saved = torch.load(io.BytesIO(state), weights_only=True)
            self.x, self.v = saved["x"], saved["v"]
            self.generator.set_state(saved["rng"])
        self._update_force()

    def _update_force(self) -> None:
        from molsamp.samplers import energy_gradient

        self.gradient = energy_gradient(lambda x: self.target.energy(x[None]), self.x)
        self.u = float(self.target.energy(self.x[None])[0])

    def step(self, n: int) -> None:
        from molsamp.samplers import LangevinState, langevin_baoab

        state = langevin_baoab(LangevinState(self.x, self.v, self.gradient), lambda x: self.target.energy(x[None]), n,
                               self.dt, self.friction, self.kT, self.mass, self.generator)
        self.x, self.v, self.gradient = state.x, state.v, state.gradient
        self.u = float(self.target.energy(self.x[None])[0])

    def observe(self) -> tuple[np.ndarray, float]:
        x = self.x.numpy()
        return np.pad(x, ((0, 0), (0, 3 - x.shape[1]))), self.u * self.kT

    def save_state(self) -> bytes:
        buffer = io.BytesIO()
        self.torch.save({"x": self.x, "v": self.v, "rng": self.generator.get_state()}, buffer)
        return buffer.getvalue()


def _count(value: float, unit: float, what: str, unit_name: str) -> int:
    """``value / unit`` as a positive integer, or InputError."""
    if not (math.isfinite(value) and value > 0):
        raise InputError(f"{what} must be a positive number of ps, got {value!r}")
    count = round(value / unit)
    if count < 1 or abs(count * unit - value) > 1e-6 * value:
        raise InputError(f"{what} ({value} ps) must be a multiple of {unit_name} ({unit} ps)")
    return count


def _check_output(output: Path) -> None:
    folder = output.parent
    if not folder.is_dir():
        raise InputError(f"output {str(output)!r}: folder {str(folder)!r} does not exist or is not a folder")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise InputError(f"output {str(output)!r}: folder {str(folder)!r} is not writable")
    if output.is_dir():
        raise InputError(f"output {str(output)!r} is a folder")


def _partial_folder(output: Path) -> Path:
    """Where the checkpoints of a run writing ``output`` live: ``<output>.partial``."""
    return output.with_name(output.name + ".partial")


def _resume_point(partial: Path, meta: dict, n_frames: int, frame_bytes: int) -> tuple[int, bytes] | None:
    """Frames done and engine state of a matching partial run, None if there is none; InputError if it differs."""
    if not (partial / "meta.json").is_file():  # killed before its first checkpoint: nothing to keep
        shutil.rmtree(partial, ignore_errors=True)
        return None
    saved = json.loads((partial / "meta.json").read_text())
    if any(saved.get(key) != meta[key] for key in meta):
        differ = ", ".join(f"{k}: {saved.get(k)!r} != {meta[k]!r}" for k in meta if saved.get(k) != meta[k])
        raise InputError(f"partial run {str(partial)!r} belongs to a different run ({differ}); delete it or "
                         "pass overwrite=True (--overwrite) to discard it")
    blob = (partial / "state.bin").read_bytes()  # its own frame count: it may be one checkpoint ahead of meta
    (frames,) = struct.unpack("<q", blob[:8])
    if frames > n_frames:
        raise InputError(f"partial run {str(partial)!r} already has {frames} frames, more than the {n_frames} asked "
                         "for; ask for a longer duration or pass overwrite=True to discard it")
    for name, size in (("positions.f32", frame_bytes), ("energies.f64", 8)):
        if (partial / name).stat().st_size < frames * size:
            raise InputError(f"partial run {str(partial)!r} is damaged ({name} is short); delete it")
        os.truncate(partial / name, frames * size)
    return frames, blob[8:]


def _write_output(output: Path, topology: mdtraj.Topology, xyz: np.ndarray, times: np.ndarray,
                  energies: np.ndarray) -> None:
    """Write the trajectory (and the DCD energy CSV) to temporary files and rename them into place."""
    import mdtraj

    temporary = output.with_name(f".{output.stem}.tmp{output.suffix}")
    if output.suffix == ".h5":
        with mdtraj.formats.HDF5TrajectoryFile(str(temporary), "w") as file:
            file.topology = topology
            file.write(coordinates=xyz, time=times, potentialEnergy=energies)
    else:
        csv, csv_temporary = output.with_suffix(".energies.csv"), output.with_name(f".{output.stem}.tmp.csv")
        np.savetxt(csv_temporary, np.column_stack([times, energies]), fmt=("%.6f", "%.10g"), delimiter=",",
                   header="time_ps,potential_energy_kJ_mol", comments="")
        os.replace(csv_temporary, csv)
        mdtraj.Trajectory(xyz, topology, time=times).save_dcd(str(temporary))
    os.replace(temporary, output)


def run_md(system: System, output: str | os.PathLike, duration: float, save_every: float = 1.0, seed: int = 0,
           platform: str | None = None, progress: bool | None = None, overwrite: bool = False,
           checkpoint_every: int = 10) -> Path:
    """Run Langevin MD of ``system`` for ``duration`` ps, saving a frame every ``save_every`` ps, and return the path.

    Frame k is at time (k + 1) * save_every (the start is not a frame); energies are kJ/mol (kT-scaled reduced units
    for analytic systems). ``output`` ends in ``.h5`` or ``.dcd``. A partial folder ``<output>.partial`` is
    checkpointed every ``checkpoint_every`` frames and a rerun with the same system, seed, timestep, save_every and
    platform resumes from it (possibly with a longer ``duration``). OpenMM runs pick CUDA when present, else
    Reference for a small molecule and CPU otherwise (:func:`~molsamp.openmm_pool.select_platform`; a resumed run
    keeps the platform it started on), with one thread, so the same seed gives the same frames; analytic systems run
    in torch.
    """
    steps_per_frame = _count(save_every, system.timestep, "save_every", "the timestep")
    n_frames = _count(duration, steps_per_frame * system.timestep, "duration", "save_every")
    if system.openmm_system is not None:
        from molsamp.openmm_pool import select_platform

        saved = _partial_folder(Path(output)) / "meta.json"
        if platform is None and saved.is_file() and not overwrite:  # a resumed run keeps its platform
            platform = json.loads(saved.read_text()).get("platform")
        platform = select_platform(platform, system.openmm_system)
    else:
        platform = "torch"
    meta = {"system": system.name, "n_atoms": system.n_atoms, "timestep": system.timestep, "save_every": save_every,
            "seed": int(seed), "platform": platform}

    def engine(state: bytes | None) -> Engine:
        if platform == "torch":
            return _TorchEngine(system, seed, state)
        return OpenMMEngine(system, seed, platform, state)

    return run_resumable(engine, output, n_frames, steps_per_frame, steps_per_frame * system.timestep,
                         system.topology, meta, checkpoint_every=checkpoint_every, progress=progress,
                         overwrite=overwrite, rate_unit="ns/day" if platform != "torch" else "time/s")


def run_resumable(make_engine: Callable[[bytes | None], Engine], output: str | os.PathLike, n_frames: int,
                  steps_per_frame: int, frame_time: float, topology: mdtraj.Topology, meta: dict,
                  checkpoint_every: int = 10, progress: bool | None = None, overwrite: bool = False,
                  rate_unit: str = "ns/day") -> Path:
    """Run ``make_engine(None)`` (or the engine rebuilt from a checkpoint) for ``n_frames`` frames of
    ``steps_per_frame`` steps and write them to ``output`` (.h5 or .dcd) with ``topology``; frame k is at time
    (k + 1) * ``frame_time``. The partial folder ``<output>.partial`` is checkpointed every ``checkpoint_every``
    frames; a rerun whose ``meta`` matches resumes from it (a different ``meta`` is refused)."""
    output = Path(output)
    if output.suffix not in FORMATS:
        raise InputError(f"output {str(output)!r}: unsupported suffix {output.suffix!r}; use one of {FORMATS}")
    if checkpoint_every < 1:
        raise InputError(f"checkpoint_every must be a positive number of frames, got {checkpoint_every!r}")
    _check_output(output)
    n_atoms = topology.n_atoms
    partial, frame_bytes = _partial_folder(output), n_atoms * 3 * 4
    if overwrite and partial.exists():
        shutil.rmtree(partial)
    resume = _resume_point(partial, meta, n_frames, frame_bytes) if partial.exists() else None
    if resume is None and output.exists() and not overwrite:
        raise InputError(f"output {str(output)!r} exists; pass overwrite=True (--overwrite) to replace it")
    done, state = resume or (0, None)
    engine = make_engine(state)

    def checkpoint(frames: int, buffers: list[list[bytes]], files: list) -> None:
        for buffer, file in zip(buffers, files):
            file.write(b"".join(buffer))
            file.flush()
            os.fsync(file.fileno())
            buffer.clear()
        atomic_write(partial / "state.bin", struct.pack("<q", frames) + engine.save_state())
        atomic_write(partial / "meta.json", json.dumps({**meta, "frames": frames,
                                                         "step": frames * steps_per_frame}).encode())

    from tqdm import tqdm

    partial.mkdir(exist_ok=True)
    buffers: list[list[bytes]] = [[], []]
    show = sys.stderr.isatty() if progress is None else progress
    with (open(partial / "positions.f32", "ab") as positions, open(partial / "energies.f64", "ab") as energies,
          tqdm(total=n_frames, initial=done, unit="frame", disable=not show, desc=str(meta.get("system", ""))) as bar):
        if resume is None:
            checkpoint(0, buffers, [positions, energies])
        start = time.perf_counter()
        for frame in range(done, n_frames):
            engine.step(steps_per_frame)
            xyz, energy = engine.observe()
            if not (math.isfinite(energy) and np.isfinite(xyz).all()):
                raise InputError(f"{meta.get('system', 'the system')}: the simulation blew up at "
                                 f"t = {(frame + 1) * frame_time:g} ps; try a smaller time step")
            buffers[0].append(np.asarray(xyz, dtype=np.float32).tobytes())
            buffers[1].append(np.float64(energy).tobytes())
            if (frame + 1) % checkpoint_every == 0 or frame + 1 == n_frames:
                checkpoint(frame + 1, buffers, [positions, energies])
            rate = (frame + 1 - done) * frame_time / (time.perf_counter() - start)  # ps/s
            bar.set_postfix_str(f"{rate * 86.4:.3g} ns/day" if rate_unit == "ns/day" else f"{rate:.3g} {rate_unit}",
                                refresh=False)
            bar.update()
    xyz = np.fromfile(partial / "positions.f32", dtype=np.float32).reshape(-1, n_atoms, 3)[:n_frames]
    potential = np.fromfile(partial / "energies.f64")[:n_frames]
    _write_output(output, topology, xyz, np.arange(1, n_frames + 1) * frame_time, potential)
    shutil.rmtree(partial)
    return output


def _topology(top: System | str | os.PathLike | mdtraj.Topology) -> mdtraj.Topology:
    import mdtraj

    if isinstance(top, mdtraj.Topology):
        return top
    return top.topology if hasattr(top, "topology") else mdtraj.load_topology(str(top))


def load_trajectory(path: str | os.PathLike, top: System | str | os.PathLike | mdtraj.Topology | None = None,
                    ) -> tuple[mdtraj.Trajectory, np.ndarray | None]:
    """A trajectory written by :func:`run_md` and its potential energies ``[n_frames]`` (kJ/mol), None if absent.

    ``top`` (a System, a PDB path or an mdtraj Topology) is required for DCD files; HDF5 files carry their own.
    """
    import mdtraj

    path = Path(path)
    if not path.is_file():
        raise InputError(f"trajectory {str(path)!r} does not exist")
    if path.suffix not in FORMATS:
        raise InputError(f"trajectory {str(path)!r}: unsupported suffix {path.suffix!r}; use one of {FORMATS}")
    if path.suffix == ".dcd" and top is None:
        raise InputError(f"trajectory {str(path)!r}: a DCD file needs a topology (system or PDB file)")
    try:
        if path.suffix == ".h5":
            with mdtraj.formats.HDF5TrajectoryFile(str(path)) as file:
                frames, topology = file.read(), file.topology if top is None else _topology(top)
            trajectory = mdtraj.Trajectory(frames.coordinates, topology, time=frames.time,
                                           unitcell_lengths=frames.cell_lengths, unitcell_angles=frames.cell_angles)
            energies = frames.potentialEnergy
        else:
            trajectory, energies = mdtraj.load_dcd(str(path), top=_topology(top)), None
            if (csv := path.with_suffix(".energies.csv")).is_file():
                table = np.loadtxt(csv, delimiter=",", skiprows=1, ndmin=2)
                trajectory.time, energies = table[:, 0], table[:, 1]
    except (OSError, ValueError) as error:
        raise InputError(f"trajectory {str(path)!r}: cannot be read ({error})") from None
    return trajectory, None if energies is None else np.asarray(energies, dtype=np.float64)
