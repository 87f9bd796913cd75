"""OpenMM Contexts in worker processes: energies and forces of position batches, spread over CPU cores."""

from __future__ import annotations

__all__ = ["OpenMMPool", "select_platform", "reference_is_faster", "REFERENCE_MAX_PARTICLES", "create_context",
           "openmm_seed", "minimise", "MINIMISE_TOLERANCE", "MOLAR_GAS_CONSTANT", "TORSION_RESTRAINT_K", "RESTRAINT_GROUP"]

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
TORSION_RESTRAINT_K = 5000.0  # kJ/mol/rad^2: a 1 degree deviation costs 0.76 kJ/mol
RESTRAINT_GROUP = 31  # force group of the torsion restraints; every other force goes to group 0
_RELAX_TOLERANCE = 1.0  # kJ/mol/nm: RMS force at which `relax` stops before its step limit
_JOIN_TIMEOUT = 5.0  # s


REFERENCE_MAX_PARTICLES = 100
"""Largest system that runs on OpenMM's Reference platform rather than CPU when there is no GPU."""


def select_platform(name: str | None = None, system: openmm.System | None = None) -> str:
    """The OpenMM platform to use: ``name`` if given, else CUDA when available, else Reference for a ``system`` where
    :func:`reference_is_faster`, else CPU."""
    import openmm

    available = {openmm.Platform.getPlatform(i).getName() for i in range(openmm.Platform.getNumPlatforms())}
    if name is not None:
        if name not in available:
            raise InputError(f"OpenMM platform {name!r} is not available; available: {sorted(available)}")
        return name
    if "CUDA" in available:
        return "CUDA"
    return "Reference" if system is not None and reference_is_faster(system) else "CPU"


def reference_is_faster(system: openmm.System) -> bool:
    """Whether OpenMM's Reference platform (plain double loops, no thread pool or neighbour lists) runs ``system``
    faster than its CPU platform: for a non-periodic system of at most :data:`REFERENCE_MAX_PARTICLES` particles
    whose forces are all built in. Measured on one thread: 0.10 against 0.64 ms per MD step for a 40-atom molecule in
    OBC2 (``GBSAOBCForce``); CPU wins for 213 atoms (2.5 against 1.3 ms) and for custom forces (alanine dipeptide's
    ``CustomGBForce``: 1.2 against 0.9 ms). A fixed rule rather than a timing, so that a seed repeats its run."""
    return (not system.usesPeriodicBoundaryConditions() and system.getNumParticles() <= REFERENCE_MAX_PARTICLES
            and not any(type(force).__name__.startswith("Custom") for force in system.getForces()))


def create_context(system: openmm.System, integrator: openmm.Integrator, platform: str,
                   threads: int | None = None) -> openmm.Context:
    """An OpenMM Context on ``platform`` with ``threads`` CPU threads (None: OpenMM's default, which honours
    ``OPENMM_CPU_THREADS``) and mixed precision on GPUs."""
    import openmm

    properties = {"Threads": str(threads)} if platform == "CPU" and threads else {}
    if platform in ("CUDA", "OpenCL"):
        properties["Precision"] = "mixed"
    return openmm.Context(system, integrator, openmm.Platform.getPlatformByName(platform), properties)


MINIMISE_TOLERANCE = 10.0
"""kJ/mol/nm: the RMS force at which :func:`minimise` stops before its iteration limit (OpenMM's default)."""


def minimise(context: openmm.Context, max_iterations: int, tolerance: float = MINIMISE_TOLERANCE) -> None:
    """The one energy minimiser: OpenMM's L-BFGS on ``context``'s positions, in place, for at most
    ``max_iterations`` (0 does nothing, rather than OpenMM's "until converged") or until the RMS force is below
    ``tolerance`` (kJ/mol/nm). Constraints are applied first."""
    import openmm

    if max_iterations > 0:
        context.applyConstraints(1e-8)
        openmm.LocalEnergyMinimizer.minimize(context, tolerance, max_iterations)


def openmm_seed(seed: int) -> int:
    """The integrator seed for ``seed``: OpenMM reads 0 as "pick one at random", so seeds are shifted by one."""
    return seed % (2**31 - 1) + 1


def _make_context(system_xml: str, platform: str, threads: int | None) -> openmm.Context:
    import openmm

    return create_context(openmm.XmlSerializer.deserialize(system_xml), openmm.VerletIntegrator(0.001), platform,
                          threads)


