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

__all__ = ["TorsionJump", "TorsionJumpChain", "sample_md_jumps"]

import math
import sys
from typing import TYPE_CHECKING

import torch

from molsamp.analysis import compute_dihedrals, time_series_ess, torsion_ess
from molsamp.conformers.model import TorsionMixture
from molsamp.conformers.torsions import Torsions, rotate_torsion, set_torsions
from molsamp.errors import InputError
from molsamp.kernels import ChainState, Cycle, MetropolisHastings
from molsamp.md import OpenMMDynamics
from molsamp.openmm_pool import select_platform
from molsamp.samples import Samples

START_CANDIDATES = 32
"""Model-drawn conformers among which each chain picks its start."""
START_MINIMISATION_STEPS = 50
"""Energy minimisation steps that take the clashes out of a chain's start."""
MAX_CHAINS, FRAMES_PER_CHAIN = 32, 16
"""Default number of chains: one per ``FRAMES_PER_CHAIN`` frames asked for, at most ``MAX_CHAINS``."""

if TYPE_CHECKING:
    from molsamp.systems import System
    from molsamp.targets import OpenMMTarget


class TorsionJump:
    """A :class:`~molsamp.kernels.Proposal` on positions ``[1, N, 3]`` (nm): torsion ``k`` turned to an angle drawn
    from the mixture's marginal for it, by rotating one side of the bond rigidly (a volume-preserving map), with
    log ratio log q_k(theta) - log q_k(theta')."""

    def __init__(self, torsions: Torsions, mixture: TorsionMixture, k: int) -> None:
        self.torsions, self.k = torsions, k
        self.marginal = TorsionMixture(mixture.logits[k:k + 1], mixture.means[k:k + 1],
                                       mixture.concentrations[k:k + 1])
        self.atoms = torch.as_tensor(torsions.atoms[k:k + 1])

    @torch.no_grad()
    def propose(self, x: torch.Tensor, generator: torch.Generator | None = None
                ) -> tuple[torch.Tensor, torch.Tensor]:
        angle = compute_dihedrals(x, self.atoms).double()
        proposed, log_q_proposed = self.marginal.sample_and_log_prob(len(x), generator)
        x_new = rotate_torsion(x, self.torsions, self.k, (proposed.double() - angle)[:, 0])
        return x_new, (self.marginal.log_prob(angle) - log_q_proposed).double()


class TorsionJumpChain:
    """One chain of Langevin MD with torsion jumps: each :meth:`round` is the kernel
    ``Cycle([OpenMMDynamics(md_steps), Cycle(jumps, shuffle=True)])``, one Metropolis-Hastings jump offer per
    torsion in random order, on the full energy of ``target`` (default: the system's, evaluated in this process).
    :meth:`start` begins a chain afresh from the model (the input geometry is minimised once), so one object can run
    several chains one after another."""

    def __init__(self, system: System, torsions: Torsions, mixture: TorsionMixture, seed: int, platform: str,
                 md_steps: int, target: OpenMMTarget | None = None) -> None:
        self.dynamics = OpenMMDynamics(system, seed, platform, md_steps)
        self.target = target if target is not None else system.target(n_workers=0, platform=platform)
        self.torsions, self.mixture = torsions, mixture
        self.jumps = [MetropolisHastings(TorsionJump(torsions, mixture, k), self.target) for k in range(len(torsions))]
        self.kernel = Cycle([self.dynamics, Cycle(self.jumps, shuffle=True)])
        self.generator = torch.Generator().manual_seed(seed)
        self.state = self.dynamics.state()
        self.base = self.state.x

    @property
    def accepted(self) -> int:
        return sum(jump.accepted for jump in self.jumps)

    @property
    def offered(self) -> int:
        return sum(jump.offered for jump in self.jumps)

    def reset_counts(self) -> None:
        for jump in self.jumps:
            jump.accepted = jump.offered = 0

    def start(self) -> None:
        """Begin a chain: with rotatable torsions, at one of :data:`START_CANDIDATES` conformers with model-drawn
        torsions on the minimised input geometry, picked with probability proportional to exp(-u)/q and briefly
        minimised (the burn-in then equilibrates it); fresh thermal velocities."""
        from molsamp.openmm_pool import minimise

        start = self.base[0]
        if len(self.torsions):
            angles, log_q = self.mixture.sample_and_log_prob(START_CANDIDATES, self.generator)
            candidates = set_torsions(self.base[0], self.torsions, angles.double())
            with torch.no_grad():
                log_w = torch.nan_to_num(-self.target.energy(candidates) - log_q.double(), nan=-math.inf)
            if torch.isfinite(log_w).any():
                start = candidates[torch.multinomial(torch.softmax(log_w, 0), 1, generator=self.generator).item()]
        context = self.dynamics.context
        context.setPositions(start.numpy())
        minimise(context, START_MINIMISATION_STEPS)
        velocity_seed = int(torch.randint(1, 2**30, (1,), generator=self.generator))
        context.setVelocitiesToTemperature(self.dynamics.temperature, velocity_seed)
        self.state = self.dynamics.state()

    def save_state(self) -> dict:
        """Everything :meth:`load_state` needs to continue the chain exactly: the state, the Context's checkpoint
        (velocities, integrator random state), the jump random state and the acceptance counts."""
        return {"x": self.state.x, "u": self.state.u, "context": self.dynamics.checkpoint(),
                "rng": self.generator.get_state(), "counts": [[j.accepted, j.offered] for j in self.jumps]}

    def load_state(self, saved: dict) -> None:
        self.dynamics.restore(saved["context"])
        self.generator.set_state(saved["rng"])
        self.state = ChainState(saved["x"], saved["u"])
        for jump, (accepted, offered) in zip(self.jumps, saved["counts"]):
            jump.accepted, jump.offered = accepted, offered

    def round(self) -> ChainState:
        """MD, then one jump offer per torsion; returns the new state."""
        self.state = self.kernel.step(self.state, self.generator)
        return self.state


