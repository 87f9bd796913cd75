"""MD of ice XI on a ladder of temperatures, and MBAR over it: the reference free energies of the rigid-body flows.

Each temperature: rigid TIP4P/Ew (SETTLE), Langevin friction 1/ps, 2 fs, constant volume, from the minimised crystal
of ``systems/<system>.pdb``, ``--equilibration`` ps discarded, then ``--ps`` ps with a frame every ``--every`` ps,
OpenMM's CPU platform with one thread (the same seed gives the same frames on the same machine). Trajectories go to
``data/ice/md/`` (ignored by git; runs resume after an interruption). The temperatures are geometric between
``--low`` and ``--high`` K through ``--through`` K with ratio at most ``--ratio``: neighbours must overlap in
energy, whose relative spread shrinks as 1/sqrt(molecules) (1.12 suits 16 molecules, 1.04 128).

``data/ice/<system>.npz`` keeps the potential energy (kJ/mol) of every production frame at every temperature (the
input of MBAR at constant volume: u_k(x) = U(x) / R T_k), and the rigid-body coordinates (reference point nm,
quaternion w >= 0; float32) of every other frame at ``--keep`` temperatures. Prints the MBAR free energies (kT)
relative to the highest temperature, with errors, and the worst neighbour overlap.

    python data/ice/make_md.py ice-xi-16 [--ratio 1.12] [--ps 400]
"""

import argparse
import dataclasses
import json
from pathlib import Path

import numpy as np
import torch

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


def production(system_name: str, temperature: float, args: argparse.Namespace) -> tuple[np.ndarray, np.ndarray]:
    """Positions ``[F, N, 3]`` (nm) and potential energies ``[F]`` (kJ/mol) of the production frames at one
    temperature (run, resumed or reused)."""
    system = dataclasses.replace(load(system_name), temperature=float(temperature))
    path = HERE / "md" / f"{system_name}-{temperature:.2f}K.h5"
    path.parent.mkdir(parents=True, exist_ok=True)
    run_md(system, path, duration=args.equilibration + args.ps, save_every=args.every, seed=args.seed,
           platform="CPU", progress=False, checkpoint_every=500)
    trajectory, energies = load_trajectory(path)
    skip = int(round(args.equilibration / args.every))
    return trajectory.xyz[skip:], np.asarray(energies)[skip:]


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
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    temperatures = ladder(args.low, args.high, args.through, args.ratio)[::-1]  # from the highest down
    rigid = RigidBodies(water_body(load(args.system).openmm_system))
    energies, kept = [], {}
    for temperature in temperatures:
        x, u = production(args.system, temperature, args)
        energies.append(u)
        if any(np.isclose(temperature, args.keep)):
            centres, q = rigid.bodies(torch.as_tensor(x[::2], dtype=torch.float64))
            kept[f"state_{temperature:g}K"] = torch.cat([centres, q], -1).numpy().astype(np.float32)
        print(json.dumps({"temperature": float(temperature), "frames": len(u), "mean_energy_kJ_mol": float(u.mean()),
                          "std_energy_kJ_mol": float(u.std())}), flush=True)
    np.savez_compressed(HERE / f"{args.system}.npz", temperatures=temperatures, energies=np.stack(energies),
                        frame_interval_ps=args.every, seed=args.seed, **kept)
    for target in sorted(args.keep, reverse=True):
        if not np.isclose(temperatures[1:], target).any():
            continue
        estimate = temperature_mbar(temperatures, energies, temperatures[0], target)
        print(json.dumps({"system": args.system, "from_K": float(temperatures[0]), "to_K": target,
                          "delta_f_kT": estimate.delta_f, "error_kT": estimate.error,
                          "decorrelated_samples": estimate.samples_per_state.tolist(),
                          "worst_neighbour_overlap": float(estimate.neighbour_overlap.min())}), flush=True)

if __name__ == "__main__":
    main()
