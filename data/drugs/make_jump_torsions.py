"""Torsion samples of the training molecules from MD with uniform torsion jumps: data for fitting the torsion model
to the flexible molecule's torsion density (the proposal of ``md-jumps``), by maximum likelihood.

For each molecule of ``data/drugs/train.smi`` (never a benchmark molecule): ``--n`` frames of 4 chains of Langevin
MD (GAFF2/AM1-BCC, OBC2, 300 K) with a jump of every rotatable torsion to a uniformly drawn angle every 0.1 ps,
accepted by Metropolis-Hastings on the full energy (``sample_md_jumps`` with ``TorsionMixture.uniform``: no model
enters the data), after 20 rounds of burn-in per chain. Each molecule's angles (rad, all rotatable torsions in the
order of ``rotatable_torsions``) go to ``--workdir/<index>.npz`` as they finish, so a rerun resumes; at the end
they are gathered into ``data/drugs/jump_torsions.npz`` (``smiles``, ``angles_<index>``). Failed molecules are
reported and skipped. Usage: ``python data/drugs/make_jump_torsions.py [--n 400] [--workdir /tmp/molsamp-jumps]``.
"""

import argparse
import json
import time
from pathlib import Path

import numpy as np

from molsamp.conformers import read_smiles, rotatable_torsions, sample_md_jumps
from molsamp.conformers.model import TorsionMixture
from molsamp.systems import from_smiles

HERE = Path(__file__).resolve().parent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=400)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/molsamp-jumps"))
    args = parser.parse_args()
    args.workdir.mkdir(parents=True, exist_ok=True)
    molecules = list(read_smiles(HERE / "train.smi"))
    for index, (name, smiles) in enumerate(molecules):
        path = args.workdir / f"{index}.npz"
        if path.exists():
            continue
        start = time.perf_counter()
        try:
            system = from_smiles(smiles, name=name)
            torsions = rotatable_torsions(system.molecule)
            chains = sample_md_jumps(system, torsions, TorsionMixture.uniform(len(torsions)), args.n,
                                     chains=4, burn_in=20, seed=args.seed + index, progress=False)
        except Exception as error:  # one molecule's failure must not stop the rest
            print(json.dumps({"index": index, "name": name, "error": str(error)}), flush=True)
            continue
        np.savez(path, angles=chains.angles.astype(np.float32), smiles=smiles)
        print(json.dumps({"index": index, "name": name, "torsions": len(torsions), "ess": round(chains.ess, 1),
                          "acceptance": chains.acceptance, "seconds": round(time.perf_counter() - start, 1)}),
              flush=True)
    paths = {i: args.workdir / f"{i}.npz" for i in range(len(molecules))}
    done = {i: np.load(path) for i, path in paths.items() if path.exists()}
    np.savez_compressed(HERE / "jump_torsions.npz", smiles=np.array([s for _, s in molecules]),
                        **{f"angles_{i}": d["angles"] for i, d in done.items()})
    print(json.dumps({"molecules": len(molecules), "written": len(done)}))


if __name__ == "__main__":
    main()
