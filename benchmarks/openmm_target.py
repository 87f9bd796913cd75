"""Throughput of OpenMMTarget (energies + forces through autograd) against a plain loop over one OpenMM Context.

Prints one JSON line per batch size: evaluations per second of each and their ratio, measured in the same run.
Usage: ``python benchmarks/openmm_target.py [--system ala2] [--repeats 3]``.
"""

import argparse
import json
import os
import time

import openmm
import torch

from molsamp.systems import load


def best_rate(function, batch: int, repeats: int) -> float:
    """Evaluations per second of ``function()`` for ``batch`` configurations, best of ``repeats``."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
    return batch / min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--system", default="ala2")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 64, 1024])
    args = parser.parse_args()

    system = load(args.system)
    generator = torch.Generator().manual_seed(0)
    x0 = torch.as_tensor(system.positions, dtype=torch.float64)
    context = openmm.Context(system.openmm_system, openmm.VerletIntegrator(0.001),
                             openmm.Platform.getPlatformByName("CPU"))
    with system.target() as target:
        target.energy(x0[None])  # start the workers outside the timing
        for batch in args.batches:
            x = x0 + 0.005 * torch.randn(batch, *x0.shape, generator=generator, dtype=torch.float64)

            def batched():
                xb = x.clone().requires_grad_(True)
                target.energy(xb).sum().backward()

            def loop():
                for xi in x.numpy():
                    context.setPositions(xi)
                    state = context.getState(getEnergy=True, getForces=True)
                    state.getPotentialEnergy()
                    state.getForces(asNumpy=True)

            repeats = args.repeats if batch > 1 else 50 * args.repeats
            target_rate, loop_rate = best_rate(batched, batch, repeats), best_rate(loop, batch, repeats)
            print(json.dumps({
                "benchmark": "openmm_target", "system": args.system, "batch": batch,
                "workers": target.n_workers, "cores": len(os.sched_getaffinity(0)), "platform": target.platform,
                "target_evals_per_s": round(target_rate, 1), "single_context_loop_evals_per_s": round(loop_rate, 1),
                "ratio": round(target_rate / loop_rate, 3),
            }), flush=True)


if __name__ == "__main__":
    main()
