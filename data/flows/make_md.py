"""MD of alanine dipeptide in vacuum for its Boltzmann generator: a training trajectory (regenerated, not committed)
and an independent reference (committed, compact).

Both: amber ff14SB in vacuum, 300 K, Langevin friction 1/ps, every bond flexible (the flow's target has every bond
term) with hydrogens of 3 amu for a 2 fs step (masses do not change the distribution of positions), a frame per ps,
OpenMM's CPU platform with one thread (the same seed gives the same frames on the same machine). Runs resume after an
interruption. ``--platform Reference`` runs the training trajectory about 30 times faster (8 us per step against
0.3 ms on one thread: a seeded LangevinMiddleIntegrator costs the CPU platform about 0.26 ms per step whatever the
system's size, which dominates for 22 atoms); the 100 ns training set of ``models/ala2-vacuum-flow.md`` is
``--ns 100 --training-only --platform Reference --output data/flows/md/ala2-vacuum-100ns.h5`` (7 minutes).

- Training: seed 1, ``--ns`` ns, written to ``data/flows/md/ala2-vacuum.h5`` (ignored by git), the ``--data`` of
  ``molsamp train flow ala2-vacuum``.
- Reference: seed 2, ``--ns`` ns; ``data/flows/ala2-vacuum.npz`` keeps phi/psi (rad) of every frame, and positions
  (nm, centred, float32) and reduced energies of every 10th frame.

    python data/flows/make_md.py [--ns 10] [--training-only] [--output data/flows/md/ala2-vacuum.h5]

Prints the convergence check of each run: the JS divergence between the Ramachandran histograms of its two halves.
"""

import argparse
import json
from pathlib import Path

import numpy as np
import torch

from molsamp.analysis import backbone_dihedral_indices, compute_dihedrals, ramachandran_js
from molsamp.md import run_md
from molsamp.systems import load_flexible
from molsamp.trajectories import load_trajectory

HERE = Path(__file__).resolve().parent
SYSTEM = "ala2-vacuum"
KEEP_EVERY = 10


def trajectory(ns: float, seed: int, path: Path, platform: str = "CPU") -> tuple[np.ndarray, np.ndarray]:
    """Positions ``[F, N, 3]`` (nm) and phi/psi ``[F, 2]`` (rad) of ``ns`` of MD (run, resumed or reused)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    run_md(load_flexible(SYSTEM), path, duration=ns * 1000.0, save_every=1.0, seed=seed, platform=platform,
           checkpoint_every=500)
    traj, _ = load_trajectory(path)
    indices = backbone_dihedral_indices(traj.topology)
    angles = compute_dihedrals(traj.xyz, np.concatenate([indices["phi"], indices["psi"]])).numpy()
    half = len(angles) // 2
    print(json.dumps({"trajectory": str(path), "frames": len(angles),
                      "js_halves": ramachandran_js(angles[:half, 0], angles[:half, 1], angles[half:, 0],
                                                           angles[half:, 1])}), flush=True)
    return traj.xyz, angles


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ns", type=float, default=10.0)
    parser.add_argument("--training-only", action="store_true", help="leave the committed reference as it is")
    parser.add_argument("--output", type=Path, default=HERE / "md" / f"{SYSTEM}.h5", help="training trajectory (HDF5)")
    parser.add_argument("--platform", default="CPU",
                        help="OpenMM platform of the training run (Reference: about 30 times faster for this molecule)")
    args = parser.parse_args()
    trajectory(args.ns, 1, args.output, args.platform)
    if args.training_only:
        return
    x, angles = trajectory(args.ns, 2, HERE / "md" / f"{SYSTEM}-reference.h5")
    kept = x[KEEP_EVERY - 1::KEEP_EVERY]
    kept = kept - kept.mean(1, keepdims=True)
    target = load_flexible(SYSTEM).target(n_workers=0)
    energy = target.energy(torch.as_tensor(kept, dtype=torch.float64)).numpy()
    np.savez_compressed(HERE / f"{SYSTEM}.npz", x=kept.astype(np.float32), energy_kT=energy,
                        phi=angles[:, 0].astype(np.float32), psi=angles[:, 1].astype(np.float32),
                        frame_interval_ps=1.0, kept_every=KEEP_EVERY, seed=2)
    print(json.dumps({"reference": str(HERE / f"{SYSTEM}.npz"), "samples": len(kept)}), flush=True)


if __name__ == "__main__":
    main()
