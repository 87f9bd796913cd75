"""The one chain runner: an engine stepped frame by frame into a trajectory, checkpointed so that a run killed at
any moment, or stopped by Ctrl-C, resumes where it left off and ends with the frames of an uninterrupted run.

Frames go to an append-only partial folder ``<output>.partial`` beside the output; each checkpoint is one atomic
``state.bin`` that holds the engine's state and the sha256 of itself and of the frame data, so damage is named
rather than loaded. MD (:mod:`molsamp.md`), peptide torsion-jump chains and Timewarp chains run through it.
"""

from __future__ import annotations

__all__ = ["run_resumable", "Engine", "RunResult", "RunInterrupted", "partial_folder", "read_meta"]

import hashlib
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
from molsamp.files import atomic_write, check_output
from molsamp.trajectories import FORMATS, write_trajectory

if TYPE_CHECKING:
    import mdtraj

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


def partial_folder(output: Path) -> Path:
    """Where the checkpoints of a run writing ``output`` live: ``<output>.partial``."""
    return output.with_name(output.name + ".partial")


def _damaged(partial: Path, what: str) -> InputError:
    return InputError(f"partial run {str(partial)!r} is damaged ({what}); delete it or pass overwrite=True "
                      "(--overwrite) to discard it")


def read_meta(partial: Path) -> dict:
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
    saved = read_meta(partial)
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
    partial, frame_bytes = partial_folder(output), n_atoms * 3 * 4
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
    write_trajectory(output, topology, xyz, np.arange(1, n_frames + 1) * frame_time, potential)
    shutil.rmtree(partial)
    return RunResult(output, earlier_sessions + time.perf_counter() - session_start)
