"""Crystal flows for periodic systems of rigid waters (``ice-xi-16``, ``ice-xi-128``): the rigid-body target, the
lattice chart of the system's crystal, a quasi-harmonic prior from MD, training by reverse KL on the energy, and
checkpoints with their model cards."""

from __future__ import annotations

__all__ = ["is_crystal", "crystal_target", "lattice_chart", "crystal_md_states", "initial_flow",
           "train_crystal_flow", "save_crystal_flow", "load_crystal_flow", "CRYSTAL_KIND"]

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


def initial_flow(system: System, states: torch.Tensor, **options: Any) -> CrystalFlow:
    """A flow for ``system`` whose prior is the Gaussian of the local coordinates of ``states`` (MD frames at the
    flow's temperature); ``options`` go to :meth:`CrystalFlow.fit` (layers, hidden, bins, bound, shrinkage)."""
    return CrystalFlow.fit(lattice_chart(system), states, **options)


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


def save_crystal_flow(flow: CrystalFlow, path: str | os.PathLike, system: System, temperature: float,
                      **card: Any) -> Path:
    """Write ``flow`` for ``system`` at ``temperature`` (K) with its model card."""
    from molsamp.checkpoints import save_checkpoint

    return save_checkpoint(flow, path, CRYSTAL_KIND, system=system.name, temperature=float(temperature), **card)


def load_crystal_flow(path: str | os.PathLike, system: System, temperature: float | None = None) -> CrystalFlow:
    """The crystal flow at ``path``, checked to be for ``system`` (and ``temperature`` K, if given)."""
    from molsamp.checkpoints import load_checkpoint

    flow = load_checkpoint(path, CRYSTAL_KIND, CrystalFlow.from_config)
    card = flow.metadata
    if card.get("system") != system.name or tuple(flow.event_shape) != (system.n_atoms // 4, 7):
        raise InputError(f"{path}: a crystal flow for {card.get('system')!r}, not for {system.name!r}")
    if temperature is not None and not math.isclose(card.get("temperature", math.nan), temperature):
        raise InputError(f"{path}: trained at {card.get('temperature')} K, not {temperature} K")
    return flow
