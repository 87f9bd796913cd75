"""How long plain MD stays in alpha_L (phi > 0) once it is there, for peptides whose 20 ns reference MD never
entered it: a check on whether torsion-jump chains that put a few percent in alpha_L disagree with the reference
because the reference never crossed into that basin.

Each system is minimised with (phi, psi) set to (60, 40) degrees, then run with the reference's dynamics (no
constraints, hydrogen mass 3 amu, 2 fs, 300 K); phi is read every ps and the first ps with phi < 0 is reported.
Prints one JSON line per system. Usage: ``python benchmarks/alpha_l_residence.py [--ns 2] [--systems ala2,...]``.
"""

import argparse
import json
import math
import time

import numpy as np
import openmm
import torch

from molsamp.analysis import compute_dihedrals
from molsamp.conformers.torsions import peptide_torsions, set_torsions
from molsamp.openmm_pool import create_context, openmm_seed
from molsamp.systems import load_flexible


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ns", type=float, default=2.0)
    parser.add_argument("--systems", default="ala2,peptide:M,peptide:Y,peptide:R")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    torch.set_num_threads(1)
    for name in args.systems.split(","):
        start = time.perf_counter()
        system = load_flexible(name)
        backbone = peptide_torsions(system.topology, kinds=("phi", "psi"))
        x = set_torsions(torch.as_tensor(system.positions, dtype=torch.float64), backbone,
                         torch.tensor([[math.radians(60.0), math.radians(40.0)]], dtype=torch.float64))[0]
        integrator = openmm.LangevinMiddleIntegrator(system.temperature, system.friction, system.timestep)
        integrator.setRandomNumberSeed(openmm_seed(args.seed))
        context = create_context(system.openmm_system, integrator, "CPU", threads=1)
        context.setPositions(x.numpy())
        openmm.LocalEnergyMinimizer.minimize(context, 10.0, 500)
        context.setVelocitiesToTemperature(system.temperature, openmm_seed(args.seed))
        def phi() -> float:
            xyz = context.getState(getPositions=True).getPositions(asNumpy=True)._value
            return float(compute_dihedrals(np.asarray(xyz)[None], backbone.atoms[:1])[0, 0])

        start_phi = phi()
        exit_ps, frames = None, round(args.ns * 1000)
        for frame in range(1, frames + 1):
            integrator.step(round(1.0 / system.timestep))
            if phi() < 0:
                exit_ps = frame
                break
        print(json.dumps({"system": name, "start_phi_deg": round(math.degrees(start_phi), 1),
                          "left_alpha_L_after_ps": exit_ps, "ran_ps": exit_ps or frames,
                          "wall_time_s": round(time.perf_counter() - start, 1)}), flush=True)


if __name__ == "__main__":
    main()
