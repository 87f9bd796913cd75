"""Reading lists of molecules: a SMILES, or a .smi/.csv file."""

from __future__ import annotations

__all__ = ["read_smiles"]

import csv
import os
from pathlib import Path

from molsamp.errors import InputError


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
