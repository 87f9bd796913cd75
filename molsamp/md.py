"""Reference Langevin molecular dynamics of a :class:`~molsamp.systems.System`, with checkpoint/resume.

OpenMM systems run ``LangevinMiddleIntegrator`` in an OpenMM Context; analytic systems run a float64 torch BAOAB
integrator on their Target. Frames go to an append-only partial folder next to the output, so a run killed at any
moment resumes where its last checkpoint left it and ends with the same frames as an uninterrupted run.
"""

from __future__ import annotations

__all__ = ["run_md", "run_resumable", "RunResult", "RunInterrupted", "Engine", "OpenMMEngine", "load_trajectory",
           "FORMATS"]

import hashlib
import io
import json
import math
import os
import shutil
import signal
import struct
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

import numpy as np

from molsamp.errors import InputError
from molsamp.files import atomic_path, atomic_write, check_output

if TYPE_CHECKING:
    import mdtraj

    from molsamp.systems import System

FORMATS = (".h5", ".dcd")
"""Trajectory formats by suffix: mdtraj HDF5 (energies inside) or DCD (energies in ``<stem>.energies.csv``)."""

_FRAME_FILES = ("positions.f32", "energies.f64")
"""The append-only frame data of a partial folder: float32 positions [N, 3] and one float64 energy per frame."""


@dataclass(frozen=True)
class RunResult:
    """A finished :func:`run_resumable` run: the trajectory written and the wall time (s) that made it, summed over
    every session of a resumed run (engine set-up, sampling and writing; not the time lost to a kill -9 after the
    last checkpoint)."""

    output: Path
    wall_time_s: float


class RunInterrupted(KeyboardInterrupt):
    """Ctrl-C (SIGINT) stopped a resumable run at a frame boundary, after a checkpoint of that frame; the message
    says how far it got and that the same call resumes it."""


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


def _partial_folder(output: Path) -> Path:
    """Where the checkpoints of a run writing ``output`` live: ``<output>.partial``."""
    return output.with_name(output.name + ".partial")


def _damaged(partial: Path, what: str) -> InputError:
    return InputError(f"partial run {str(partial)!r} is damaged ({what}); delete it or pass overwrite=True "
                      "(--overwrite) to discard it")


def _read_meta(partial: Path) -> dict:
    """The settings and progress a partial run saved in its ``meta.json``."""
    try:
        saved = json.loads((partial / "meta.json").read_text())
    except (ValueError, UnicodeDecodeError):
        raise _damaged(partial, "meta.json is not valid JSON") from None
    if not isinstance(saved, dict):
        raise _damaged(partial, "meta.json is not a JSON object")
    return saved


def _pack_state(header: dict, state: bytes) -> bytes:
    """The bytes of ``state.bin``: the sha256 of what follows, the length of the JSON ``header``, the header (frames
    done, wall time, sha256 of each frame file up to those frames) and the engine state. One atomic file commits a
    checkpoint, so it checks itself and the frame data."""
    head = json.dumps(header).encode()
    payload = struct.pack("<q", len(head)) + head + state
    return hashlib.sha256(payload).digest() + payload


def _unpack_state(blob: bytes) -> tuple[dict, bytes] | None:
    """The header and engine state of a ``state.bin``, None if its checksum does not match."""
    digest, payload = blob[:32], blob[32:]
    if len(payload) < 8 or hashlib.sha256(payload).digest() != digest:
        return None
    (length,) = struct.unpack("<q", payload[:8])
    return json.loads(payload[8:8 + length]), payload[8 + length:]


def _sha256_prefix(path: Path, size: int):
    """A running sha256 of the first ``size`` bytes of ``path`` (more data can be added to it)."""
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        while size > 0:
            chunk = file.read(min(size, 1 << 20))
            digest.update(chunk)
            size -= len(chunk)
    return digest


@dataclass
class _Resume:
    frames: int
    state: bytes
    wall_time_s: float
    digests: list  # running sha256 of each frame file up to ``frames``


