"""Reference torsion ensembles for the conformer benchmark: Langevin MD of each benchmark molecule.

For every molecule of ``data/drugs/benchmark.smi``: MD with the same force field as molsamp's conformer sampler
(GAFF2/AM1-BCC, OBC2, 300 K), frames every ``--save-every`` ps; the heavy-atom rotatable torsions of every frame are
stored in ``data/conformer_references/<name>.npz`` (small), with the Jensen-Shannon divergence between the two halves
of the run for each torsion: a torsion whose halves disagree (JS > 0.02) is not converged. Trajectories stay in
``--workdir`` (not committed); an interrupted run resumes where it stopped. Prints one JSON line per molecule.

With ``--uniform-jumps`` the reference is instead the same length of MD in 4 chains with a jump of every rotatable
torsion to a uniformly drawn angle every 0.1 ps, accepted by Metropolis-Hastings on the full energy
(``molsamp.conformers.sample_md_jumps`` with a flat proposal: no learned model). It crosses the barriers that plain
MD does not cross in nanoseconds (hindered N-alkyl rotors of amides, crowded aryl rotors), and goes to
``data/conformer_references/uniform_jumps/`` with the same fields (a frame per ps).

Usage: ``python benchmarks/conformer_references.py --ns 5 [--only bench0 bench3] [--workdir /tmp/molsamp-md]
[--uniform-jumps]``.
"""

import argparse
import json
import time
from pathlib import Path

import numpy as np

from molsamp.analysis import compute_dihedrals, torsion_ess, torsion_js
from molsamp.conformers import Torsions, read_smiles, rotatable_torsions, sample_md_jumps
from molsamp.conformers.model import TorsionMixture
from molsamp.forcefields import parametrize
from molsamp.md import run_md
from molsamp.trajectories import load_trajectory
from molsamp.systems import System, from_smiles

ROOT = Path(__file__).resolve().parent.parent


def md_angles(system: System, heavy: np.ndarray, ns: float, save_every: float, workdir: Path, seed: int) -> np.ndarray:
    """Heavy-atom torsions of plain Langevin MD (the trajectory is kept in ``workdir`` and reused)."""
    trajectory = workdir / f"{system.name}.h5"
    if not trajectory.exists():
        run_md(system, trajectory, duration=ns * 1000.0, save_every=save_every, seed=seed)
    traj, _ = load_trajectory(trajectory)
    return compute_dihedrals(traj.xyz, heavy).numpy()


def uniform_jump_angles(system: System, torsions: Torsions, ns: float, save_every: float, seed: int) -> np.ndarray:
    """Heavy-atom torsions of MD with uniform torsion jumps every 0.1 ps, ``ns`` in 4 chains, every ``save_every``."""
    md_steps = round(0.1 / system.timestep)
    rounds_per_frame = round(save_every / 0.1)
    chains = sample_md_jumps(system, torsions, TorsionMixture.uniform(len(torsions)),
                             round(ns * 1000.0 / 0.1), chains=4, md_steps=md_steps, burn_in=20, seed=seed,
                             progress=True)
    return chains.observables["torsions"].numpy()[rounds_per_frame - 1::rounds_per_frame][:, torsions.heavy]


def reference(name: str, smiles: str, ns: float, save_every: float, workdir: Path, seed: int,
              uniform_jumps: bool) -> dict:
    system = from_smiles(smiles, name=name)
    torsions = rotatable_torsions(system.molecule)
    heavy = torsions.atoms[torsions.heavy]
    start = time.perf_counter()
    if uniform_jumps:
        angles = uniform_jump_angles(system, torsions, ns, save_every, seed)
    else:
        angles = md_angles(system, heavy, ns, save_every, workdir, seed)
    wall = time.perf_counter() - start
    angles = angles.astype(np.float32)
    half = len(angles) // 2
    halves = [torsion_js(angles[:half, [t]], angles[half:, [t]]) for t in range(angles.shape[1])]
    ess = torsion_ess(angles).numpy()
    folder = ROOT / "data" / "conformer_references" / ("uniform_jumps" if uniform_jumps else "")
    folder.mkdir(exist_ok=True)
    np.savez_compressed(folder / f"{name}.npz", angles=angles, torsions=heavy,
                        smiles=smiles, ns=ns, save_every_ps=save_every, seed=seed, half_js=np.array(halves),
                        ess=ess, md_wall_s=wall, recipe=parametrize(system.smiles).recipe)
    return {"benchmark": "conformer_reference", "name": name, "smiles": smiles, "ns": ns, "frames": len(angles),
            "heavy_torsions": len(heavy), "half_js": [round(h, 4) for h in halves],
            "unconverged": [int(t) for t, h in enumerate(halves) if h > 0.02], "ess": [round(float(e), 1) for e in ess],
            "md_wall_s": round(wall, 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--ns", type=float, default=5.0)
    parser.add_argument("--save-every", type=float, default=1.0, help="ps")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--only", nargs="*", help="names of the molecules to run")
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/molsamp-md"))
    parser.add_argument("--uniform-jumps", action="store_true", help="MD with uniform torsion jumps (see above)")
    args = parser.parse_args()
    args.workdir.mkdir(parents=True, exist_ok=True)
    for name, smiles in [(n, s) for n, s in read_smiles(ROOT / "data" / "drugs" / "benchmark.smi")
                         if not args.only or n in args.only]:
        print(json.dumps(reference(name, smiles, args.ns, args.save_every, args.workdir, args.seed,
                                          args.uniform_jumps)), flush=True)


if __name__ == "__main__":
    main()
