"""Sampling one leg: equilibration, then Langevin MD in each lambda window with reduced energies at every state."""

from __future__ import annotations

__all__ = ["Protocol", "WindowSamples", "equilibrate", "sample_window"]

import dataclasses
import time

import numpy as np

from molsamp.errors import InputError
from molsamp.free_energy.alchemy import LambdaSchedule, set_lambdas
from molsamp.free_energy.legs import Leg
from molsamp.openmm_pool import MOLAR_GAS_CONSTANT


@dataclasses.dataclass(frozen=True)
class Protocol:
    """How each leg is sampled. Times in ps, temperature in K, pressure in bar, friction in 1/ps; every value
    positive (friction and the equilibration times may be zero), else :class:`~molsamp.errors.InputError`.

    The solvent leg is minimised and equilibrated at constant pressure (Monte Carlo barostat) in the coupled state;
    every window then starts from that box and runs at constant pressure too: ``window_equilibration`` discarded,
    then ``production`` with the reduced potential in every state recorded each ``sample_every`` (the pV term is
    the same in every state of a sample, so MBAR needs only the potential energies).
    """

    temperature: float = 298.15
    pressure: float = 1.01325
    timestep: float = 0.004
    friction: float = 1.0
    equilibration: float = 50.0
    window_equilibration: float = 10.0
    production: float = 50.0
    sample_every: float = 1.0

    def __post_init__(self) -> None:
        for name, value in dataclasses.asdict(self).items():
            zero_ok = name in ("friction", "equilibration", "window_equilibration")
            if not (value >= 0 if zero_ok else value > 0):  # NaN fails both
                unit = {"temperature": "K", "pressure": "bar", "friction": "1/ps"}.get(name, "ps")
                raise InputError(f"protocol {name} must be {'non-negative' if zero_ok else 'positive'}, "
                                 f"got {value:g} {unit}")

    def steps(self, duration: float) -> int:
        return max(int(round(duration / self.timestep)), 0)

    @property
    def kT(self) -> float:
        """kJ/mol."""
        return MOLAR_GAS_CONSTANT * self.temperature


@dataclasses.dataclass(frozen=True)
class WindowSamples:
    """What one window produced.

    Attributes:
        state: index of the sampled state in the schedule.
        reduced_potentials: ``[K, N]`` reduced potential (kT) of each of the N samples in each of the K states.
        md_steps: integration steps taken (force evaluations).
        energy_evaluations: single-point energy evaluations for the ``reduced_potentials``.
        wall_time: s.
    """

    state: int
    reduced_potentials: np.ndarray
    md_steps: int
    energy_evaluations: int
    wall_time: float


def _context(leg: Leg, protocol: Protocol, seed: int, platform: str | None, threads: int | None,
             barostat: bool = False):
    import openmm

    from molsamp.openmm_pool import create_context, openmm_seed, select_platform

    system = leg.system()
    if barostat:
        system.addForce(openmm.MonteCarloBarostat(protocol.pressure, protocol.temperature, 25))
    integrator = openmm.LangevinMiddleIntegrator(protocol.temperature, protocol.friction, protocol.timestep)
    integrator.setRandomNumberSeed(openmm_seed(seed))
    context = create_context(system, integrator, select_platform(platform), threads)
    if leg.periodic:
        context.setPeriodicBoxVectors(*leg.box)
    context.setPositions(leg.positions)
    return context, integrator


def equilibrate(leg: Leg, protocol: Protocol = Protocol(), seed: int = 0, platform: str | None = None,
                threads: int | None = None) -> Leg:
    """``leg`` minimised and, if periodic, equilibrated for ``protocol.equilibration`` ps at constant pressure in the
    coupled state; returns the leg with the final positions and box."""
    from molsamp.openmm_pool import minimise, openmm_seed

    context, integrator = _context(leg, protocol, seed, platform, threads, barostat=leg.periodic)
    minimise(context, 1000)
    if leg.periodic:
        context.setVelocitiesToTemperature(protocol.temperature, openmm_seed(seed))
        integrator.step(protocol.steps(protocol.equilibration))
    state = context.getState(getPositions=True, enforcePeriodicBox=leg.periodic)
    box = np.asarray(state.getPeriodicBoxVectors(asNumpy=True)._value) if leg.periodic else None
    return dataclasses.replace(leg, positions=np.asarray(state.getPositions(asNumpy=True)._value), box=box)


def sample_window(leg: Leg, schedule: LambdaSchedule, state: int, protocol: Protocol = Protocol(), seed: int = 0,
                  platform: str | None = None, threads: int | None = None) -> WindowSamples:
    """Langevin MD of ``leg`` in alchemical ``state`` of ``schedule``, recording the reduced potential of each sample
    in every state (the input MBAR needs). ``seed`` should differ between windows."""
    from molsamp.openmm_pool import openmm_seed

    start = time.perf_counter()
    context, integrator = _context(leg, protocol, seed, platform, threads, barostat=leg.periodic)
    lambdas = list(zip(schedule.electrostatics, schedule.sterics))
    set_lambdas(context, *lambdas[state])
    context.setVelocitiesToTemperature(protocol.temperature, openmm_seed(seed))
    integrator.step(protocol.steps(protocol.window_equilibration))
    stride = max(protocol.steps(protocol.sample_every), 1)
    n_samples = max(protocol.steps(protocol.production) // stride, 1)
    reduced = np.empty((len(lambdas), n_samples))
    for n in range(n_samples):
        integrator.step(stride)
        for k, values in enumerate(lambdas):
            set_lambdas(context, *values)
            reduced[k, n] = context.getState(getEnergy=True).getPotentialEnergy()._value / protocol.kT
        set_lambdas(context, *lambdas[state])
    return WindowSamples(state=state, reduced_potentials=reduced,
                         md_steps=protocol.steps(protocol.window_equilibration) + n_samples * stride,
                         energy_evaluations=n_samples * len(lambdas), wall_time=time.perf_counter() - start)
