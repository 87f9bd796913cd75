"""Neural TI against MBAR and standard TI on the Lennard-Jones solute (Mate, Fleuret and Bereau's first system).

All three estimate the solute's excess chemical potential dF = F(coupled) - F(decoupled) (kT) of the same
Hamiltonian (:class:`~molsamp.free_energy.lj_solute.LennardJonesSolute`: no cutoff, minimum image, density 0.7,
kT = epsilon, solute sigma and epsilon twice the solvent's):

- ``reference``: exact HMC at the couplings 0, 1 and ``--windows`` Gauss-Legendre nodes between (parallel chains
  from a lattice, equilibration discarded), one window per run, each recorded in
  ``benchmarks/results/neural_ti/<system>/window-<k>.npz`` (resumable); MBAR over all windows and standard TI by
  Gauss-Legendre quadrature of <dU/dlambda> over the nodes, both from the same samples, each window subsampled by
  the statistical inefficiency over its chains.
- ``train``: neural TI by the authors' recipe (:class:`~molsamp.free_energy.neural_ti.TrainingSettings`) on the
  two end windows' samples, solute-centred and Hungarian-paired; ``--network none`` learns the four soft-core
  schedules only, ``gnn`` adds the message-passing correction. Checkpointed to ``<system>/<name>.pt`` every
  ``--checkpoint-every`` steps (rerun the command to resume; ``--steps`` may be raised later); at the end it writes
  ``<name>.json``: the running estimate, the Gauss-Legendre estimate over fresh interpolated pairs, and the one
  after HMC refinement on U_theta (exact for a converged refinement).
- ``report``: one JSON line per system with the references and every finished training run, the spread over seeds,
  energy evaluations (end-state sampling, window sampling, potential and network evaluations) and wall times.

    python benchmarks/neural_ti.py reference lj-128
    python benchmarks/neural_ti.py train lj-128 schedule-seed1 --network none --seed 1
    python benchmarks/neural_ti.py report lj-128
"""

import argparse
import dataclasses
import json
import math
import time
from pathlib import Path

import numpy as np
import torch

from molsamp.free_energy import mbar
from molsamp.free_energy._quiet import quiet_import
from molsamp.free_energy.lj_solute import LennardJonesInterpolant, LennardJonesSolute
from molsamp.free_energy.neural_ti import (EndStates, Interpolant, TrainingSettings, neural_ti_estimate,
                                          train_neural_ti)
from molsamp.free_energy.solvent_gnn import SolventMessagePassing

SYSTEMS = {"lj-32": LennardJonesSolute(n_solvent=32), "lj-128": LennardJonesSolute(n_solvent=128),
           "lj-512": LennardJonesSolute(n_solvent=512)}
"""lj-512 is the authors' system; lj-128 and lj-32 the same fluid in boxes of 5.68 and 3.58 sigma: lj-128 trains
the schedules on one CPU core, lj-32 also the message-passing correction."""
RESULTS = Path(__file__).resolve().parent / "results" / "neural_ti"
NODES = 32
"""Gauss-Legendre nodes of the estimates after training."""
REFINE_LEAPFROG = 10
"""Leapfrog steps per HMC trajectory of the refinement."""


def couplings(windows: int) -> np.ndarray:
    nodes = 0.5 * (np.polynomial.legendre.leggauss(windows)[0] + 1)
    return np.concatenate([[0.0], nodes, [1.0]])


def reference(args: argparse.Namespace) -> None:
    system, folder = SYSTEMS[args.system], RESULTS / args.system
    folder.mkdir(parents=True, exist_ok=True)
    lambdas = couplings(args.windows)
    ends_first = [0, len(lambdas) - 1, *range(1, len(lambdas) - 1)]  # the end states are what neural TI needs
    for k, coupling in ((k, lambdas[k]) for k in ends_first):
        path = folder / f"window-{k:02d}.npz"
        if path.exists():
            continue
        start = time.perf_counter()
        generator = torch.Generator().manual_seed(1000 * args.seed + k)
        run = system.sample(float(coupling), n_chains=args.chains, n_samples=args.samples,
                            steps_between=args.steps_between, equilibration_steps=args.equilibration,
                            generator=generator)
        with torch.no_grad():
            u_kn = torch.stack([system.coupled_energy(run.x, float(other)) for other in lambdas]).numpy()
        dudc = np.concatenate([_dudc(system, chunk, float(coupling)) for chunk in run.x.split(64)])
        record = dict(coupling=coupling, couplings=lambdas, chains=args.chains, u_kn=u_kn, dudc=dudc,
                      evaluations=run.evaluations, acceptance=run.acceptance, wall_s=time.perf_counter() - start)
        if k in (0, len(lambdas) - 1):
            record["x"] = run.x.numpy().astype(np.float32)
        np.savez_compressed(path, **record)
        print(json.dumps({"window": k, "coupling": float(coupling), "acceptance": round(run.acceptance, 3),
                          "mean_dudc": float(dudc.mean()), "wall_s": round(record["wall_s"], 1)}), flush=True)
    result = reference_estimates(folder)
    (folder / "reference.json").write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps(result))


