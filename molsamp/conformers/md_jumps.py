"""Conformers in full Cartesian space: Langevin MD with torsion jumps drawn from the torsion model.

Each round of a chain runs ``md_steps`` of OpenMM Langevin dynamics, then offers every rotatable torsion, in random
order, a jump to an angle drawn from the model's marginal for that torsion (blended with the flat density, so that
jumps reach states the model misses), accepted by Metropolis-Hastings on the full OpenMM energy. A jump rotates one
side of the bond rigidly about it: bond lengths, bond angles (and constraints) are kept and the map preserves
volume, so the acceptance probability is min(1, exp(-(U' - U)/kT) q(theta) / q(theta')) and the chain samples the
Boltzmann density of every coordinate (bonds, angles and ring puckers too), up to the MD integrator's time-step
error, which MD references share. MD moves within the wells; the jumps cross the torsion barriers that MD crosses
rarely. Each chain starts from one of ``START_CANDIDATES`` model-drawn conformers picked by importance resampling,
so the chains start spread over the torsion states roughly as the target is, rather than all in the state of one
input geometry. The slowest torsions of drug-like molecules change state only a few times in hundreds of rounds, so
many short chains give more effective samples per second than a few long ones; the ESS pools the chains (Stan's
estimator), so chains stuck in different states are not counted as independent samples. A molecule without
rotatable torsions (benzene, methane, acetate) gets plain MD: no jump is offered, and the ESS is that of its
potential energy.
"""

from __future__ import annotations

__all__ = ["ChainSamples", "TorsionJumpChain", "sample_md_jumps"]

import dataclasses
import math
import sys
from typing import TYPE_CHECKING

import numpy as np
import torch

from molsamp.analysis import compute_dihedrals, time_series_ess, torsion_ess
from molsamp.conformers.torsions import Torsions, rotate_torsion, set_torsions
from molsamp.errors import InputError
from molsamp.md import OpenMMEngine
from molsamp.openmm_pool import MOLAR_GAS_CONSTANT, select_platform
from molsamp.samplers import metropolis_accept

START_CANDIDATES = 32
"""Model-drawn conformers among which each chain picks its start."""
START_MINIMISATION_STEPS = 50
"""Energy minimisation steps that take the clashes out of a chain's start."""
MAX_CHAINS, FRAMES_PER_CHAIN = 32, 16
"""Default number of chains: one per ``FRAMES_PER_CHAIN`` frames asked for, at most ``MAX_CHAINS``."""

if TYPE_CHECKING:
    from molsamp.conformers.model import TorsionMixture
    from molsamp.systems import System


@dataclasses.dataclass(frozen=True)
class ChainSamples:
    """Frames of the chains, one per round after burn-in: positions ``[n, N, 3]`` (nm), reduced energies ``[n]``
    (kT), torsion angles ``[n, T]`` (rad); the jump acceptance rate (None without rotatable torsions); the ESS
    (smallest over torsions of the torsion ESS of the chains pooled, as Stan pools them, so chains that sample
    different states count as few samples; without rotatable torsions, the pooled ESS of the potential energy; at
    most one per frame, and the number of frames when too few rounds were run to measure it); the force and energy
    evaluations spent (minimisation counted at its step limit); and the pooled ESS of each torsion ``[T]`` (NaN where
    too few frames were drawn to measure it)."""

    positions: np.ndarray
    u: np.ndarray
    angles: np.ndarray
    acceptance: float | None
    ess: float
    evaluations: int
    torsion_ess: np.ndarray


