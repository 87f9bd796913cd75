"""Equivariant Boltzmann generators against their targets: for each particle system with a trained flow, the Kish
ESS of flow samples reweighted to the target, the same after SMC refinement with its energy evaluations, the
held-out NLL, and the energy W1 against the project's MCMC reference samples (data/flows/<system>.npz, made by
data/flows/make_references.py). Prints one JSON line per system.

Usage: ``python benchmarks/flows.py [--systems dw4,lj13] [--samples 10000] [--smc-samples 1000]
[--nll-samples 1000] [--models models]``. Timings are of this machine and its load; compare them as ratios.

Published anchors on the same energy convention (pairs i < j, as bgflow and E-ACF; DEM's code sums ordered pairs,
twice our Lennard-Jones term): equivariant flow matching (Klein, Kraemer and Noe, NeurIPS 2023, Table 1) and E-ACF
(Midgley et al., NeurIPS 2023). Their tables could not be read from this machine, so no figure of theirs is printed
here; compare with the papers directly.
"""

import argparse
import dataclasses
import json
import time
from pathlib import Path

import torch

from molsamp.flows.diagnostics import energy_w1, held_out_nll
from molsamp.flows.generator import importance_samples, load_flow, refine_smc
from molsamp.samples import Samples
from molsamp.systems import load

ROOT = Path(__file__).resolve().parents[1]


def benchmark(name: str, model: Path, n: int, n_smc: int, n_nll: int, seed: int) -> dict:
    system = load(name)
    flow, target = load_flow(model, system), system.target()
    reference = Samples.from_npz(ROOT / "data" / "flows" / f"{name}.npz")
    generator = torch.Generator().manual_seed(seed)
    draws = importance_samples(flow, target, n, generator, progress=False)
    record = {"system": name, "model": str(model), "training_seconds": flow.metadata.get("training_seconds"),
              "samples": n, "ess_percent": draws.info["ess_percent"], "dropped": draws.info["dropped"],
              "log_Z": draws.info["log_Z"], "sampling_seconds": draws.info["seconds"],
              "energy_w1": energy_w1(draws, reference.u), "energy_w1_unweighted": energy_w1(draws, reference.u, False)}
    subset = dataclasses.replace(draws.select(torch.arange(n_smc)), info={"draws": n_smc})
    refined = refine_smc(flow, target, subset, generator=generator, progress=False)
    plain_ess = subset.ess()
    record["smc"] = {"samples": n_smc, "ess_percent": refined.info["ess_percent"],
                     "distinct": refined.info["distinct"], "acceptance": refined.info["acceptance"],
                     "log_Z": refined.info["log_Z"], "energy_evaluations": refined.info["energy_evaluations"],
                     "seconds": refined.info["seconds"], "energy_w1": energy_w1(refined, reference.u),
                     "ess_per_energy_evaluation": refined.info["ess"] / refined.info["energy_evaluations"],
                     "importance_ess_per_energy_evaluation": plain_ess / n_smc}
    start = time.perf_counter()
    record["test_nll"] = held_out_nll(flow, reference.x[:n_nll].double())
    record["test_nll_samples"], record["nll_seconds"] = n_nll, time.perf_counter() - start
    return record


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--systems", default="dw4,lj13")
    parser.add_argument("--samples", type=int, default=10_000)
    parser.add_argument("--smc-samples", type=int, default=1000)
    parser.add_argument("--nll-samples", type=int, default=1000)
    parser.add_argument("--models", type=Path, default=ROOT / "models")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(1)
    for name in args.systems.split(","):
        model = args.models / f"{name}-flow.pt"
        if not model.is_file():
            print(json.dumps({"system": name, "skipped": f"no model {model}"}))
            continue
        print(json.dumps(benchmark(name, model, args.samples, args.smc_samples, args.nll_samples, args.seed)),
              flush=True)


if __name__ == "__main__":
    main()