def _dudc(system: LennardJonesSolute, x: torch.Tensor, coupling: float) -> np.ndarray:
    c = torch.full((len(x),), coupling, dtype=x.dtype, requires_grad=True)
    (grad,) = torch.autograd.grad(system.coupled_energy(x, c).sum(), c)
    return grad.numpy()


def _decorrelated(series: np.ndarray, chains: int) -> tuple[np.ndarray, float]:
    """Indices of every ceil(g)-th sample of each chain (samples chain-major) and g, the statistical inefficiency
    of ``series`` over the chains."""
    timeseries = quiet_import("pymbar.timeseries")
    per_chain = series.reshape(chains, -1)
    g = float(timeseries.statistical_inefficiency_multiple(list(per_chain))) if np.ptp(series) > 1e-12 else 1.0
    stride = math.ceil(g)
    n = per_chain.shape[1]
    return (np.arange(chains)[:, None] * n + np.arange(0, n, stride)[None]).ravel(), g


def reference_estimates(folder: Path) -> dict:
    windows = [np.load(path) for path in sorted(folder.glob("window-*.npz"))]
    lambdas = windows[0]["couplings"]
    if len(windows) != len(lambdas):
        raise SystemExit(f"{folder}: {len(windows)} of {len(lambdas)} windows done; run `reference` again")
    kept, ti_means, ti_errors = [], [], []
    for k, window in enumerate(windows):
        u = window["u_kn"]
        neighbour = k + 1 if k + 1 < len(u) else k - 1
        index, _ = _decorrelated(u[neighbour] - u[k], int(window["chains"]))
        kept.append(u[:, index])
        _, g = _decorrelated(window["dudc"], int(window["chains"]))
        ti_means.append(window["dudc"].mean())
        ti_errors.append(window["dudc"].std(ddof=1) * math.sqrt(g / len(window["dudc"])))
    estimate = mbar(np.concatenate(kept, axis=1), [k.shape[1] for k in kept])
    weights = 0.5 * np.polynomial.legendre.leggauss(len(lambdas) - 2)[1]
    evaluations = int(sum(w["evaluations"] for w in windows))
    return {"mbar_dF_kT": estimate.delta_f, "mbar_err_kT": estimate.error,
            "ti_dF_kT": float(weights @ np.array(ti_means[1:-1])),
            "ti_err_kT": float(np.sqrt(weights**2 @ np.array(ti_errors[1:-1]) ** 2)),
            "windows": len(lambdas), "couplings": [round(float(c), 5) for c in lambdas],
            "decorrelated_samples": [int(k.shape[1]) for k in kept],
            "worst_neighbour_overlap": float(estimate.neighbour_overlap.min()),
            "acceptance": [round(float(w["acceptance"]), 3) for w in windows],
            "energy_evaluations": evaluations,
            "end_state_energy_evaluations": int(windows[0]["evaluations"] + windows[-1]["evaluations"]),
            "wall_s": float(sum(w["wall_s"] for w in windows)),
            "mean_dudc": [round(float(m), 3) for m in ti_means]}


def end_states(system: LennardJonesSolute, folder: Path) -> EndStates:
    paths = sorted(folder.glob("window-*.npz"))
    if len(paths) < 2:
        raise SystemExit(f"{folder}: no end-state windows; run `reference` first")
    x0, x1 = (torch.as_tensor(np.load(paths[i])["x"]) for i in (0, -1))
    return EndStates.from_energies(x0, lambda x: system.coupled_energy(x, 0.0),
                                   x1, lambda x: system.coupled_energy(x, 1.0))


def interpolating_potential(system: LennardJonesSolute, network: str) -> LennardJonesInterpolant:
    gnn = None
    if network == "gnn":
        gnn = SolventMessagePassing(system.box, cutoff=min(2.0, 0.49 * system.box),
                                    solute_cutoff=min(3.0, 0.49 * system.box), scalars=32,
                                    vectors=8, hidden=(32, 32))
    return LennardJonesInterpolant(system, gnn)


