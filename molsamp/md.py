"""Reference Langevin molecular dynamics of a :class:`~molsamp.systems.System`, with checkpoint/resume.

OpenMM systems run ``LangevinMiddleIntegrator`` in an OpenMM Context; analytic systems run a float64 torch BAOAB
integrator on their Target. Runs go through :func:`molsamp.resumable.run_resumable`, so a run killed at any moment
resumes where its last checkpoint left it and ends with the same frames as an uninterrupted run.
"""

from __future__ import annotations

__all__ = ["run_md", "OpenMMDynamics", "OpenMMEngine", "INPUT_MINIMISATION_STEPS"]

import io
import math
import os
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from molsamp.errors import InputError
from molsamp.resumable import Engine, partial_folder, read_meta, run_resumable

if TYPE_CHECKING:
    from molsamp.kernels import ChainState
    from molsamp.systems import System


class OpenMMDynamics:
    """A :class:`~molsamp.kernels.Kernel` for one chain (``[1, N, 3]`` nm): ``n_steps`` of OpenMM's
    ``LangevinMiddleIntegrator`` at the system's temperature, friction and time step, in its own Context (one CPU
    thread, so a seed repeats its run). The velocities live in the Context: a Metropolis-Hastings move between MD
    steps changes the positions and keeps them. Starts at the system's positions after
    :data:`INPUT_MINIMISATION_STEPS` of minimisation, with thermal velocities. BIASED by the integrator's time-step
    error, as every MD reference is.

    ``state()`` is the Context's :class:`~molsamp.kernels.ChainState` (u in kT); ``checkpoint``/``restore`` save and
    load the Context's positions, velocities and random state."""

    def __init__(self, system: System, seed: int, platform: str, n_steps: int = 1) -> None:
        import openmm

        from molsamp.openmm_pool import MOLAR_GAS_CONSTANT, create_context, minimise, openmm_seed

        self.integrator = openmm.LangevinMiddleIntegrator(system.temperature, system.friction, system.timestep)
        self.integrator.setRandomNumberSeed(openmm_seed(seed))
        self.context = create_context(system.openmm_system, self.integrator, platform, threads=1)
        self.temperature, self.n_steps = system.temperature, n_steps
        self.kT = MOLAR_GAS_CONSTANT * system.temperature  # kJ/mol
        self.context.setPositions(system.positions)
        minimise(self.context, INPUT_MINIMISATION_STEPS)
        self.context.setVelocitiesToTemperature(system.temperature, openmm_seed(seed))

    def state(self) -> ChainState:
        import torch

        from molsamp.kernels import ChainState

        state = self.context.getState(getPositions=True, getEnergy=True)
        x = torch.as_tensor(np.asarray(state.getPositions(asNumpy=True)._value, dtype=np.float64))[None]
        return ChainState(x, torch.tensor([state.getPotentialEnergy()._value / self.kT], dtype=torch.float64))

    def step(self, state: ChainState, generator: object = None) -> ChainState:
        self.context.setPositions(state.x[0].numpy())
        self.integrator.step(self.n_steps)
        return self.state()

    def checkpoint(self) -> bytes:
        return self.context.createCheckpoint()

    def restore(self, checkpoint: bytes) -> None:
        self.context.loadCheckpoint(checkpoint)


INPUT_MINIMISATION_STEPS = 200
"""Minimiser iterations on the system's positions before MD starts."""


class OpenMMEngine:
    """:class:`OpenMMDynamics` as the engine of :func:`~molsamp.resumable.run_resumable` (energies in kJ/mol)."""

    def __init__(self, system: System, seed: int, platform: str, state: bytes | None) -> None:
        self.dynamics = OpenMMDynamics(system, seed, platform)
        if state is not None:
            self.dynamics.restore(state)

    def step(self, n: int) -> None:
        self.dynamics.integrator.step(n)

    def observe(self) -> tuple[np.ndarray, float]:
        state = self.dynamics.state()
        return state.x[0].numpy(), float(state.u[0]) * self.dynamics.kT

    def save_state(self) -> bytes:
        return self.dynamics.checkpoint()


class _TorchEngine:
    """BAOAB Langevin dynamics (:class:`~molsamp.kernels.Langevin`) on an analytic Target (float64, reduced units,
    forces by autograd)."""

    def __init__(self, system: System, seed: int, state: bytes | None) -> None:
        import torch

        from molsamp.kernels import ChainState

        self.torch, self.target, self.kT, self.dt = torch, system.analytic, float(system.analytic.kT), system.timestep
        self.friction = system.friction
        self.mass = torch.as_tensor(system.masses, dtype=torch.float64)[:, None]
        self.generator = torch.Generator().manual_seed(seed)
        if state is None:
            x = torch.as_tensor(system.positions, dtype=torch.float64).clone()
            v = (self.kT / self.mass).sqrt() * torch.randn(x.shape, generator=self.generator, dtype=torch.float64)
        else:
            saved = torch.load(io.BytesIO(state), weights_only=True)
            x, v = saved["x"], saved["v"]
            self.generator.set_state(saved["rng"])
        with torch.no_grad():
            self.state = ChainState(x[None], self.target.energy(x[None]), v[None])

    def step(self, n: int) -> None:
        from molsamp.kernels import Langevin

        self.state = Langevin(self.target, n, self.dt, self.friction, self.mass).step(self.state, self.generator)

    def observe(self) -> tuple[np.ndarray, float]:
        x = self.state.x[0].numpy()
        return np.pad(x, ((0, 0), (0, 3 - x.shape[1]))), float(self.state.u[0]) * self.kT

    def save_state(self) -> bytes:
        buffer = io.BytesIO()
        self.torch.save({"x": self.state.x[0], "v": self.state.v[0], "rng": self.generator.get_state()}, buffer)
        return buffer.getvalue()


def _count(value: float, unit: float, what: str, unit_name: str) -> int:
    """``value / unit`` as a positive integer, or InputError."""
    if not (math.isfinite(value) and value > 0):
        raise InputError(f"{what} must be a positive number of ps, got {value!r}")
    count = round(value / unit)
    if count < 1 or abs(count * unit - value) > 1e-6 * value:
        raise InputError(f"{what} ({value} ps) must be a multiple of {unit_name} ({unit} ps)")
    return count


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

        partial = partial_folder(Path(output))
        if platform is None and (partial / "meta.json").is_file() and not overwrite:  # a resumed run keeps its platform
            platform = read_meta(partial).get("platform")
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