def _resume_point(partial: Path, meta: dict, n_frames: int, frame_bytes: int) -> _Resume | None:
    """Where a matching partial run stopped, None if there is none; InputError if it differs or is damaged (its
    state or frame data do not match the checksums of its last checkpoint). Frame data past the checkpoint (written
    before a kill) is cut off."""
    if not (partial / "meta.json").is_file():  # killed before its first checkpoint: nothing to keep
        shutil.rmtree(partial, ignore_errors=True)
        return None
    saved = _read_meta(partial)
    if any(saved.get(key) != meta[key] for key in meta):
        differ = ", ".join(f"{k}: {saved.get(k)!r} != {meta[k]!r}" for k in meta if saved.get(k) != meta[k])
        raise InputError(f"partial run {str(partial)!r} belongs to a different run ({differ}); delete it or "
                         "pass overwrite=True (--overwrite) to discard it")
    if not (partial / "state.bin").is_file():
        raise _damaged(partial, "state.bin is missing")
    unpacked = _unpack_state((partial / "state.bin").read_bytes())
    if unpacked is None:
        raise _damaged(partial, "state.bin checksum mismatch")
    header, state = unpacked
    frames = header["frames"]  # state.bin's own count: it may be one checkpoint ahead of meta.json
    if frames > n_frames:
        raise InputError(f"partial run {str(partial)!r} already has {frames} frames, more than the {n_frames} asked "
                         "for; ask for a longer duration or pass overwrite=True to discard it")
    digests = []
    for name, size in zip(_FRAME_FILES, (frame_bytes, 8)):
        path = partial / name
        if not path.is_file() or path.stat().st_size < frames * size:
            raise _damaged(partial, f"{name} is short")
        digests.append(_sha256_prefix(path, frames * size))
        if digests[-1].hexdigest() != header["sha256"][name]:
            raise _damaged(partial, f"{name} checksum mismatch")
        os.truncate(path, frames * size)
    return _Resume(frames, state, header["wall_time_s"], digests)


@contextmanager
def _deferred_interrupt() -> Iterator[Callable[[], bool]]:
    """Within the block, the first Ctrl-C (SIGINT) only sets a flag, read by calling the yielded function, so that a
    run can stop at the next frame boundary; a second one interrupts at once. Nothing changes outside the main
    thread or where SIGINT is ignored."""
    previous = signal.getsignal(signal.SIGINT)
    if threading.current_thread() is not threading.main_thread() or previous in (signal.SIG_IGN, None):
        yield lambda: False
        return
    received = []

    def handler(signum, frame) -> None:
        received.append(signum)
        signal.signal(signal.SIGINT, previous)

    signal.signal(signal.SIGINT, handler)
    try:
        yield lambda: bool(received)
    finally:
        signal.signal(signal.SIGINT, previous)


def _write_output(output: Path, topology: mdtraj.Topology, xyz: np.ndarray, times: np.ndarray,
                  energies: np.ndarray) -> None:
    """Write the trajectory (and the DCD energy CSV) through temporary files renamed into place."""
    import mdtraj

    if output.suffix == ".h5":
        with atomic_path(output) as temporary, mdtraj.formats.HDF5TrajectoryFile(str(temporary), "w") as file:
            file.topology = topology
            file.write(coordinates=xyz, time=times, potentialEnergy=energies)
    else:
        with atomic_path(output.with_suffix(".energies.csv")) as temporary:
            np.savetxt(temporary, np.column_stack([times, energies]), fmt=("%.6f", "%.10g"), delimiter=",",
                       header="time_ps,potential_energy_kJ_mol", comments="")
        with atomic_path(output) as temporary:
            mdtraj.Trajectory(xyz, topology, time=times).save_dcd(str(temporary))


