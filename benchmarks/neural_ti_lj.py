"""Neural TI against MBAR on a Lennard-Jones solute in a Lennard-Jones fluid (the first test system of Mate et al.).

Both estimate the solute's excess chemical potential dF = F(coupled) - F(decoupled) (kT) in the same run:
- MBAR over ``--windows`` states of the standard soft-core path, each sampled by parallel BAOAB Langevin chains;
- neural TI: the two end states sampled the same way, a :class:`LennardJonesInterpolant` trained by denoising
  score matching on Hungarian-paired, solute-centred end-state samples blurred by ``--noise`` (0: target score
  matching), and dF from its TI integral over the interpolant; with ``--refine-steps``, also the estimate after that
  many Langevin steps on U_theta at every integration point (exact for a converged refinement).
Energy evaluations: Langevin steps times chains (one force each), plus single-point energies (MBAR: every sample in
every state; neural TI: one soft-core energy and force per training pair, per integration point and per refinement
step).
Prints one JSON line per method and a comparison line. Usage: ``python benchmarks/neural_ti_lj.py [--solvent 100]``.
"""

import argparse
import json
import time

import numpy as np
import torch

from molsamp.free_energy import mbar
from molsamp.free_energy.lj_solute import LennardJonesInterpolant, LennardJonesSolute
from molsamp.free_energy.neural_ti import EndStates, Interpolant, neural_ti_estimate, train_neural_ti


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--solvent", type=int, default=100)
    parser.add_argument("--chains", type=int, default=8)
    parser.add_argument("--samples", type=int, default=100, help="Samples per chain and state.")
    parser.add_argument("--steps-between", type=int, default=40)
    parser.add_argument("--equilibration", type=int, default=1000)
    parser.add_argument("--windows", type=int, default=12)
    parser.add_argument("--train-steps", type=int, default=1500)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--pairs-per-node", type=int, default=128, help="Interpolated pairs per quadrature node.")
    parser.add_argument("--rigid-solvent", action="store_true",
                        help="Keep solvent-solvent interactions physical at every t (no learned softening).")
    parser.add_argument("--noise", type=float, default=0.0,
                        help="Largest Gaussian blur of the interpolant (sigma units); 0: target score matching.")
    parser.add_argument("--refine-steps", type=int, default=0)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    torch.set_num_threads(1)
    system = LennardJonesSolute(n_solvent=args.solvent)
    sampling = dict(n_chains=args.chains, n_samples=args.samples, steps_between=args.steps_between,
                    equilibration_steps=args.equilibration)
    steps_per_state = args.chains * (args.equilibration + args.samples * args.steps_between)

    start = time.perf_counter()
    generator = torch.Generator().manual_seed(args.seed)
    couplings = np.linspace(0, 1, args.windows) ** 1.5  # denser near the decoupled end, where the cavity opens
    samples = [system.sample(float(c), generator=generator, **sampling) for c in couplings]
    x = torch.cat(samples)
    with torch.no_grad():
        u_kn = torch.stack([system.coupled_energy(x, float(c)) for c in couplings]).numpy()
    estimate = mbar(u_kn, [len(s) for s in samples])
    mbar_result = {"method": "mbar", "dF_kT": estimate.delta_f, "dF_err_kT": estimate.error,
                   "states": args.windows, "min_overlap": float(estimate.neighbour_overlap.min()),
                   "energy_evaluations": args.windows * steps_per_state + u_kn.size,
                   "wall_time_s": time.perf_counter() - start}
    print(json.dumps(mbar_result), flush=True)

    start = time.perf_counter()
    generator = torch.Generator().manual_seed(args.seed + 1)
    x0, x1 = (system.sample(c, generator=generator, **sampling) for c in (0.0, 1.0))
    ends = EndStates.from_energies(x0, lambda x: system.coupled_energy(x, 0.0), x1,
                                   lambda x: system.coupled_energy(x, 1.0))
    torch.manual_seed(args.seed)
    potential = LennardJonesInterpolant(system, soften_solvent=not args.rigid_solvent)
    interpolant = Interpolant(path=system.interpolate, align=system.align, noise=args.noise)
    losses = train_neural_ti(potential, ends, steps=args.train_steps, batch_size=args.batch, interpolant=interpolant,
                             generator=generator)
    n_t, pairs = 24, args.pairs_per_node
    result = neural_ti_estimate(potential, ends, n_t=n_t, pairs_per_t=pairs, interpolant=interpolant,
                                generator=generator)
    neural = {"method": "neural-ti", "dF_kT": result.delta_f, "dF_err_kT": result.error,
              "final_loss": float(np.mean(losses[-100:])), "train_steps": args.train_steps,
              "soften_solvent": not args.rigid_solvent, "noise": args.noise, "pairs_per_node": pairs,
              "energy_evaluations": 2 * steps_per_state + args.train_steps * args.batch + n_t * pairs,
              "wall_time_s": time.perf_counter() - start,
              "integrand": [round(float(v), 3) for v in result.integrand]}
    print(json.dumps(neural), flush=True)
    if args.refine_steps:
        refined = neural_ti_estimate(potential, ends, n_t=n_t, pairs_per_t=pairs, interpolant=interpolant,
                                     refine_steps=args.refine_steps, generator=generator)
        print(json.dumps({"method": "neural-ti-refined", "dF_kT": refined.delta_f, "dF_err_kT": refined.error,
                          "refine_steps": args.refine_steps,
                          "energy_evaluations": neural["energy_evaluations"] + n_t * pairs * args.refine_steps,
                          "wall_time_s": time.perf_counter() - start,
                          "integrand": [round(float(v), 3) for v in refined.integrand]}), flush=True)
    print(json.dumps({"comparison": "neural-ti minus mbar (kT)", "difference": neural["dF_kT"] - mbar_result["dF_kT"],
                      "combined_error": float(np.hypot(neural["dF_err_kT"], mbar_result["dF_err_kT"])),
                      "energy_evaluation_ratio": neural["energy_evaluations"] / mbar_result["energy_evaluations"]}))


if __name__ == "__main__":
    main()
