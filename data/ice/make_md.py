"""MD of ice XI on a ladder of temperatures, and MBAR over it: the reference free energies of the rigid-body flows.

Each temperature and seed is one run: rigid TIP4P/Ew (SETTLE), Langevin friction 1/ps, 2 fs, constant volume, from
the minimised crystal of ``systems/<system>.pdb``, ``--equilibration`` ps discarded, then ``--ps`` ps with a frame
every ``--every`` ps, OpenMM's CPU platform with one thread (the same seed gives the same frames on the same
machine). Trajectories go to ``data/ice/md/`` (ignored by git; an interrupted run resumes). The temperatures are
geometric between ``--low`` and ``--high`` K through ``--through`` K with ratio at most ``--ratio``: neighbours must
overlap in energy, whose relative spread shrinks as 1/sqrt(molecules) (1.12 is ample for 16 molecules).

Each finished run is recorded in ``data/ice/<system>/<T>K-seed<s>.npz`` (the data set, committed; a recorded run is
not run again, so a ladder may be built over several sessions): the potential energy (kJ/mol) of every production
frame (the input of MBAR at constant volume: u_k(x) = U(x) / R T_k) and, at the ``--keep`` temperatures, the
rigid-body states (reference point nm, quaternion w >= 0; float32) of every ``--keep-every``-th frame
(:func:`molsamp.flows.crystals.load_md_ladder` reads the folder). Prints each run, then the MBAR free energies (kT)
from the highest temperature to each kept one, with errors and the worst neighbour overlap.

    python data/ice/make_md.py ice-xi-16 [--ratio 1.12] [--ps 400] [--seeds 1 2]
"""

import argparse
import dataclasses
import json
from pathlib import Path

import numpy as np
import torch

from molsamp.flows.crystals import load_md_ladder
from molsamp.flows.rigid_bodies import RigidBodies, water_body
from molsamp.free_energy.mbar import temperature_mbar
from molsamp.md import run_md
from molsamp.systems import load
from molsamp.trajectories import load_trajectory

HERE = Path(__file__).resolve().parent


def ladder(low: float, high: float, through: float, ratio: float) -> np.ndarray:
    """Geometric temperatures from ``low`` to ``high`` (K) that include ``through``, neighbours at most ``ratio``
    apart."""
    parts = []
    for start, stop in ((low, through), (through, high)):
        if stop > start:
            n = int(np.ceil(np.log(stop / start) / np.log(ratio)))
            parts.append(np.geomspace(start, stop, n + 1)[:-1])
    return np.round(np.concatenate([*parts, [high]]), 2)


def record_run(system_name: str, temperature: float, seed: int, keep: bool, args: argparse.Namespace) -> Path:
    """Run (or resume) the MD at ``temperature`` K with ``seed`` and record it; an existing record is kept."""
    record = HERE / system_name / f"{temperature:.2f}K-seed{seed}.npz"
    if record.is_file():
        return record
    system = dataclasses.replace(load(system_name), temperature=float(temperature))
    path = HERE / "md" / f"{system_name}-{temperature:.2f}K-seed{seed}.h5"
    path.parent.mkdir(parents=True, exist_ok=True)
    if not path.is_file():
        run_md(system, path, duration=args.equilibration + args.ps, save_every=args.every, seed=seed,
               platform="CPU", progress=False, checkpoint_every=500)
    trajectory, energies = load_trajectory(path)
    skip = int(round(args.equilibration / args.every))
    arrays = {"temperature": float(temperature), "seed": seed, "energies": np.asarray(energies)[skip:],
              "frame_interval_ps": args.every, "equilibration_ps": args.equilibration}
    if keep:
        frames = torch.as_tensor(trajectory.xyz[skip::args.keep_every], dtype=torch.float64)
        centres, q = RigidBodies(water_body(system.openmm_system)).bodies(frames)
        arrays["state"] = torch.cat([centres, q], -1).numpy().astype(np.float32)
    record.parent.mkdir(exist_ok=True)
    np.savez_compressed(record, **arrays)
    u = arrays["energies"]
    print(json.dumps({"temperature": float(temperature), "seed": seed, "frames": len(u),
                      "mean_energy_kJ_mol": float(u.mean()), "std_energy_kJ_mol": float(u.std())}), flush=True)
    return record


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("system")
    parser.add_argument("--low", type=float, default=50.0)
    parser.add_argument("--high", type=float, default=250.0)
    parser.add_argument("--through", type=float, default=100.0)
    parser.add_argument("--ratio", type=float, default=1.12)
    parser.add_argument("--equilibration", type=float, default=40.0, help="ps")
    parser.add_argument("--ps", type=float, default=400.0, help="production, ps")
    parser.add_argument("--every", type=float, default=0.2, help="ps between frames")
    parser.add_argument("--keep", type=float, nargs="*", default=[50.0, 100.0, 250.0],
                        help="temperatures whose frames are kept (rigid-body coordinates)")
    parser.add_argument("--keep-every", type=int, default=2, help="keep every n-th frame there")
    parser.add_argument("--seeds", type=int, nargs="+", default=[1])
    args = parser.parse_args()
    temperatures = ladder(args.low, args.high, args.through, args.ratio)[::-1]  # from the highest down
    for seed in args.seeds:
        for temperature in temperatures:
            record_run(args.system, temperature, seed, bool(np.isclose(temperature, args.keep).any()), args)
    md = load_md_ladder(HERE / args.system)
    for target in sorted(args.keep, reverse=True):
        if not np.isclose(md.temperatures[1:], target).any():
            continue
        estimate = temperature_mbar(md.temperatures, md.energies, md.temperatures[0], target)
        print(json.dumps({"system": args.system, "from_K": float(md.temperatures[0]), "to_K": target,
                          "runs": len(args.seeds), "delta_f_kT": estimate.delta_f, "error_kT": estimate.error,
                          "decorrelated_samples": estimate.samples_per_state.tolist(),
                          "worst_neighbour_overlap": float(estimate.neighbour_overlap.min())}), flush=True)


if __name__ == "__main__":
    main()