def run_md(system: System, output: str | os.PathLike, duration: float, save_every: float = 1.0, seed: int = 0,
           platform: str | None = None, progress: bool | None = None, overwrite: bool = False,
           checkpoint_every: int = 10) -> Path:
    """Run Langevin MD of ``system`` for ``duration`` ps, saving a frame every ``save_every`` ps, and return the path.

    Frame k is at time (k + 1) * save_every (the start is not a frame); energies are kJ/mol (kT-scaled reduced units
    for analytic systems). ``output`` ends in ``.h5`` or ``.dcd``. A partial folder ``<output>.partial`` is
    checkpointed every ``checkpoint_every`` frames and a rerun with the same system, seed, timestep, save_every and
    platform resumes from it (possibly with a longer ``duration``); Ctrl-C checkpoints the frame it is in and raises
    :class:`RunInterrupted`, and a damaged partial folder is an InputError (see :func:`run_resumable`). OpenMM runs
    pick CUDA when present, else Reference for a small molecule and CPU otherwise
    (:func:`~molsamp.openmm_pool.select_platform`; a resumed run keeps the platform it started on), with one thread,
    so the same seed gives the same frames; analytic systems run in torch.
    """
    steps_per_frame = _count(save_every, system.timestep, "save_every", "the timestep")
    n_frames = _count(duration, steps_per_frame * system.timestep, "duration", "save_every")
    if system.openmm_system is not None:
        from molsamp.openmm_pool import select_platform

        partial = _partial_folder(Path(output))
        if platform is None and (partial / "meta.json").is_file() and not overwrite:  # a resumed run keeps its platform
            platform = _read_meta(partial).get("platform")
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
                         overwrite=overwrite, rate_unit="ns/day" if platform != "torch" else "time/s").output


