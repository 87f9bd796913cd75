"""Crystal flows for ice against MBAR: for each system and target temperature with a trained flow, the Kish ESS of
flow samples, the reduced free energy f = -log Z from each temperature's flow, f(to) - f(from) from the two flows and
by learned free-energy perturbation (the project's MD frames at --from mapped through the flows), beside MBAR over
the project's MD ladder (data/ice/<system>/ from data/ice/make_md.py), per molecule too. Prints one JSON line per
system and target temperature.

With ``--priors``, instead: for each system and ``--to`` temperature, the untrained priors (no couplings) of
:data:`~molsamp.flows.crystals.PRIORS` fitted to the ladder's MD frames there, each with its reverse-KL loss (mean
u + log q, kT; minus f it is the KL divergence to the Boltzmann density), Kish ESS and importance estimate of f.

Usage: ``python benchmarks/rigid_flows.py [--systems ice-xi-16] [--to 100] [--from 250] [--samples 10000]
[--priors] [--models models]``.
Timings are of this machine and its load; compare them as ratios.

Anchor (noegroup/rigid-flows, stored notebook output; Kohler et al., ICML 2023): ice XI, N = 16, 100 K: ESS 23.75%
of 10,000 samples, dF/N -41.8647 kT against their MBAR -41.8569 kT; their MBAR dF(250 -> 100 K) = -669.711 +- 0.054
kT (N = 16) and -5316.481 +- 0.111 kT (N = 128).
"""

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

from molsamp.flows.crystals import (PRIORS, crystal_samples, crystal_target, default_crystal_model, initial_flow,
                                    learned_free_energy, load_md_ladder)
from molsamp.flows.generator import importance_samples
from molsamp.free_energy.mbar import temperature_mbar
from molsamp.systems import load

ROOT = Path(__file__).resolve().parents[1]
ANCHOR_MBAR_250_TO_100 = {"ice-xi-16": (-669.711, 0.054), "ice-xi-128": (-5316.481, 0.111)}


def benchmark(name: str, start: float, end: float, n: int, seed: int, models: Path) -> dict:
    system = load(name)
    molecules = system.n_atoms // 4
    record = {"system": name, "from_K": start, "to_K": end, "samples": n}
    flows, paths = {}, {}
    for temperature in (start, end):
        model = models / default_crystal_model(system, temperature).name
        if not model.is_file():
            continue
        paths[temperature] = model
        begin = time.perf_counter()
        info = crystal_samples(system, temperature, n, model=model, seed=seed, progress=False).info
        card = torch.load(model, weights_only=True)["metadata"]
        flows[temperature] = {"ess_percent": info["ess_percent"], "free_energy_kT": info["free_energy_kT"],
                              "free_energy_error_kT": info["free_energy_error_kT"],
                              "training_seconds": card.get("training_seconds"),
                              "training_energy_evaluations": card.get("energy_evaluations"),
                              "parameters": card.get("parameters"), "sampling_seconds": time.perf_counter() - begin}
    record["flows"] = {f"{t:g}K": value for t, value in flows.items()}
    ladder = load_md_ladder(ROOT / "data" / "ice" / name)
    estimate = temperature_mbar(ladder.temperatures, ladder.energies, start, end)
    states = ladder.states_at(start)
    record["mbar"] = {"delta_f_kT": estimate.delta_f, "error_kT": estimate.error,
                      "delta_f_per_molecule_kT": estimate.delta_f / molecules,
                      "worst_neighbour_overlap": float(estimate.neighbour_overlap.min())}
    if start == 250 and end == 100 and name in ANCHOR_MBAR_250_TO_100:
        record["anchor_mbar"] = dict(zip(("delta_f_kT", "error_kT"), ANCHOR_MBAR_250_TO_100[name]))
    if len(flows) == 2:
        difference = flows[end]["free_energy_kT"] - flows[start]["free_energy_kT"]
        record["two_flows"] = {"delta_f_kT": difference, "delta_f_per_molecule_kT": difference / molecules,
                               "error_kT": float(np.hypot(flows[end]["free_energy_error_kT"],
                                                          flows[start]["free_energy_error_kT"]))}
        record["lfep"] = learned_free_energy(system, start, end, states, paths[start], paths[end])
    return record


def prior_comparison(name: str, temperature: float, n: int, seed: int) -> dict:
    system = load(name)
    states = load_md_ladder(ROOT / "data" / "ice" / name).states_at(temperature)
    record = {"system": name, "temperature_K": temperature, "samples": n, "md_frames": len(states), "priors": {}}
    with crystal_target(system, temperature) as target:
        for prior in PRIORS:
            begin = time.perf_counter()
            flow = initial_flow(system, states, temperature, prior, layers=0)
            fitted = time.perf_counter()
            draws = importance_samples(flow, target, n, torch.Generator().manual_seed(seed), progress=False)
            record["priors"][prior] = {"reverse_kl_loss_kT": float((draws.u + draws.log_q).mean()),
                                       "ess_percent": draws.info["ess_percent"],
                                       "free_energy_kT": -draws.info["log_Z"],
                                       "free_energy_error_kT": draws.info["log_Z_error"],
                                       "fit_seconds": fitted - begin, "sampling_seconds": time.perf_counter() - fitted}
    return record


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--systems", default="ice-xi-16")
    parser.add_argument("--from", dest="start", type=float, default=250.0)
    parser.add_argument("--to", type=float, nargs="+", default=[100.0])
    parser.add_argument("--samples", type=int, default=10000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--priors", action="store_true", help="compare the untrained priors instead")
    parser.add_argument("--models", type=Path, default=ROOT / "models",
                        help="folder of the flows, <system>-<T>K-flow.pt")
    args = parser.parse_args()
    for name in args.systems.split(","):
        for end in args.to:
            record = (prior_comparison(name, end, args.samples, args.seed) if args.priors
                      else benchmark(name, args.start, end, args.samples, args.seed, args.models))
            print(json.dumps(record), flush=True)


if __name__ == "__main__":
    main()
