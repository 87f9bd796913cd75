"""Reference samples of the particle systems for the flow benchmarks: 10^4 configurations each of dw4 and lj13 by
the project's own random-walk MH (molsamp.flows.generator.reference_samples), from seed 1, so they are independent
of the training data that `molsamp train flow` makes from seed 0. Deterministic; a few minutes on 2 CPU cores.

    python data/flows/make_references.py [dw4 lj13 ...]

Writes data/flows/<system>.npz (x float32, energy_kT float64, and the chains' settings and convergence check) and
prints the convergence check: js_halves compares the energy distributions of the two halves of the run; sampling
noise alone gives about 20 / n_samples = 0.002.
"""

import json
import sys
from pathlib import Path

from molsamp.flows.generator import reference_samples
from molsamp.samples import Samples
from molsamp.systems import load

HERE = Path(__file__).parent


def main(systems: list[str]) -> None:
    for name in systems:
        samples = reference_samples(load(name), n_chains=1000, n_samples=10, burn_in=5000, thin=50, seed=1)
        compact = Samples.unweighted(samples.x.float(), samples.u, info=samples.info)
        compact.to_npz(HERE / f"{name}.npz")
        print(json.dumps({"system": name, "samples": len(samples), **samples.info}))


if __name__ == "__main__":
    main(sys.argv[1:] or ["dw4", "lj13"])
