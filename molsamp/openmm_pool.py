"""OpenMM Contexts in worker processes: energies and forces of position batches, spread over CPU cores."""

from __future__ import annotations

__all__ = ["OpenMMPool", "select_platform", "MOLAR_GAS_CONSTANT"]

import os
import socket
import subprocess
import sys
import weakref
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from molsamp.errors import InputError

if TYPE_CHECKING:
    import openmm

MOLAR_GAS_CONSTANT = 8.314462618e-3  # kJ/(mol K)
_JOIN_TIMEOUT = 5.0  # s


def select_platform(name: str | None = None) -> str:
    """The OpenMM platform to use: ``name`` if given, else CUDA when available, else CPU."""
    import openmm

    available = {openmm.Platform.getPlatform(i).getName() for i in range(openmm.Platform.getNumPlatforms())}
    if name is not None:
        if name not in available:
            raise InputError(f"OpenMM platform {name!r} is not available; available: {sorted(available)}")
        return name
    return "CUDA" if "CUDA" in available else "CPU"


def _make_context(system_xml: str, platform: str, threads: int | None) -> openmm.Context:
    import openmm

    system = openmm.XmlSerializer.deserialize(system_xml)
    properties = {"Threads": str(threads)} if platform == "CPU" and threads else {}
    if platform in ("CUDA", "OpenCL"):
        properties["Precision"] = "mixed"
    return openmm.Context(system, openmm.VerletIntegrator(0.001), openmm.Platform.getPlatformByName(platform),
                          properties)


def _evaluate(context: openmm.Context, positions: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Energies ``[B]`` (kJ/mol) and forces ``[B, N, 3]`` (kJ/mol/nm); NaN where OpenMM fails."""
    import openmm

    energies = np.empty(len(positions))
    forces = np.empty_like(positions)
    for i, x in enumerate(positions):
        try:
            context.setPositions(x)
            state = context.getState(getEnergy=True, getForces=True)
            energies[i] = state.getPotentialEnergy()._value
            forces[i] = state.getForces(asNumpy=True)._value
        except openmm.OpenMMException:
            energies[i], forces[i] = np.nan, np.nan
    return energies, forces


def _worker_main(fd: int, platform: str) -> None:
    """Serve evaluation requests on socket ``fd`` until told to stop (None) or the parent goes away (EOF)."""
    from multiprocessing.connection import Connection

    connection = Connection(fd)
    try:
        context = _make_context(connection.recv(), platform, threads=1)
        connection.send("ready")
        while (positions := connection.recv()) is not None:
            connection.send(_evaluate(context, positions))
    except (EOFError, KeyboardInterrupt, BrokenPipeError, ConnectionResetError):
        pass
    finally:
        connection.close()


def _shutdown(processes: list[subprocess.Popen], connections: list) -> None:
    for connection in connections:
        try:
            connection.send(None)
        except OSError:
            pass
    for process in processes:
        try:
            process.wait(_JOIN_TIMEOUT)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(_JOIN_TIMEOUT)
    for connection in connections:
        connection.close()
    processes.clear()
    connections.clear()


class OpenMMPool:
    """Evaluate batches of positions (nm) in ``n_workers`` worker processes.

    Batches smaller than ``2 * n_workers`` (and all batches when ``n_workers`` is 0) are evaluated in a Context in
    this process.
    """

    def __init__(self, system: openmm.System, n_workers: int | None = None, platform: str | None = None) -> None:
        import openmm

        self.platform = select_platform(platform)
        if n_workers is None:
            n_workers = len(os.sched_getaffinity(0)) if self.platform == "CPU" else 0
        if n_workers < 0:
            raise InputError(f"n_workers must be >= 0, got {n_workers}")
        self.n_workers = n_workers
        self._system_xml = openmm.XmlSerializer.serialize(system)
        self._context: openmm.Context | None = None
        self._processes: list[subprocess.Popen] = []
        self._connections: list = []
        self._finalizer = weakref.finalize(self, _shutdown, self._processes, self._connections)

    @property
    def pids(self) -> list[int]:
        """Process ids of the running workers (empty before first use and after close)."""
        return [p.pid for p in self._processes]

    def _start(self) -> None:
        """Start the workers as fresh interpreters (``python -m molsamp.openmm_pool``) joined by socket pairs.

        Unlike multiprocessing's spawn, this never re-imports the caller's ``__main__``, so it works from scripts
        without a main guard, notebooks and stdin alike.
        """
        from multiprocessing.connection import Connection

        package_root = str(Path(__file__).resolve().parent.parent)
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [package_root, os.environ.get("PYTHONPATH")]))}
        for _ in range(self.n_workers):
            parent_socket, child_socket = socket.socketpair()
            command = [sys.executable, "-m", "molsamp.openmm_pool", str(child_socket.fileno()), self.platform]
            process = subprocess.Popen(command, pass_fds=[child_socket.fileno()], env=env, stdin=subprocess.DEVNULL)
            child_socket.close()
            connection = Connection(parent_socket.detach())
            connection.send(self._system_xml)
            self._processes.append(process)
            self._connections.append(connection)
        for connection in self._connections:
            try:
                ready = connection.recv()
            except EOFError:
                ready = None
            if ready != "ready":
                self.close()
                raise RuntimeError("an OpenMM worker process failed to start (see its error output above)")

    def evaluate(self, positions: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Energies ``[B]`` (kJ/mol) and forces ``[B, N, 3]`` (kJ/mol/nm) of ``positions: [B, N, 3]`` (nm)."""
        if self.n_workers == 0 or len(positions) < 2 * self.n_workers:
            # Small batches stay in this process: the round trip to the workers would cost more than it saves.
            if self._context is None:
                self._context = _make_context(self._system_xml, self.platform, threads=None)
            return _evaluate(self._context, positions)
        if not self._processes:
            self._start()
        chunks = [c for c in np.array_split(positions, self.n_workers) if len(c)]
        try:
            for connection, chunk in zip(self._connections, chunks):
                connection.send(chunk)
            results = [connection.recv() for connection, _ in zip(self._connections, chunks)]
        except (EOFError, BrokenPipeError, ConnectionResetError) as error:
            self.close()
            raise RuntimeError("an OpenMM worker process died; the pool was shut down") from error
        if not results:
            return np.empty(0), np.empty_like(positions)
        energies, forces = zip(*results)
        return np.concatenate(energies), np.concatenate(forces)

    def close(self) -> None:
        """Stop the workers; the pool restarts them if used again."""
        _shutdown(self._processes, self._connections)
        self._context = None


if __name__ == "__main__":
    _worker_main(int(sys.argv[1]), sys.argv[2])
