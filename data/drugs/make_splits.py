"""Choose the torsion model's training and benchmark molecules from the GEOM-DRUGS test split SMILES.

Reads ``../shared/data/drugs/geom_drugs_test_smiles.csv`` (or the path given) and writes ``train.smi`` and
``benchmark.smi`` beside this script. Deterministic: molecules are filtered, then shuffled with a fixed seed.
Run from the repository root: ``python data/drugs/make_splits.py``.
"""

import csv
import random
import sys
from pathlib import Path

from rdkit import Chem
from rdkit.Chem import rdMolDescriptors

ELEMENTS = {"H", "C", "N", "O", "F", "P", "S", "Cl", "Br", "I"}
N_TRAIN, N_BENCHMARK = 200, 8
MAX_HEAVY_ATOMS = {"train": 30, "benchmark": 26}  # AM1-BCC cost and MD reference cost grow with size


def eligible(smiles: str, max_heavy_atoms: int) -> bool:
    mol = Chem.MolFromSmiles(smiles)
    if mol is None or "." in smiles or Chem.GetFormalCharge(mol) != 0:
        return False
    if {a.GetSymbol() for a in mol.GetAtoms()} - ELEMENTS:
        return False
    return 3 <= rdMolDescriptors.CalcNumRotatableBonds(mol) <= 9 and mol.GetNumHeavyAtoms() <= max_heavy_atoms


def main(source: Path) -> None:
    with open(source) as handle:
        smiles = [row["smiles"] for row in csv.DictReader(handle)]
    random.Random(20261125).shuffle(smiles)
    benchmark = [s for s in smiles if eligible(s, MAX_HEAVY_ATOMS["benchmark"])][:N_BENCHMARK]
    train = [s for s in smiles if s not in benchmark and eligible(s, MAX_HEAVY_ATOMS["train"])][:N_TRAIN]
    here = Path(__file__).resolve().parent
    (here / "benchmark.smi").write_text("".join(f"{s} bench{i}\n" for i, s in enumerate(benchmark)))
    (here / "train.smi").write_text("".join(f"{s} train{i}\n" for i, s in enumerate(train)))
    print(f"{len(train)} training and {len(benchmark)} benchmark molecules")


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else Path("../shared/data/drugs/geom_drugs_test_smiles.csv"))
