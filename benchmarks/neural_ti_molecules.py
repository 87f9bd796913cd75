"""Neural TI for small rigid molecules in rigid TIP3P water against TI and MBAR of the same Hamiltonian.

The Hamiltonian (:class:`~molsamp.free_energy.rigid_solvation.RigidSolvation`) is the solute's GAFF 1.81/AM1-BCC
parameters at its energy minimum, held rigid, among rigid TIP3P waters in a cube filled to ``--box`` nm and brought
to the volume of 1 bar, then held at constant volume (PME, Lennard-Jones truncated at 0.9 nm or 0.45 of the box,
dispersion correction), 298.15 K. dF = F(coupled) -
F(decoupled) is the hydration free energy of the rigid solute (the vacuum leg is its constant intramolecular
energy, which cancels).

- ``reference NAME``: MD (OpenMM) at t = 0, 1 and ``--windows`` Gauss-Legendre nodes of the untrained
  one-piece :class:`~molsamp.free_energy.solvation_path.SolvationPath` (``charges_last=False``: the solute's
  Lennard-Jones and charges scaled together linearly, soft cores vanishing linearly); every frame's coupling
  energy at every window, dU/dt at its own; MBAR over all windows and TI by quadrature. One window per run, each in
  ``benchmarks/results/neural_ti/<NAME>-tip3p/window-<k>.npz`` (resumable); the end windows' frames go to
  ``frames/`` beside them (not committed: rerun to make them).

- ``train NAME``: :func:`~molsamp.free_energy.neural_hydration.neural_ti_hydration` (what ``molsamp solvation
  --method neural-ti`` runs: its own end-state MD, training, the plain estimate and TI along the learned path) for
  one ``--seed``, its work folder under ``runs/`` (resumable), its record in ``run-seed<S>.json``.
- ``report NAME``: one JSON line with the reference, every finished run and the spread of their estimates.

    python benchmarks/neural_ti_molecules.py reference methane
    python benchmarks/neural_ti_molecules.py train methane --seed 1
    python benchmarks/neural_ti_molecules.py report methane
"""

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

from molsamp.free_energy.hydration import KJ_PER_KCAL
from molsamp.free_energy.neural_hydration import NeuralTISettings, neural_ti_hydration, prepared_system
from molsamp.free_energy.rigid_solvation import RigidSolvation
from molsamp.free_energy.solvation_path import (SolvationPath, gauss_legendre_windows, path_free_energy,
                                                sample_path_windows, window_energies)
from molsamp.openmm_pool import MOLAR_GAS_CONSTANT

SOLUTES = {"methane": "C", "water": "O"}
RESULTS = Path(__file__).resolve().parent / "results" / "neural_ti"
TEMPERATURE = 298.15
FORCEFIELD = "gaff"
"""GAFF 1.81, FreeSolv's calculated column and the project's MBAR benchmark (docs/solvation.md)."""


def setup(name: str, box: float) -> tuple[RigidSolvation, np.ndarray, Path]:
    folder = RESULTS / f"{name}-tip3p"
    (folder / "frames").mkdir(parents=True, exist_ok=True)
    system, positions, n_solute = prepared_system(folder / "frames" / "system.npz", SOLUTES[name],
                                                  NeuralTISettings(box=box, temperature=TEMPERATURE),
                                                  forcefield=FORCEFIELD)
    return RigidSolvation(system, positions, n_solute, temperature=TEMPERATURE), positions, folder


def reference(args: argparse.Namespace) -> None:
    solvation, positions, folder = setup(args.name, args.box)
    path = SolvationPath(solvation, charges_last=False).double()
    times, _ = gauss_legendre_windows(args.windows)
    ends_first = [0, len(times) - 1, *range(1, len(times) - 1)]  # the end states are what neural TI needs
    for k in ends_first:
        record_path = folder / f"window-{k:02d}.npz"
        if record_path.exists():
            continue
        (window,) = sample_path_windows(path, times[k:k + 1], args.frames, positions, interval=args.interval,
                                        equilibration=args.equilibration, seed=args.seed * 100 + k)
        start = time.perf_counter()
        u, dudt = window_energies(path, window, times)
        np.savez_compressed(record_path, t=window.t, times=times, u=u, dudt=dudt, md_steps=window.md_steps,
                            md_wall_s=window.wall_s, energy_wall_s=time.perf_counter() - start,
                            frames=args.frames, interval_ps=args.interval, box_nm=solvation.box)
        if k in (0, len(times) - 1):
            np.save(folder / "frames" / f"window-{k:02d}.npy", window.x)
        print(json.dumps({"window": k, "t": round(window.t, 5), "mean_dudt": float(dudt.mean()),
                          "md_wall_s": round(window.wall_s, 1)}), flush=True)
    result = reference_estimates(folder)
    (folder / "reference.json").write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps(result))


