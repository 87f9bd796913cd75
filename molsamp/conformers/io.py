"""Writing conformer ensembles as SDF (and, from :mod:`molsamp.io`, reading molecule lists)."""

from __future__ import annotations

__all__ = ["read_smiles", "write_sdf"]

import io
import os
from pathlib import Path
from typing import TYPE_CHECKING

from molsamp.errors import InputError
from molsamp.files import atomic_write
from molsamp.io import read_smiles

if TYPE_CHECKING:
    from rdkit import Chem


def write_sdf(molecules: list[Chem.Mol], path: str | os.PathLike) -> Path:
    """Write every conformer of every molecule as one SDF record, with the molecule's and the conformer's properties.

    Written to a temporary file in the same folder and renamed, so an interrupted run never leaves a truncated SDF.
    """
    from rdkit import Chem

    path = Path(path)
    if not path.parent.is_dir():
        raise InputError(f"cannot write {str(path)!r}: folder {str(path.parent)!r} does not exist")
    buffer = io.StringIO()
    writer = Chem.SDWriter(buffer)
    for molecule in molecules:
        for conformer in molecule.GetConformers():
            record = Chem.Mol(molecule, confId=conformer.GetId())
            for key, value in conformer.GetPropsAsDict().items():
                record.SetProp(key, f"{value:.6f}" if isinstance(value, float) else str(value))
            writer.write(record)
    writer.close()
    atomic_write(path, buffer.getvalue())
    return path
