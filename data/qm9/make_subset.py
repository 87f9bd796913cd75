"""Make the QM9 training and test sets of the voxel walk-jump model: ``data/qm9/train.npz`` and ``test.npz``
(:class:`molsamp.voxel.data.MoleculeSet`).

Reads QM9 (B3LYP/6-31G(2df,p) geometries, hydrogens explicit) from the ``qm9pack`` wheel (MIT licence, about 104 MB,
installed by ``pip install -e ".[qm9]"``; nothing is downloaded at run time), visits its 130,831 molecules in a
random order (seed 0) and keeps a molecule when

- every atom is C, H, O, N or F (all of QM9) and the molecule fits the default :class:`molsamp.voxel.VoxelGrid`
  under any rotation and the training shift (atoms within 3.97 Å of the centroid: about 80% of QM9), and
- RDKit perceives a neutral molecule from its geometry (:func:`molsamp.voxel.readout.molecule_from_atoms`), whose
  canonical SMILES (no stereo) is stored for uniqueness and novelty,

until ``--train`` + ``--test`` molecules are kept. Positions are centred on the centroid (Å, float32).

    python data/qm9/make_subset.py [--train 20000] [--test 1000]

Prints the counts of molecules visited, too large and not perceived as JSON.
"""

import argparse
import importlib.util
import json
from pathlib import Path

import numpy as np
import pandas as pd
from rdkit import Chem

from molsamp.voxel.data import MoleculeSet
from molsamp.voxel.grids import VoxelGrid
from molsamp.voxel.readout import molecule_from_atoms
from molsamp.voxel.training import TRAINING_SHIFT

HERE = Path(__file__).resolve().parent


def qm9_table() -> pd.DataFrame:
    """QM9's index, element lists and coordinates from the qm9pack wheel's CSV files (read without importing
    qm9pack, whose import needs setuptools' pkg_resources)."""
    spec = importlib.util.find_spec("qm9pack")
    if spec is None:
        raise SystemExit('qm9pack is not installed: pip install -e ".[qm9]"')
    folder = Path(spec.submodule_search_locations[0]) / "data"
    columns = ["Index", "Elements", "XYZ_Ang"]
    return pd.concat([pd.read_csv(folder / f"qm9_part{i}.csv", usecols=columns) for i in (1, 2, 3)],
                     ignore_index=True)


def parse(elements: str, coordinates: str) -> tuple[list[str], np.ndarray]:
    """Element symbols and positions [A, 3] (Å) of one row (its lists are written like "['C','H']" and
    "[[0.,1.5E-6,...]]", which are not JSON)."""
    symbols = [s.strip(" '") for s in elements.strip("[]").split(",")]
    values = [float(v) for v in coordinates.replace("[", "").replace("]", "").split(",")]
    return symbols, np.asarray(values).reshape(-1, 3)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--train", type=int, default=20000)
    parser.add_argument("--test", type=int, default=1000)
    args = parser.parse_args()
    grid, table = VoxelGrid(), qm9_table()
    order = np.random.default_rng(0).permutation(len(table))
    kept, smiles, counts = [], [], {"visited": 0, "too_large": 0, "not_perceived": 0}
    for row in order:
        if len(kept) == args.train + args.test:
            break
        counts["visited"] += 1
        symbols, positions = parse(table.Elements[row], table.XYZ_Ang[row])
        positions = positions - positions.mean(0)
        if not grid.fits(positions, TRAINING_SHIFT) or not set(symbols) <= set(grid.elements):
            counts["too_large"] += 1
            continue
        molecule = molecule_from_atoms(symbols, positions)
        if molecule is None:
            counts["not_perceived"] += 1
            continue
        table_of_elements = Chem.GetPeriodicTable()
        kept.append(([table_of_elements.GetAtomicNumber(s) for s in symbols], positions))
        smiles.append(Chem.MolToSmiles(Chem.RemoveHs(molecule), isomericSmiles=False))
    for name, part in (("train", slice(0, args.train)), ("test", slice(args.train, None))):
        MoleculeSet.from_molecules(kept[part], smiles[part]).save(HERE / f"{name}.npz")
    print(json.dumps(counts | {"train": args.train, "test": len(kept) - args.train}))


if __name__ == "__main__":
    main()
