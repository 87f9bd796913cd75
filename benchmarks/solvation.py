"""Hydration free energy benchmark: molsamp's alchemical MBAR against FreeSolv's calculated and experimental values.

Molecules: for each functional group in ``GROUPS`` (in order), the smallest FreeSolv molecule (fewest heavy atoms,
then compound id) that has that group and no other group of the list, until ``--molecules`` are chosen. Force field
GAFF 1.81 with AM1-BCC charges in TIP3P, as FreeSolv's calculated column (which used GROMACS, 20 states, 5 ns per
state, and OpenEye's AM1-BCC charges; molsamp's come from AmberTools sqm, see ``molsamp.forcefields``).

Each molecule runs on its own, with ``--workers`` local processes; finished windows are kept in ``--workdir``
(default ``benchmarks/solvation_runs/``), so an interrupted benchmark resumes where it stopped (its ``wall_time_s``
then covers only the last part: ``resumed`` says so). Prints one JSON line per molecule, then a summary with the
mean absolute errors against FreeSolv's calculated and experimental values, the core time and wall time per
molecule, and the energy evaluations spent (MD steps plus single-point energies).
Usage: ``python benchmarks/solvation.py [--molecules 10] [--workers 2] [--production-ps 100] [--charges am1bcc]``.
"""

import argparse
import json
import time
from pathlib import Path

import numpy as np
from rdkit import Chem

from molsamp.free_energy import Protocol, hydration_free_energy

ROOT = Path(__file__).resolve().parent.parent
FREESOLV = ROOT / "data" / "freesolv" / "database.txt"

GROUPS = {
    "alkane": None,
    "aromatic hydrocarbon": None,
    "alcohol": "[CX4][OX2H]",
    "ketone": "[#6][CX3](=O)[#6]",
    "carboxylic acid": "[CX3](=O)[OX2H]",
    "ester": "[#6][CX3](=O)[OX2][#6]",
    "ether": "[OD2;!$(OC=O)]([#6])[#6]",
    "amine": "[NX3;!$(N-C=[O,S,N]);!$(N-a);!$(N~O)]",
    "amide": "[CX3](=O)[NX3]",
    "nitrile": "[CX2]#[NX1]",
    "halide": "[CX4][Cl,Br,I]",
    "thiol or sulfide": "[SX2;!$(S=*)]",
    "nitro": "[N+](=O)[O-]",
    "phenol": "c[OX2H]",
    "aldehyde": "[CX3H1](=O)[#6]",
    "pyridine": "n1ccccc1",
}
"""Functional groups (SMARTS) the benchmark molecules are chosen across; hydrocarbons (None) are told apart by
their elements and bonds."""


def freesolv() -> list[dict]:
    rows = []
    for line in FREESOLV.read_text().splitlines():
        if line.startswith("#") or not line.strip():
            continue
        fields = [field.strip() for field in line.split(";")]
        rows.append({"id": fields[0], "smiles": fields[1], "name": fields[2], "expt": float(fields[3]),
                     "expt_err": float(fields[4]), "calc": float(fields[5]), "calc_err": float(fields[6])})
    return rows


def choose(rows: list[dict], n: int) -> list[dict]:
    """One organic molecule per group, each the smallest that has only that group of ``GROUPS``."""
    patterns = {name: Chem.MolFromSmarts(smarts) for name, smarts in GROUPS.items() if smarts is not None}
    candidates = []
    for row in rows:
        molecule = Chem.MolFromSmiles(row["smiles"])
        if molecule is None or not any(atom.GetSymbol() == "C" for atom in molecule.GetAtoms()):
            continue
        groups = [name for name, pattern in patterns.items() if molecule.HasSubstructMatch(pattern)]
        if all(atom.GetSymbol() == "C" for atom in molecule.GetAtoms()):
            aromatic = any(atom.GetIsAromatic() for atom in molecule.GetAtoms())
            unsaturated = any(bond.GetBondTypeAsDouble() > 1 for bond in molecule.GetBonds())
            groups = ["aromatic hydrocarbon"] if aromatic else [] if unsaturated else ["alkane"]
        if len(groups) == 1:
            candidates.append((molecule.GetNumHeavyAtoms(), row["id"], groups[0], row))
    chosen = []
    for group in GROUPS:
        matches = sorted(c for c in candidates if c[2] == group)
        if matches:
            chosen.append({**matches[0][3], "group": group})
        if len(chosen) == n:
            break
    return chosen


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--molecules", type=int, default=10)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--production-ps", type=float, default=Protocol.production)
    parser.add_argument("--charges", choices=["am1bcc", "am1bcc-fast"], default="am1bcc",
                        help="AM1-BCC at the AM1-optimised geometry (standard, as FreeSolv), or at the MMFF geometry.")
    parser.add_argument("--workdir", type=Path, default=ROOT / "benchmarks" / "solvation_runs")
    parser.add_argument("--only", help="Comma-separated names of the chosen molecules to run (default: all).")
    args = parser.parse_args()

    protocol = Protocol(production=args.production_ps)
    results = []
    chosen = choose(freesolv(), args.molecules)
    if args.only:
        chosen = [molecule for molecule in chosen if molecule["name"] in args.only.split(",")]
    for molecule in chosen:
        start = time.perf_counter()
        record = hydration_free_energy(molecule["smiles"], forcefield="gaff", charges=args.charges, protocol=protocol,
                                       workdir=args.workdir, n_workers=args.workers, progress=False)
        result = {
            "id": molecule["id"], "name": molecule["name"], "group": molecule["group"], "smiles": molecule["smiles"],
            "method": "mbar", "charges": args.charges, "dG": round(record["dG_kcal_mol"], 3),
            "dG_err": round(record["dG_err_kcal_mol"], 3),
            "freesolv_calc": molecule["calc"], "freesolv_calc_err": molecule["calc_err"],
            "experiment": molecule["expt"], "experiment_err": molecule["expt_err"],
            "min_overlap": min(min(leg["neighbour_overlap"]) for leg in record["legs"].values()),
            "wall_time_s": round(time.perf_counter() - start, 1), "resumed": record["reused_windows"] > 0,
            "core_time_s": round(record["task_time_s"], 1), "md_steps": record["md_steps"],
            "energy_evaluations": record["energy_evaluations"],
        }
        results.append(result)
        print(json.dumps(result), flush=True)
    dg = np.array([r["dG"] for r in results])
    summary = {
        "summary": "mbar", "charges": args.charges, "molecules": len(results), "workers": args.workers,
        "protocol": {"production_ps": protocol.production, "window_equilibration_ps": protocol.window_equilibration,
                     "equilibration_ps": protocol.equilibration, "timestep_ps": protocol.timestep},
        "mae_vs_freesolv_calc": round(float(np.mean(np.abs(dg - [r["freesolv_calc"] for r in results]))), 3),
        "mae_vs_experiment": round(float(np.mean(np.abs(dg - [r["experiment"] for r in results]))), 3),
        "freesolv_calc_mae_vs_experiment": round(float(np.mean(np.abs(
            np.subtract([r["freesolv_calc"] for r in results], [r["experiment"] for r in results])))), 3),
        "mean_core_time_per_molecule_s": round(float(np.mean([r["core_time_s"] for r in results])), 1),
        "mean_wall_time_per_molecule_s": round(float(np.mean([r["wall_time_s"] for r in results
                                                              if not r["resumed"]] or [np.nan])), 1),
        "mean_energy_evaluations": float(np.mean([r["energy_evaluations"] for r in results])),
    }
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