def reference_estimates(folder: Path) -> dict:
    windows = [np.load(path) for path in sorted(folder.glob("window-*.npz"))]
    times = windows[0]["times"]
    if len(windows) != len(times):
        raise SystemExit(f"{folder}: {len(windows)} of {len(times)} windows done; run `reference` again")
    weights = gauss_legendre_windows(len(times) - 2)[1]
    result = path_free_energy(times, weights, [w["u"] for w in windows], [w["dudt"] for w in windows])
    kcal = MOLAR_GAS_CONSTANT * TEMPERATURE / KJ_PER_KCAL
    for method in ("mbar", "ti"):
        result[f"{method}_dG_kcal_mol"] = result[f"{method}_dF_kT"] * kcal
        result[f"{method}_err_kcal_mol"] = result[f"{method}_err_kT"] * kcal
    result.update(box_nm=float(windows[0]["box_nm"]), frames_per_window=int(windows[0]["frames"]),
                  interval_ps=float(windows[0]["interval_ps"]),
                  md_steps=int(sum(w["md_steps"] for w in windows)),
                  end_state_md_steps=int(windows[0]["md_steps"] + windows[-1]["md_steps"]),
                  md_wall_s=float(sum(w["md_wall_s"] for w in windows)),
                  energy_wall_s=float(sum(w["energy_wall_s"] for w in windows)))
    return result


def train(args: argparse.Namespace) -> None:
    folder = RESULTS / f"{args.name}-tip3p"
    folder.mkdir(parents=True, exist_ok=True)
    settings = NeuralTISettings(box=args.box, steps=args.steps, windows=args.windows, seed=args.seed)
    record = neural_ti_hydration(SOLUTES[args.name], settings, forcefield=FORCEFIELD, workdir=folder / "runs")
    record["workdir"] = str(Path(record["workdir"]).relative_to(RESULTS.parents[2]))
    (folder / f"run-seed{args.seed}.json").write_text(json.dumps(record, indent=1) + "\n")
    print(json.dumps(record))


def report(args: argparse.Namespace) -> None:
    folder = RESULTS / f"{args.name}-tip3p"
    reference_path = folder / "reference.json"
    result = {"system": f"{args.name}-tip3p",
              "reference": json.loads(reference_path.read_text()) if reference_path.exists() else None, "runs": []}
    for path in sorted(folder.glob("run-seed*.json")):
        record = json.loads(path.read_text())
        result["runs"].append({"seed": record["settings"]["seed"], **record["estimates_kcal_mol"],
                               "training_wall_s": record["training"]["wall_time_s"],
                               "md_steps": record["md_steps"], "end_state_md_steps": record["end_state_md_steps"],
                               "wall_s": record["wall_time_s"]})
    if len(result["runs"]) > 1:
        for estimate in ("ti_along_learned_path", "plain"):
            values = [run[estimate][0] for run in result["runs"]]
            result[f"{estimate}_spread_kcal_mol"] = max(values) - min(values)
    print(json.dumps(result))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    run = commands.add_parser("reference", help="MD windows, MBAR and TI of the untrained path")
    run.add_argument("name", choices=sorted(SOLUTES))
    run.add_argument("--box", type=float, default=NeuralTISettings.box, help="cube edge before the 1 bar MD (nm)")
    run.add_argument("--windows", type=int, default=12, help="inner Gauss-Legendre windows")
    run.add_argument("--frames", type=int, default=400, help="frames per window")
    run.add_argument("--interval", type=float, default=0.5, help="ps between frames")
    run.add_argument("--equilibration", type=float, default=20.0, help="ps of MD discarded per window")
    run.add_argument("--seed", type=int, default=0)
    run = commands.add_parser("train", help="neural TI of one seed, as molsamp solvation --method neural-ti")
    run.add_argument("name", choices=sorted(SOLUTES))
    run.add_argument("--box", type=float, default=NeuralTISettings.box, help="cube edge (nm)")
    run.add_argument("--steps", type=int, default=NeuralTISettings.steps, help="score-matching steps")
    run.add_argument("--windows", type=int, default=NeuralTISettings.windows, help="inner windows of the TI")
    run.add_argument("--seed", type=int, default=1)
    run = commands.add_parser("report", help="one JSON line: reference, runs, spread")
    run.add_argument("name", choices=sorted(SOLUTES))
    args = parser.parse_args()
    torch.set_num_threads(1)
    {"reference": reference, "train": train, "report": report}[args.command](args)


if __name__ == "__main__":
    main()
