"""MD of capped dipeptides for Timewarp: training trajectories (regenerated, not committed) and long references
(committed as backbone dihedrals only).

- Training: ``TRAIN`` (ala2 and 9 more, ACE-X-NME), ``--train-ns`` each, a frame per ps, written to
  ``data/peptides/md/<name>.h5`` (ignored by git). OpenMM's CPU platform with one thread and a fixed seed makes the
  same frames on the same machine, so the training set is reproducible from this script.
- References: ala2 and ``HELD_OUT`` (never trained on), ``--reference-ns`` each, a frame per ps; their phi/psi
  (rad, float32) go to ``data/peptides/references/<name>.npz`` (kept in git, small).
All systems: amber ff14SB + OBC2, 300 K, Langevin friction 1/ps, and, as the Timewarp Metropolis-Hastings target,
no constraints: every bond keeps its energy term and its thermal length fluctuation, which the proposal must learn.
Hydrogen masses are repartitioned to 3 amu, so the flexible bonds take a 2 fs step (masses do not change the
distribution of positions).
Runs resume after an interruption. Usage: ``python data/peptides/make_md.py [--train-ns 2] [--reference-ns 20]
[--only NAME]``.
"""

import argparse
from pathlib import Path

import numpy as np

from molsamp.analysis import backbone_dihedral_indices, compute_dihedrals
from molsamp.md import run_md
from molsamp.trajectories import load_trajectory
from molsamp.systems import load_flexible

HERE = Path(__file__).resolve().parent
TRAIN = ["ala2", "peptide:G", "peptide:V", "peptide:L", "peptide:S", "peptide:T", "peptide:N", "peptide:D",
         "peptide:K", "peptide:F"]
HELD_OUT = ["peptide:M", "peptide:Y", "peptide:R"]
"""Dipeptides kept out of training, for the transfer benchmark."""


def file_name(system: str) -> str:
    return system.replace("peptide:", "peptide-")


def trajectory(system: str, ns: float, folder: Path, seed: int) -> Path:
    """Run (or resume, or reuse) ``ns`` of MD of ``system``."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{file_name(system)}.h5"
    if not path.exists():
        flexible = load_flexible(system)
        run_md(flexible, path, duration=ns * 1000.0, save_every=1.0, seed=seed, platform="CPU", checkpoint_every=500)
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--train-ns", type=float, default=2.0)
    parser.add_argument("--reference-ns", type=float, default=20.0)
    parser.add_argument("--only", help="Run only this system.")
    args = parser.parse_args()
    for system in TRAIN:
        if args.only in (None, system):
            print(f"{system}: {trajectory(system, args.train_ns, HERE / 'md', seed=1)}", flush=True)
    for system in ["ala2", *HELD_OUT]:
        if args.only not in (None, system):
            continue
        path = trajectory(system, args.reference_ns, HERE / "md" / "references", seed=2)
        traj, _ = load_trajectory(path)
        indices = backbone_dihedral_indices(traj.topology)
        angles = compute_dihedrals(traj.xyz, np.concatenate([indices["phi"], indices["psi"]])).numpy()
        output = HERE / "references" / f"{file_name(system)}.npz"
        output.parent.mkdir(exist_ok=True)
        if not output.exists():
            np.savez_compressed(output, phi=angles[:, 0].astype(np.float32), psi=angles[:, 1].astype(np.float32),
                                frame_interval_ps=1.0, duration_ns=len(angles) / 1000.0)
        print(f"{system}: reference {output}", flush=True)


if __name__ == "__main__":
    main()
