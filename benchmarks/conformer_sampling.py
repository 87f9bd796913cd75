"""Sampling efficiency of the conformer sampler on held-out molecules, without a reference ensemble.

For each molecule of ``data/drugs/benchmark.smi`` (none of them in the training set) and each sampling mode: Kish
effective sample size, MH acceptance, OpenMM energy evaluations and wall time for ``--n`` conformers; RDKit ETKDG
(with MMFF minimisation) for the same number of conformers is timed in the same run. The torsion-distribution
comparison against MD references is ``benchmarks/conformers.py``. Prints one JSON line per molecule and mode.

Usage: ``python benchmarks/conformer_sampling.py [--n 300] [--modes smc weighted mh]``.
"""

import argparse
import json
import time
from pathlib import Path

import torch
from rdkit import Chem
from rdkit.Chem import AllChem

from molsamp.conformers import MODES, TorsionalTarget, read_smiles, sample_torsions
from molsamp.conformers.features import molecule_graph
from molsamp.conformers.generate import DEFAULT_MODEL
from molsamp.conformers.model import load_model
from molsamp.systems import from_smiles

ROOT = Path(__file__).resolve().parent.parent


def etkdg_seconds(smiles: str, n: int, seed: int) -> float:
    """Wall time of RDKit ETKDG embedding plus MMFF minimisation of ``n`` conformers."""
    start = time.perf_counter()
    molecule = Chem.AddHs(Chem.MolFromSmiles(smiles))
    AllChem.EmbedMultipleConfs(molecule, numConfs=n, randomSeed=seed + 1)  # seed 0: n identical conformers
    AllChem.MMFFOptimizeMoleculeConfs(molecule)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=300)
    parser.add_argument("--modes", nargs="+", default=list(MODES), choices=MODES)
    parser.add_argument("--model", type=Path, default=DEFAULT_MODEL)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    model = load_model(args.model)
    for name, smiles in read_smiles(ROOT / "data" / "drugs" / "benchmark.smi"):
        target = TorsionalTarget(from_smiles(smiles, name=name))
        with torch.no_grad():
            mixture = model(molecule_graph(target.molecule, target.torsions))[0]
        etkdg = etkdg_seconds(smiles, args.n, args.seed)
        for mode in args.modes:
            start = time.perf_counter()
            samples = sample_torsions(mixture, target, args.n, mode=mode, seed=args.seed)
            seconds = time.perf_counter() - start
            info = samples.info
            print(json.dumps({
                "benchmark": "conformer_sampling", "name": name, "smiles": smiles, "torsions": target.n_torsions,
                "mode": mode, "n": args.n, "ess": round(info["ess"], 1), "ess_fraction": round(info["ess"] / args.n, 4),
                "acceptance": None if info["acceptance"] is None else round(info["acceptance"], 3),
                "energy_evaluations": info["evaluations"], "seconds": round(seconds, 2),
                "seconds_per_effective_sample": round(seconds / info["ess"], 4),
                "etkdg_mmff_seconds_same_n": round(etkdg, 2),
            }), flush=True)
        target.close()


if __name__ == "__main__":
    main()
