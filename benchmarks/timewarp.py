"""Timewarp benchmark: learned MH proposals and MD with torsion jumps against plain MD on ala2 and held-out
dipeptides, in one run.

For each system with a reference in ``data/peptides/references/`` (made by ``data/peptides/make_md.py``: 20 ns MD,
phi/psi every ps):
- molsamp Timewarp (with ``--model``): ``--chains`` chains of ``--steps`` MH steps, wall time measured;
- molsamp MD with torsion jumps (:mod:`molsamp.peptide_jumps`): ``--chains`` chains of ``--jump-rounds`` rounds of
  ``--md-steps`` MD steps and a uniform jump offer per torsion, on the reference's dynamics;
- after each, plain OpenMM Langevin MD for the same wall time, set up as the reference (no constraints, hydrogen
  mass 3 amu, 2 fs, one CPU thread, a frame per ps).
Reported per method: ESS of phi and psi (autocorrelation, summed over chains) and ESS per second (the smaller of the
two), the 2D Ramachandran JS divergence (36 x 36 bins, nats) against the reference, and the JS of a random subsample
of the reference of the same size (the noise floor at that sample count); the acceptance rate; and the ESS of the
slowest TICA component (TICA of (sin, cos) phi/psi fitted on the reference at a 100 ps lag, ESS with the
autocorrelation truncated at its first zero, as Timewarp does); the Ramachandran basin populations. Each chain's ESS
is at most the number of states it moved to (the start all chains share is not a sample). One JSON line per system
and method.
Usage: ``python benchmarks/timewarp.py [--model models/timewarp-peptides.pt] [--steps 2000] [--chains 16]``.
"""

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np
import openmm
import torch

from molsamp.analysis import first_zero_ess, fit_tica, ramachandran_js, ramachandran_populations
from molsamp.openmm_pool import create_context, openmm_seed
from molsamp.peptide_jumps import run_jump_chains
from molsamp.systems import load, load_flexible
from molsamp.chains import capped_ess, chain_ess, chain_phi_psi, load_chains
from molsamp.timewarp.chains import run_chains
from molsamp.timewarp.model import load_model

ROOT = Path(__file__).resolve().parent.parent
REFERENCES = ROOT / "data" / "peptides" / "references"
TICA_LAG = 100  # frames of the reference (ps)


def features(angles: np.ndarray) -> np.ndarray:
    """(sin, cos) of phi and psi: ``[..., 2]`` angles to ``[..., 4]``."""
    return np.concatenate([np.sin(angles), np.cos(angles)], -1)


def md_for(system_name: str, seconds: float, seed: int) -> np.ndarray:
    """phi/psi ``[frames, 1, 2]`` of plain MD run for ``seconds`` of wall time (set-up included), a frame per ps."""
    start = time.perf_counter()
    system = load_flexible(system_name)
    integrator = openmm.LangevinMiddleIntegrator(system.temperature, system.friction, system.timestep)
    integrator.setRandomNumberSeed(openmm_seed(seed))
    context = create_context(system.openmm_system, integrator, "CPU", threads=1)
    context.setPositions(system.positions)
    context.setVelocitiesToTemperature(system.temperature, openmm_seed(seed))
    steps = round(1.0 / system.timestep)
    frames = []
    while time.perf_counter() - start < seconds:
        integrator.step(steps)
        frames.append(context.getState(getPositions=True).getPositions(asNumpy=True)._value)
    return chain_phi_psi(np.asarray(frames)[:, None], system.topology)


def report(system: str, method: str, angles: np.ndarray, seconds: float, reference: np.ndarray, tica, rng,
           **extra) -> dict:
    """Figures of merit of ``angles [steps, chains, 2]`` sampled in ``seconds``."""
    flat = angles.reshape(-1, 2)
    ess = chain_ess(angles)
    noise = reference[rng.choice(len(reference), len(flat), replace=False)] if len(flat) < len(reference) else reference
    slow = capped_ess(lambda chain: float(first_zero_ess(tica.transform(torch.as_tensor(features(chain)))[:, 0])),
                      angles)
    return {"system": system, "method": method, "samples": len(flat), "wall_time_s": round(seconds, 2),
            "ess_phi": round(float(ess[0]), 1), "ess_psi": round(float(ess[1]), 1),
            "ess_per_s": float(ess.min()) / seconds, "tica_ess": round(slow, 1),
            "tica_ess_per_s": slow / seconds,
            "rama_js": ramachandran_js(flat[:, 0], flat[:, 1], reference[:, 0], reference[:, 1]),
            "rama_js_noise_floor": ramachandran_js(noise[:, 0], noise[:, 1], reference[:, 0], reference[:, 1]),
            "populations": {k: round(v, 4) for k, v in ramachandran_populations(flat[:, 0], flat[:, 1]).items()},
            **extra}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, help="Timewarp checkpoint (without it, no Timewarp rows).")
    parser.add_argument("--steps", type=int, default=2000, help="Timewarp steps per chain.")
    parser.add_argument("--chains", type=int, default=16)
    parser.add_argument("--jump-rounds", type=int, default=640, help="Torsion-jump rounds per chain (0: none).")
    parser.add_argument("--md-steps", type=int, default=50, help="MD steps per torsion-jump round.")
    parser.add_argument("--systems", default="", help="Comma-separated subset (default: every reference).")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    torch.set_num_threads(1)
    model = load_model(args.model) if args.model else None
    rng = np.random.default_rng(args.seed)
    chosen = set(filter(None, args.systems.split(",")))
    for path in sorted(REFERENCES.glob("*.npz")):
        name = path.stem.replace("peptide-", "peptide:")
        if chosen and name not in chosen:
            continue
        with np.load(path) as data:
            reference = np.stack([data["phi"], data["psi"]], 1).astype(np.float64)
        tica = fit_tica(torch.as_tensor(features(reference)), lag=TICA_LAG, dim=1)
        runs = []
        if model is not None:
            runs.append(("timewarp", load(name, constraints=None), lambda system, path: run_chains(
                system, model, path, n_steps=args.steps, n_chains=args.chains, seed=args.seed, progress=False)))
        if args.jump_rounds:
            runs.append(("torsion-jumps", load_flexible(name), lambda system, path: run_jump_chains(
                system, path, args.jump_rounds, n_chains=args.chains, md_steps=args.md_steps, seed=args.seed,
                progress=False)))
        for method, system, run in runs:
            with tempfile.TemporaryDirectory() as folder:
                start = time.perf_counter()
                summary = run(system, Path(folder) / "chain.h5")
                seconds = time.perf_counter() - start
                angles = chain_phi_psi(load_chains(Path(folder) / "chain.h5", args.chains), system.topology)
            print(json.dumps(report(name, method, angles, seconds, reference, tica, rng,
                                    acceptance=summary["acceptance"])), flush=True)
            md = md_for(name, seconds, args.seed)
            print(json.dumps(report(name, "md", md, seconds, reference, tica, rng, compared_with=method)), flush=True)


if __name__ == "__main__":
    main()