def _restrained_system_xml(system: openmm.System, torsions: np.ndarray) -> str:
    """A copy of ``system`` (serialised) with every force in group 0 plus harmonic restraints on ``torsions: [T, 4]``
    in group :data:`RESTRAINT_GROUP`: ``0.5 k d^2`` with d the wrapped difference between theta and theta0."""
    import openmm

    system = openmm.XmlSerializer.deserialize(openmm.XmlSerializer.serialize(system))
    for force in system.getForces():
        force.setForceGroup(0)
        if isinstance(force, openmm.NonbondedForce):
            force.setReciprocalSpaceForceGroup(-1)
    restraint = openmm.CustomTorsionForce(
        "0.5*molsamp_torsion_k*d^2; d=min(dtheta, 2*pi-dtheta); dtheta=abs(theta-theta0); pi=3.141592653589793")
    restraint.addGlobalParameter("molsamp_torsion_k", TORSION_RESTRAINT_K)
    restraint.addPerTorsionParameter("theta0")
    for quad in np.asarray(torsions, dtype=np.int64).reshape(-1, 4):
        restraint.addTorsion(*map(int, quad), [0.0])
    restraint.setForceGroup(RESTRAINT_GROUP)
    system.addForce(restraint)
    return openmm.XmlSerializer.serialize(system)


def _set_positions(context: openmm.Context, x: np.ndarray) -> None:
    """Set positions (nm) and place the virtual sites where their definitions put them: an energy is always of the
    real atoms' positions, whatever the virtual sites' given positions were."""
    context.setPositions(x)
    context.computeVirtualSites()


