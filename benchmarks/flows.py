"""Equivariant Boltzmann generators against their targets: for each system with a trained flow, the Kish ESS of
flow samples reweighted to the target, the same after SMC refinement with its energy evaluations (particle systems),
the held-out NLL, and the energy W1 against the project's reference samples (data/flows/<system>.npz, made by
data/flows/make_references.py for particle systems, by data/flows/make_md.py for alanine dipeptide, where the
reweighted Ramachandran JS against the reference MD is added). Prints one JSON line per system.

Usage: ``python benchmarks/flows.py [--systems dw4,lj13,ala2-vacuum] [--samples 10000] [--smc-samples 1000]
[--nll-samples 1000] [--models models] [--precision float32]``. Timings are of this machine and its load; compare
them as ratios.

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

import numpy as np
import torch

from molsamp.analysis import ramachandran_js
from molsamp.flows.diagnostics import backbone_angles, energy_w1, held_out_nll
from molsamp.flows.generator import flow_target, importance_samples, load_flow, mirror_fold, refine_smc
from molsamp.samples import Samples
from molsamp.systems import load

ROOT = Path(__file__).resolve().parents[1]


def ramachandran_record(draws: Samples, system, reference_file: Path) -> dict:
    """Reweighted and plain Ramachandran JS (nats) of the flow's draws against every frame of the reference MD."""
    with np.load(reference_file) as reference:
        phi_ref, psi_ref = reference["phi"], reference["psi"]
    phi, psi = backbone_angles(draws.x, system.topology)
    return {"ramachandran_js": ramachandran_js(phi, psi, phi_ref, psi_ref, log_weights_a=draws.log_weights),
            "ramachandran_js_unweighted": ramachandran_js(phi, psi, phi_ref, psi_ref),
            "reference_frames": len(phi_ref)}


def benchmark(name: str, model: Path, n: int, n_smc: int, n_nll: int, seed: int, dtype: torch.dtype) -> dict:
    system = load(name)
    flow, target = load_flow(model, system, dtype=dtype), flow_target(system)
    fold, molecule = mirror_fold(flow, system), system.analytic is None
    reference_file = ROOT / "data" / "flows" / f"{name}.npz"
    reference = Samples.from_npz(reference_file)
    generator = torch.Generator().manual_seed(seed)
    draws = importance_samples(flow, target, n, generator, progress=False, fold=fold)
    record = {"system": name, "model": str(model), "architecture": type(flow).__name__,
              "training_seconds": flow.metadata.get("training_seconds"),
              "precision": str(next(flow.parameters()).dtype).removeprefix("torch."), "samples": n,
              "ess_percent": draws.info["ess_percent"],
              "dropped": draws.info["dropped"], "log_Z": draws.info["log_Z"],
              "flow_evaluations": draws.info["flow_evaluations"], "sampling_seconds": draws.info["seconds"],
              "energy_w1": energy_w1(draws, reference.u), "energy_w1_unweighted": energy_w1(draws, reference.u, False)}
    if molecule:
        record.update(ramachandran_record(draws, system, reference_file))
    start = time.perf_counter()
    record["test_nll"] = held_out_nll(flow, reference.x[:n_nll].double(), fold=fold)
    record["test_nll_samples"], record["nll_seconds"] = n_nll, time.perf_counter() - start
    if n_smc == 0 or fold is not None:  # an equivariant flow of a molecule: no SMC (a solve per move)
        return record
    subset = dataclasses.replace(draws.select(torch.arange(n_smc)), info={"draws": n_smc})
    refined = refine_smc(flow, target, subset, generator=generator, progress=False)
    plain_ess = subset.ess()
    record["smc"] = {"samples": n_smc, "ess_percent": refined.info["ess_percent"],
                     "distinct": refined.info["distinct"], "acceptance": refined.info["acceptance"],
                     "log_Z": refined.info["log_Z"], "energy_evaluations": refined.info["energy_evaluations"],
                     "seconds": refined.info["seconds"], "energy_w1": energy_w1(refined, reference.u),
                     "ess_per_energy_evaluation": refined.info["ess"] / refined.info["energy_evaluations"],
                     "importance_ess_per_energy_evaluation": plain_ess / n_smc}
    return record


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--systems", default="dw4,lj13")
    parser.add_argument("--samples", type=int, default=10_000)
    parser.add_argument("--smc-samples", type=int, default=1000)
    parser.add_argument("--nll-samples", type=int, default=1000)
    parser.add_argument("--models", type=Path, default=ROOT / "models")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--precision", choices=["float32", "float64"], default="float32")
    args = parser.parse_args()
    torch.set_num_threads(1)
    for name in args.systems.split(","):
        model = args.models / f"{name}-flow.pt"
        if not model.is_file():
            print(json.dumps({"system": name, "skipped": f"no model {model}"}))
            continue
        record = benchmark(name, model, args.samples, args.smc_samples, args.nll_samples, args.seed,
                           getattr(torch, args.precision))
        print(json.dumps(record), flush=True)


if __name__ == "__main__":
    main()