def train(args: argparse.Namespace) -> None:
    system, folder = SYSTEMS[args.system], RESULTS / args.system
    torch.manual_seed(args.seed)
    potential = interpolating_potential(system, args.network)
    ends = end_states(system, folder)
    ends = EndStates(*(getattr(ends, f.name).float() for f in dataclasses.fields(ends)))
    interpolant = Interpolant(path=system.interpolate, align=system.align)
    settings = TrainingSettings(steps=args.steps, batch_size=args.batch, decay_every=args.decay_every,
                                score_weight=1e-3 * system.box**2)
    generator = torch.Generator().manual_seed(args.seed)
    start = time.perf_counter()
    history = train_neural_ti(potential, ends, settings, interpolant, generator, folder / f"{args.name}.pt",
                              checkpoint_every=args.checkpoint_every)
    train_wall = time.perf_counter() - start
    running, running_err = history.running_estimate()
    estimate = neural_ti_estimate(potential, ends, interpolant=interpolant, generator=generator, n_t=NODES,
                                  pairs_per_t=args.pairs)
    pairs = NODES * args.pairs
    record = {"name": args.name, "network": args.network, "seed": args.seed, "steps": len(history.loss),
              "batch": args.batch, "decay_every": args.decay_every,
              "parameters": sum(p.numel() for p in potential.parameters()),
              "final_loss": float(np.mean(history.loss[-500:])),
              "running_dF_kT": running, "running_err_kT": running_err,
              "estimate_dF_kT": estimate.delta_f, "estimate_err_kT": estimate.error,
              "training_potential_evaluations": len(history.loss) * args.batch,
              "estimate_potential_evaluations": pairs,
              "train_wall_s_this_run": train_wall,
              "integrand": [round(float(v), 3) for v in estimate.integrand]}
    if args.refine:
        refined = neural_ti_estimate(potential, ends, interpolant=interpolant, generator=generator,
                                     refine_steps=args.refine, refine_step_size=args.refine_step,
                                     refine_leapfrog=REFINE_LEAPFROG, n_t=NODES, pairs_per_t=args.pairs)
        record.update({"refined_dF_kT": refined.delta_f, "refined_err_kT": refined.error,
                       "refine_trajectories": args.refine, "refine_step": args.refine_step,
                       "refined_potential_evaluations_at_most": pairs * (1 + args.refine * (REFINE_LEAPFROG + 1)),
                       "refined_integrand": [round(float(v), 3) for v in refined.integrand]})
    record["wall_s_total_this_run"] = time.perf_counter() - start
    (folder / f"{args.name}.json").write_text(json.dumps(record, indent=1) + "\n")
    print(json.dumps(record))


def report(args: argparse.Namespace) -> None:
    folder = RESULTS / args.system
    ref = json.loads((folder / "reference.json").read_text())
    runs = [json.loads(p.read_text()) for p in sorted(folder.glob("*.json")) if p.name != "reference.json"]
    by_network = {}
    for run in runs:
        by_network.setdefault(run["network"], []).append(run)
    summary = {}
    for network, group in by_network.items():
        for key in ("running", "estimate", "refined"):
            values = np.array([r[f"{key}_dF_kT"] for r in group if f"{key}_dF_kT" in r])
            if not len(values):
                continue
            summary[f"{network}_{key}"] = {"mean_dF_kT": float(values.mean()), "seed_spread_kT": float(np.ptp(values)),
                                           "worst_minus_mbar_kT": float(np.max(np.abs(values - ref["mbar_dF_kT"]))),
                                           "seeds": len(values)}
    print(json.dumps({"system": args.system, "reference": ref, "runs": runs, "summary": summary}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    command = commands.add_parser("reference")
    command.add_argument("system", choices=SYSTEMS)
    command.add_argument("--windows", type=int, default=16, help="Gauss-Legendre nodes between the end states.")
    command.add_argument("--chains", type=int, default=16)
    command.add_argument("--samples", type=int, default=60, help="Samples per chain.")
    command.add_argument("--steps-between", type=int, default=10, help="HMC trajectories between samples.")
    command.add_argument("--equilibration", type=int, default=300, help="HMC trajectories discarded.")
    command.add_argument("--seed", type=int, default=0)
    command.set_defaults(run=reference)
    command = commands.add_parser("train")
    command.add_argument("system", choices=SYSTEMS)
    command.add_argument("name")
    command.add_argument("--network", choices=("none", "gnn"), default="none")
    command.add_argument("--seed", type=int, default=1)
    command.add_argument("--steps", type=int, default=TrainingSettings.steps)
    command.add_argument("--batch", type=int, default=TrainingSettings.batch_size)
    command.add_argument("--decay-every", type=int, default=TrainingSettings.decay_every,
                         help="Steps per tenfold decay of the learning rate.")
    command.add_argument("--checkpoint-every", type=int, default=1000)
    command.add_argument("--pairs", type=int, default=32, help="Interpolated pairs per node of the estimates.")
    command.add_argument("--refine", type=int, default=200,
                         help="HMC trajectories per chain of the refined estimate (0: none).")
    command.add_argument("--refine-step", type=float, default=0.02, help="HMC leapfrog step of the refinement (sigma).")
    command.set_defaults(run=train)
    command = commands.add_parser("report")
    command.add_argument("system", choices=SYSTEMS)
    command.set_defaults(run=report)
    args = parser.parse_args()
    torch.set_num_threads(1)
    args.run(args)


if __name__ == "__main__":
    main()