class TorsionJumpChain:
    """Langevin MD with torsion jumps in one OpenMM Context; :meth:`start` begins a chain afresh from the model (the
    input geometry is minimised once), so one object can run several chains one after another."""

    def __init__(self, system: System, torsions: Torsions, mixture: TorsionMixture, seed: int,
                 platform: str) -> None:
        engine = OpenMMEngine(system, seed, platform, state=None)  # minimised input geometry
        self.context, self.integrator = engine.context, engine.integrator
        self.torsions, self.mixture, self.temperature = torsions, mixture, system.temperature
        self.kT = MOLAR_GAS_CONSTANT * system.temperature  # kJ/mol
        self.generator = torch.Generator().manual_seed(seed)
        self.base = self.state()[0]
        self.accepted = self.offered = 0

    def start(self) -> None:
        """Begin a chain: with rotatable torsions, at one of :data:`START_CANDIDATES` conformers with model-drawn
        torsions on the minimised input geometry, picked with probability proportional to exp(-u)/q and briefly
        minimised (the burn-in then equilibrates it); fresh thermal velocities."""
        import openmm

        start = self.base
        if len(self.torsions):
            angles = self.mixture.sample(START_CANDIDATES, self.generator).double()
            candidates = set_torsions(torch.as_tensor(self.base), self.torsions, angles).numpy()
            u = []
            for candidate in candidates:
                self.context.setPositions(candidate)
                u.append(self.energy())
            with torch.no_grad():
                log_w = torch.nan_to_num(-torch.tensor(u) - self.mixture.log_prob(angles).double(), nan=-math.inf)
            if torch.isfinite(log_w).any():
                start = candidates[torch.multinomial(torch.softmax(log_w, 0), 1, generator=self.generator).item()]
        self.context.setPositions(start)
        openmm.LocalEnergyMinimizer.minimize(self.context, 10.0, START_MINIMISATION_STEPS)
        velocity_seed = int(torch.randint(1, 2**30, (1,), generator=self.generator))
        self.context.setVelocitiesToTemperature(self.temperature, velocity_seed)

    def save_state(self) -> dict:
        """Everything :meth:`load_state` needs to continue the chain exactly: the Context's checkpoint (positions,
        velocities, integrator random state), the jump random state and the acceptance counts."""
        return {"context": self.context.createCheckpoint(), "rng": self.generator.get_state(),
                "accepted": self.accepted, "offered": self.offered}

    def load_state(self, state: dict) -> None:
        self.context.loadCheckpoint(state["context"])
        self.generator.set_state(state["rng"])
        self.accepted, self.offered = state["accepted"], state["offered"]

    def energy(self) -> float:
        """Reduced energy of the current positions."""
        return self.context.getState(getEnergy=True).getPotentialEnergy()._value / self.kT

    def state(self) -> tuple[np.ndarray, float]:
        """Positions (nm, float64) and reduced energy."""
        state = self.context.getState(getPositions=True, getEnergy=True)
        return (np.asarray(state.getPositions(asNumpy=True)._value, dtype=np.float64),
                state.getPotentialEnergy()._value / self.kT)

    def round(self, md_steps: int) -> tuple[np.ndarray, float, np.ndarray]:
        """MD, then one jump offer per torsion; returns positions, reduced energy and torsion angles."""
        self.integrator.step(md_steps)
        x, u = self.state()
        angles = compute_dihedrals(x[None], self.torsions.atoms)[0].double()
        proposals = self.mixture.sample(1, self.generator)[0].double()
        with torch.no_grad():
            log_q, log_q_proposed = self.mixture.marginal_log_prob(torch.stack([angles, proposals])).double()
        for k in torch.randperm(len(self.torsions), generator=self.generator).tolist():
            turn = (proposals[k] - angles[k]).reshape(1)
            new_x = rotate_torsion(torch.as_tensor(x)[None], self.torsions, k, turn)[0].numpy()
            self.context.setPositions(new_x)
            new_u = self.energy()
            log_alpha = -(new_u - u) + float(log_q[k] - log_q_proposed[k])
            self.offered += 1
            if metropolis_accept(log_alpha, self.generator):
                x, u = new_x, new_u
                angles[k], log_q[k] = proposals[k], log_q_proposed[k]
                self.accepted += 1
            else:
                self.context.setPositions(x)
        return x, u, angles.numpy()


def sample_md_jumps(system: System, torsions: Torsions, mixture: TorsionMixture, n: int, chains: int | None = None,
                    md_steps: int = 50, burn_in: int = 10, uniform_weight: float = 0.5, seed: int = 0,
                    platform: str | None = None, progress: bool | None = None) -> ChainSamples:
    """``n`` frames from ``chains`` chains of Langevin MD (``md_steps`` per round) with model torsion jumps (one offer
    per torsion per round), after ``burn_in`` rounds each. ``system`` is an OpenMM system made from SMILES. Jumps
    are drawn from the model's marginals blended with the flat density at ``uniform_weight`` (0: the model alone).
    By default there is a chain per :data:`FRAMES_PER_CHAIN` frames, at most :data:`MAX_CHAINS`: the slowest torsions
    change state a few times in hundreds of rounds, so independent starts, not long chains, make most of the
    effective samples."""
    from tqdm import tqdm

    if system.openmm_system is None:
        raise InputError(f"system {system.name!r} has no OpenMM system: MD with torsion jumps needs one")
    if chains is None:
        chains = min(MAX_CHAINS, max(1, n // FRAMES_PER_CHAIN))
    if n < 1 or chains < 1 or md_steps < 1 or burn_in < 0:
        raise InputError(f"need n, chains, md_steps >= 1 and burn_in >= 0; got {n}, {chains}, {md_steps}, {burn_in}")
    if not 0.0 <= uniform_weight < 1.0:
        raise InputError(f"uniform_weight must be in [0, 1), got {uniform_weight}")
    proposal = mixture.with_uniform(uniform_weight) if uniform_weight else mixture
    rounds = math.ceil(n / chains)
    show = sys.stderr.isatty() if progress is None else progress
    bar = tqdm(total=chains * (burn_in + rounds), disable=not show, unit="round", desc=system.name)
    sampler = TorsionJumpChain(system, torsions, proposal, seed, select_platform(platform, system.openmm_system))
    frames = []
    for _ in range(chains):
        sampler.start()
        for _ in range(burn_in):
            sampler.round(md_steps)
            bar.update()
        for _ in range(rounds):
            frames.append(sampler.round(md_steps))
            bar.update()
    bar.close()
    angles = np.stack([f[2] for f in frames]).reshape(chains, rounds, len(torsions))
    energies = np.array([f[1] for f in frames])
    frames = frames[:n]
    measurable = rounds > 2  # an autocorrelation needs a few frames per chain
    per_torsion = np.full(len(torsions), np.nan)
    n_ess = float(n)
    if measurable and len(torsions):
        per_torsion = torsion_ess(angles).clamp(max=n).numpy()
        n_ess = float(per_torsion.min())
    elif measurable:  # MD alone: the ESS of the potential energy
        n_ess = min(float(time_series_ess(torch.as_tensor(energies).reshape(chains, rounds, 1))[0]), float(n))
    starts = START_CANDIDATES * (len(torsions) > 0) + START_MINIMISATION_STEPS
    return ChainSamples(positions=np.stack([f[0] for f in frames]), u=energies[:n],
                        angles=angles.reshape(chains * rounds, len(torsions))[:n],
                        acceptance=sampler.accepted / sampler.offered if sampler.offered else None, ess=n_ess,
                        evaluations=chains * ((burn_in + rounds) * md_steps + starts) + sampler.offered,
                        torsion_ess=per_torsion)