def _evaluate(context: openmm.Context, groups: int, positions: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Energies ``[B]`` (kJ/mol) and forces ``[B, N, 3]`` (kJ/mol/nm) of force ``groups`` (a bitmask); NaN where
    OpenMM fails. The forces on real atoms include those OpenMM distributes from virtual sites; the forces it still
    reports on the virtual sites themselves are set to zero, so the forces are the energy's gradient with respect to
    the real atoms."""
    import openmm

    energies = np.empty(len(positions))
    forces = np.empty_like(positions)
    system = context.getSystem()
    virtual = np.array([system.isVirtualSite(i) for i in range(system.getNumParticles())])
    for i, x in enumerate(positions):
        try:
            _set_positions(context, x)
            state = context.getState(getEnergy=True, getForces=True, groups=groups)
            energies[i] = state.getPotentialEnergy()._value
            forces[i] = np.where(virtual[:, None], 0.0, state.getForces(asNumpy=True)._value)
        except openmm.OpenMMException:
            energies[i], forces[i] = np.nan, np.nan
    return energies, forces


def _energies(context: openmm.Context, groups: int, positions: np.ndarray) -> tuple[np.ndarray]:
    """Energies ``[B]`` (kJ/mol) of force ``groups``, without forces; NaN where OpenMM fails."""
    import openmm

    energies = np.empty(len(positions))
    for i, x in enumerate(positions):
        try:
            _set_positions(context, x)
            energies[i] = context.getState(getEnergy=True, groups=groups).getPotentialEnergy()._value
        except openmm.OpenMMException:
            energies[i] = np.nan
    return (energies,)


def _relax(context: openmm.Context, groups: int, positions: np.ndarray, angles: np.ndarray,
           steps: int) -> tuple[np.ndarray, np.ndarray]:
    """Energies ``[B]`` (kJ/mol, force ``groups`` only) and positions ``[B, N, 3]`` (nm) after at most ``steps``
    minimiser iterations from ``positions`` with the restrained torsions held near ``angles: [B, T]`` (rad)."""
    import openmm

    restraint = next(f for f in context.getSystem().getForces() if f.getForceGroup() == RESTRAINT_GROUP)
    energies = np.empty(len(positions))
    relaxed = np.array(positions, dtype=np.float64)
    theta0 = np.remainder(np.asarray(angles, dtype=np.float64) + np.pi, 2 * np.pi) - np.pi
    for i, x in enumerate(positions):
        try:
            for t, target in enumerate(theta0[i]):
                restraint.setTorsionParameters(t, *restraint.getTorsionParameters(t)[:4], [float(target)])
            restraint.updateParametersInContext(context)
            context.setPositions(x)
            minimise(context, steps, _RELAX_TOLERANCE)
            state = context.getState(getEnergy=True, getPositions=True, groups=groups)
            energies[i] = state.getPotentialEnergy()._value
            relaxed[i] = state.getPositions(asNumpy=True)._value
        except openmm.OpenMMException:
            energies[i] = np.nan
    return energies, relaxed


_OPERATIONS = {"evaluate": _evaluate, "energies": _energies, "relax": _relax}


def _worker_main(fd: int, platform: str) -> None:
    """Serve ``(operation, arguments)`` requests on socket ``fd`` until told to stop (None) or the parent goes away
    (EOF)."""
    import signal
    from multiprocessing.connection import Connection

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # a terminal's Ctrl-C is the parent's to handle: it stops the pool
    connection = Connection(fd)
    try:
        context = _make_context(connection.recv(), platform, threads=1)
        connection.send("ready")
        while (request := connection.recv()) is not None:
            operation, arguments = request
            connection.send(_OPERATIONS[operation](context, *arguments))
    except (EOFError, BrokenPipeError, ConnectionResetError):
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
    this process. Every Context, in a worker or in this process, runs one CPU thread: a multi-threaded CPU Context
    sums forces in a varying order, so its energies differ in the last bits from run to run, and two threads per
    Context would oversubscribe the cores the workers share.

    With ``restrained_torsions: [T, 4]`` (atom indices), every Context also holds harmonic restraints on those
    torsions (:data:`TORSION_RESTRAINT_K`, in force group :data:`RESTRAINT_GROUP`; the pool's copy of the System has
    every other force in group 0), used by :meth:`relax`. Energies and forces never include the restraints.
    Minimisation would amplify a multi-threaded Context's noise (1e-7 to 1e-5 relative after 20 steps); with one
    thread :meth:`relax` is a deterministic function of its input, whichever process runs it.
    """

    def __init__(self, system: openmm.System, n_workers: int | None = None, platform: str | None = None,
                 restrained_torsions: np.ndarray | None = None) -> None:
        import openmm

        self.platform = select_platform(platform, system)
        if n_workers is None:
            n_workers = len(os.sched_getaffinity(0)) if self.platform in ("CPU", "Reference") else 0
        if n_workers < 0:
            raise InputError(f"n_workers must be >= 0, got {n_workers}")
        self.n_workers = n_workers
        self.restrained = restrained_torsions is not None
        self.n_restrained = len(np.asarray(restrained_torsions).reshape(-1, 4)) if self.restrained else 0
        if self.restrained:
            self._system_xml = _restrained_system_xml(system, restrained_torsions)
            self._groups = 1 << 0  # group 0 only: everything but the restraints
        else:
            self._system_xml = openmm.XmlSerializer.serialize(system)
            self._groups = -1  # all groups
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

    def _run(self, operation: str, batched: tuple[np.ndarray, ...], *options) -> tuple[np.ndarray, ...]:
        """``_OPERATIONS[operation](context, groups, *batched, *options)``, the arrays ``batched`` (all ``[B, ...]``)
        split into contiguous chunks, one per worker; the results concatenated in order."""
        n = len(batched[0])
        if self.n_workers == 0 or n < 2 * self.n_workers:
            # Small batches stay in this process: the round trip to the workers would cost more than it saves.
            if self._context is None:  # one thread: see the class docstring
                self._context = _make_context(self._system_xml, self.platform, threads=1)
            return _OPERATIONS[operation](self._context, self._groups, *batched, *options)
        if not self._processes:
            self._start()
        chunks = np.array_split(np.arange(n), self.n_workers)
        try:
            for connection, chunk in zip(self._connections, chunks):
                connection.send((operation, (self._groups, *(a[chunk] for a in batched), *options)))
            results = [connection.recv() for connection in self._connections]
        except (EOFError, BrokenPipeError, ConnectionResetError) as error:
            self.close()
            raise RuntimeError("an OpenMM worker process died; the pool was shut down") from error
        return tuple(np.concatenate(parts) for parts in zip(*results))

    def evaluate(self, positions: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Energies ``[B]`` (kJ/mol) and forces ``[B, N, 3]`` (kJ/mol/nm) of ``positions: [B, N, 3]`` (nm)."""
        return self._run("evaluate", (np.asarray(positions, dtype=np.float64),))

    def energies(self, positions: np.ndarray) -> np.ndarray:
        """Energies ``[B]`` (kJ/mol) of ``positions: [B, N, 3]`` (nm), without forces (cheaper)."""
        return self._run("energies", (np.asarray(positions, dtype=np.float64),))[0]

    def relax(self, positions: np.ndarray, angles: np.ndarray, steps: int) -> tuple[np.ndarray, np.ndarray]:
        """Energies ``[B]`` (kJ/mol, without the restraints) and positions ``[B, N, 3]`` (nm) after at most ``steps``
        iterations of OpenMM's minimiser from ``positions: [B, N, 3]`` (nm), with the restrained torsions held near
        ``angles: [B, T]`` (rad). ``steps=0`` evaluates ``positions`` as they are. NaN energy where OpenMM fails."""
        if not self.restrained:
            raise InputError("OpenMMPool.relax needs a pool made with restrained_torsions")
        positions = np.asarray(positions, dtype=np.float64)
        angles = np.asarray(angles, dtype=np.float64)
        if angles.shape != (len(positions), self.n_restrained):
            raise InputError(f"angles must have shape [{len(positions)}, {self.n_restrained}], "
                             f"got {list(angles.shape)}")
        return self._run("relax", (positions, angles), int(steps))

    def close(self) -> None:
        """Stop the workers; the pool restarts them if used again."""
        _shutdown(self._processes, self._connections)
        self._context = None


if __name__ == "__main__":
    _worker_main(int(sys.argv[1]), sys.argv[2])