def sample_md_jumps(system: System, torsions: Torsions, mixture: TorsionMixture, n: int, chains: int | None = None,
                    md_steps: int = 50, burn_in: int = 10, uniform_weight: float = 0.5, seed: int = 0,
                    platform: str | None = None, progress: bool | None = None) -> Samples:
    """``n`` frames from ``chains`` chains of Langevin MD (``md_steps`` per round) with model torsion jumps (one offer
    per torsion per round), after ``burn_in`` rounds each, as equally weighted :class:`~molsamp.samples.Samples`:
    positions ``[n, N, 3]`` (nm), reduced energies (kT), ``observables["torsions"]`` ``[n, T]`` (rad), and in
    ``info`` the jump acceptance rate (None without rotatable torsions), the ESS (smallest over torsions of the
    torsion ESS of the chains pooled, as Stan pools them, so chains that sample different states count as few
    samples; without rotatable torsions, the pooled ESS of the potential energy; at most one per frame, and the
    number of frames when too few rounds were run to measure it), the force and energy ``evaluations`` spent
    (minimisation counted at its step limit) and the pooled ESS of each torsion ``torsion_ess`` ``[T]`` (NaN where
    too few frames were drawn to measure it). ``system`` is an OpenMM system made from SMILES. Jumps
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
    sampler = TorsionJumpChain(system, torsions, proposal, seed, select_platform(platform, system.openmm_system),
                               md_steps)
    frames = []
    try:
        for _ in range(chains):
            sampler.start()
            for _ in range(burn_in):
                sampler.round()
                bar.update()
            for _ in range(rounds):
                frames.append(sampler.round())
                bar.update()
    finally:
        bar.close()
        sampler.target.close()
    x, u = torch.cat([f.x for f in frames]), torch.cat([f.u for f in frames])
    angles = compute_dihedrals(x, torsions.atoms).double()
    measurable = rounds > 2  # an autocorrelation needs a few frames per chain
    per_torsion = torch.full((len(torsions),), math.nan, dtype=torch.float64)
    n_ess = float(n)
    if measurable and len(torsions):
        per_torsion = torsion_ess(angles.reshape(chains, rounds, -1)).clamp(max=n)
        n_ess = float(per_torsion.min())
    elif measurable:  # MD alone: the ESS of the potential energy
        n_ess = min(float(time_series_ess(u.reshape(chains, rounds, 1))[0]), float(n))
    starts = START_CANDIDATES * (len(torsions) > 0) + START_MINIMISATION_STEPS
    info = {"sampler": "md-jumps", "seed": seed, "chains": chains, "md_steps": md_steps, "burn_in": burn_in,
            "acceptance": sampler.accepted / sampler.offered if sampler.offered else None, "ess": n_ess,
            "evaluations": chains * ((burn_in + rounds) * md_steps + starts) + sampler.offered,
            "torsion_ess": per_torsion}
    return Samples.unweighted(x[:n], u[:n], observables={"torsions": angles[:n]}, info=info)