def run_resumable(make_engine: Callable[[bytes | None], Engine], output: str | os.PathLike, n_frames: int,
                  steps_per_frame: int, frame_time: float, topology: mdtraj.Topology, meta: dict,
                  checkpoint_every: int = 10, progress: bool | None = None, overwrite: bool = False,
                  rate_unit: str = "ns/day") -> RunResult:
    """Run ``make_engine(None)`` (or the engine rebuilt from a checkpoint) for ``n_frames`` frames of
    ``steps_per_frame`` steps and write them to ``output`` (.h5 or .dcd) with ``topology``; frame k is at time
    (k + 1) * ``frame_time``.

    The partial folder ``<output>.partial`` is checkpointed every ``checkpoint_every`` frames; a rerun whose ``meta``
    matches resumes from it (a different ``meta`` is refused, and so is a damaged folder: each checkpoint holds the
    sha256 of the engine state and of the frame data up to it). Ctrl-C (SIGINT) lets the frame in progress finish,
    checkpoints it and raises :class:`RunInterrupted` (a second Ctrl-C stops at once, losing the frames since the
    last checkpoint). The result's wall time adds up every session of a resumed run.
    """
    output = Path(output)
    if output.suffix not in FORMATS:
        raise InputError(f"output {str(output)!r}: unsupported suffix {output.suffix!r}; use one of {FORMATS}")
    if checkpoint_every < 1:
        raise InputError(f"checkpoint_every must be a positive number of frames, got {checkpoint_every!r}")
    check_output(output, overwrite=True)  # an existing output is refused below, unless this run is resuming
    n_atoms = topology.n_atoms
    partial, frame_bytes = _partial_folder(output), n_atoms * 3 * 4
    if overwrite and partial.exists():
        shutil.rmtree(partial)
    resume = _resume_point(partial, meta, n_frames, frame_bytes) if partial.exists() else None
    if resume is None and output.exists() and not overwrite:
        raise InputError(f"output {str(output)!r} exists; pass overwrite=True (--overwrite) to replace it")
    done = resume.frames if resume else 0
    digests = resume.digests if resume else [hashlib.sha256() for _ in _FRAME_FILES]
    session_start, earlier_sessions = time.perf_counter(), resume.wall_time_s if resume else 0.0
    buffers: list[list[bytes]] = [[] for _ in _FRAME_FILES]

    def checkpoint(frames: int, files: list) -> None:
        for buffer, file, digest in zip(buffers, files, digests):
            data = b"".join(buffer)
            file.write(data)
            file.flush()
            os.fsync(file.fileno())
            digest.update(data)
            buffer.clear()
        wall_time = earlier_sessions + time.perf_counter() - session_start
        header = {"frames": frames, "wall_time_s": wall_time,
                  "sha256": {name: digest.hexdigest() for name, digest in zip(_FRAME_FILES, digests)}}
        atomic_write(partial / "state.bin", _pack_state(header, engine.save_state()))
        atomic_write(partial / "meta.json", json.dumps({**meta, "frames": frames, "step": frames * steps_per_frame,
                                                        "wall_time_s": wall_time}).encode())

    from tqdm import tqdm

    show = sys.stderr.isatty() if progress is None else progress
    with _deferred_interrupt() as interrupted:
        engine = make_engine(resume.state if resume else None)
        partial.mkdir(exist_ok=True)
        with (open(partial / _FRAME_FILES[0], "ab") as positions, open(partial / _FRAME_FILES[1], "ab") as energies,
              tqdm(total=n_frames, initial=done, unit="frame", disable=not show,
                   desc=str(meta.get("system", ""))) as bar):
            if resume is None:
                checkpoint(0, [positions, energies])
            start = time.perf_counter()
            for frame in range(done, n_frames):
                if interrupted():
                    checkpoint(frame, [positions, energies])
                    raise RunInterrupted(f"interrupted after {frame} of {n_frames} frames, saved in "
                                         f"{str(partial)!r}; run the same command again to resume")
                engine.step(steps_per_frame)
                xyz, energy = engine.observe()
                if not (math.isfinite(energy) and np.isfinite(xyz).all()):
                    raise InputError(f"{meta.get('system', 'the system')}: the simulation blew up at "
                                     f"t = {(frame + 1) * frame_time:g} ps; try a smaller time step")
                buffers[0].append(np.asarray(xyz, dtype=np.float32).tobytes())
                buffers[1].append(np.float64(energy).tobytes())
                if (frame + 1) % checkpoint_every == 0 or frame + 1 == n_frames:
                    checkpoint(frame + 1, [positions, energies])
                rate = (frame + 1 - done) * frame_time / (time.perf_counter() - start)  # ps/s
                bar.set_postfix_str(f"{rate * 86.4:.3g} ns/day" if rate_unit == "ns/day" else
                                    f"{rate:.3g} {rate_unit}", refresh=False)
                bar.update()
    xyz = np.fromfile(partial / _FRAME_FILES[0], dtype=np.float32).reshape(-1, n_atoms, 3)[:n_frames]
    potential = np.fromfile(partial / _FRAME_FILES[1])[:n_frames]
    _write_output(output, topology, xyz, np.arange(1, n_frames + 1) * frame_time, potential)
    shutil.rmtree(partial)
    return RunResult(output, earlier_sessions + time.perf_counter() - session_start)


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
        topology = None if top is None else _topology(top)
    except (OSError, ValueError) as error:
        raise InputError(f"topology {str(top)!r} cannot be read ({error})".splitlines()[0]) from None
    try:  # a damaged or foreign file makes the HDF5 and DCD readers raise any of these
        if path.suffix == ".h5":
            with mdtraj.formats.HDF5TrajectoryFile(str(path)) as file:
                frames, topology = file.read(), file.topology if topology is None else topology
            xyz, time, energies = frames.coordinates, frames.time, frames.potentialEnergy
            cell_lengths, cell_angles = frames.cell_lengths, frames.cell_angles
        else:
            with mdtraj.formats.DCDTrajectoryFile(str(path)) as file:
                xyz, cell_lengths, cell_angles = file.read()
            xyz, time, energies = xyz / 10.0, None, None  # DCD lengths are in Å
            cell_lengths = None if cell_lengths is None else cell_lengths / 10.0
            if (csv := path.with_suffix(".energies.csv")).is_file():
                table = np.loadtxt(csv, delimiter=",", skiprows=1, ndmin=2)
                time, energies = table[:, 0], table[:, 1]
    except (OSError, ValueError, RuntimeError, LookupError, AttributeError) as error:
        detail = (str(error).strip() or type(error).__name__).splitlines()[-1]  # HDF5 errors end in their summary
        raise InputError(f"trajectory {str(path)!r} is not a readable {path.suffix} trajectory "
                         f"({detail})") from None
    if topology is None:
        raise InputError(f"trajectory {str(path)!r} holds no topology; give one (a system or PDB file)")
    if xyz.shape[1] != topology.n_atoms:
        raise InputError(f"trajectory {str(path)!r} has {xyz.shape[1]} atoms but its topology has "
                         f"{topology.n_atoms}")
    trajectory = mdtraj.Trajectory(xyz, topology, time=time, unitcell_lengths=cell_lengths,
                                   unitcell_angles=cell_angles)
    return trajectory, None if energies is None else np.asarray(energies, dtype=np.float64)
