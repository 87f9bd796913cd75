"""Reading molecule lists and writing conformer ensembles as SDF."""

from __future__ import annotations

__all__ = ["read_smiles", "write_sdf"]

import csv
import os
from pathlib import Path
from typing import TYPE_CHECKING

from molsamp.errors import InputError

if TYPE_CHECKING:
    from rdkit import Chem


def read_smiles(source: str | os.PathLike) -> list[tuple[str, str]]:
    """``(name, smiles)`` pairs from a ``.smi`` file (SMILES then optional name), a ``.csv`` file (a ``smiles``
    column and optional ``name`` column), or a single SMILES string (named by itself)."""
    path = Path(source)
    if path.suffix.lower() in (".smi", ".csv", ".txt"):
        if not path.is_file():
            raise InputError(f"molecule file {str(path)!r} does not exist")
        if path.suffix.lower() == ".csv":
            with open(path, newline="") as handle:
                rows = list(csv.DictReader(handle))
            if rows and "smiles" not in rows[0]:
                raise InputError(f"{path}: needs a 'smiles' column, found {list(rows[0])}")
            pairs = [(row.get("name") or row["smiles"], row["smiles"]) for row in rows]
        else:
            fields = [line.split() for line in path.read_text().splitlines() if line.strip() and not line.startswith("#")]
            pairs = [(f[1] if len(f) > 1 else f[0], f[0]) for f in fields]
        if not pairs:
            raise InputError(f"{path}: no molecules in the file")
        return pairs
    if not str(source).strip():
        raise InputError("empty input: give a SMILES string or a .smi/.csv file")
    return [(str(source), str(source))]


def write_sdf(molecules: list[Chem.Mol], path: str | os.PathLike) -> Path:
    """Write every conformer of every molecule as one SDF record, with the molecule's and the conformer's properties.

    Written to a temporary file in the same folder and renamed, so an interrupted run never leaves a truncated SDF.
    """
    from rdkit import Chem

    path = Path(path)
    if not path.parent.is_dir():
        raise InputError(f"cannot write {str(path)!r}: folder {str(path.parent)!r} does not exist")
    temporary = path.with_name(f".{path.name}.tmp")
    try:
        writer = Chem.SDWriter(str(temporary))
        for molecule in molecules:
            for conformer in molecule.GetConformers():
                record = Chem.Mol(molecule, confId=conformer.GetId())
                for key, value in conformer.GetPropsAsDict().items():
                    record.SetProp(key, f"{value:.6f}" if isinstance(value, float) else str(value))
                writer.write(record)
        writer.close()
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)
    return path
