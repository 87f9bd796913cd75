"""Writing conformer ensembles as SDF: all at once (:func:`write_sdf`), or molecule by molecule so that a batch
keeps its finished work through a crash and resumes (:class:`ResumableSDF`). Reading molecule lists comes from
:mod:`molsamp.io`."""

from __future__ import annotations

__all__ = ["read_smiles", "sdf_text", "write_sdf", "ResumableSDF"]

import io
import json
import os
from pathlib import Path
from typing import TYPE_CHECKING

from molsamp.errors import InputError
from molsamp.files import atomic_write, check_output
from molsamp.io import read_smiles

if TYPE_CHECKING:
    from rdkit import Chem


def sdf_text(molecule: Chem.Mol) -> str:
    """Every conformer of ``molecule`` as one SDF record, with the molecule's and the conformer's properties."""
    from rdkit import Chem

    buffer = io.StringIO()
    writer = Chem.SDWriter(buffer)
    for conformer in molecule.GetConformers():
        record = Chem.Mol(molecule, confId=conformer.GetId())
        for key, value in conformer.GetPropsAsDict().items():
            record.SetProp(key, f"{value:.6f}" if isinstance(value, float) else str(value))
        writer.write(record)
    writer.close()
    return buffer.getvalue()


def write_sdf(molecules: list[Chem.Mol], path: str | os.PathLike) -> Path:
    """Write every conformer of every molecule as one SDF record (see :func:`sdf_text`).

    Written to a temporary file in the same folder and renamed, so an interrupted run never leaves a truncated SDF.
    """
    path = Path(path)
    if not path.parent.is_dir():
        raise InputError(f"cannot write {str(path)!r}: folder {str(path.parent)!r} does not exist")
    atomic_write(path, "".join(sdf_text(molecule) for molecule in molecules))
    return path


class ResumableSDF:
    """An SDF written molecule by molecule, with a JSON summary of one record per molecule.

    Each molecule's SDF records are appended to ``<output>.partial``, flushed and fsynced; then the progress file
    ``<output>.partial.json`` (the run's settings, the length in bytes of the partial file after the last finished
    molecule, and the summary record of every finished molecule) is replaced atomically. A kill at any moment
    therefore leaves at most an unfinished tail beyond the recorded length, which :meth:`start` cuts off when the
    same run starts again; a molecule is never lost or written twice. :meth:`finish` writes the summary
    ``<output>.json`` and renames the partial file to ``output``. Files get the usual permissions (the umask's).

    The outputs are checked on construction, before any work: the folder must be writable, and ``output`` (and,
    unless an unfinished run is to be resumed, the summary) must not exist unless ``overwrite``, which also discards
    an unfinished run.
    """

    def __init__(self, output: str | os.PathLike, overwrite: bool = False) -> None:
        self.output = check_output(output, overwrite)
        self.partial = self.output.with_name(self.output.name + ".partial")
        self.progress = self.output.with_name(self.output.name + ".partial.json")
        self.summary = self.output.with_name(self.output.name + ".json")
        self.overwrite = overwrite
        if overwrite or not self.progress.exists():
            check_output(self.summary, overwrite)
        self.records: list[dict] = []
        self._settings: dict = {}
        self._length = 0

    def start(self, settings: dict) -> list[dict]:
        """Begin the run described by ``settings`` (JSON data: arguments and molecules), or resume the unfinished run
        with the same settings; returns the summary records of the molecules it already finished, in order."""
        settings = json.loads(json.dumps(settings))
        if self.overwrite:
            self.partial.unlink(missing_ok=True)
            self.progress.unlink(missing_ok=True)
        if self.progress.exists():
            state = self._read_progress()
            if state["settings"] != settings:
                changed = sorted(k for k in settings.keys() | state["settings"].keys()
                                 if settings.get(k) != state["settings"].get(k))
                raise InputError(f"{str(self.partial)!r} holds an unfinished run with other settings (changed: "
                                 f"{', '.join(changed)}); rerun with the same arguments to resume it, or pass "
                                 "--overwrite (overwrite=True) to start afresh")
            self.records, self._length = state["records"], state["length"]
            size = self.partial.stat().st_size if self.partial.exists() else 0
            if size < self._length:
                raise InputError(f"{str(self.partial)!r} is shorter than its progress file records ({size} < "
                                 f"{self._length} bytes); pass --overwrite (overwrite=True) to start afresh")
        elif self.partial.exists():
            raise InputError(f"{str(self.partial)!r} exists without its progress file {self.progress.name!r}; "
                             "pass --overwrite (overwrite=True) to start afresh")
        self._settings = settings
        self._save(self.records, self._length)  # first: a partial file never exists without its progress file
        with open(self.partial, "ab") as file:
            file.truncate(self._length)  # drops the unfinished tail of an interrupted molecule
        return list(self.records)

    def add(self, record: dict, sdf: str = "") -> None:
        """Append one molecule's SDF records ``sdf`` (none for a failed molecule) and its summary ``record``,
        durably: on disk when this returns."""
        data = sdf.encode()
        with open(self.partial, "ab") as file:
            file.write(data)
            file.flush()
            os.fsync(file.fileno())
        records, length = [*self.records, record], self._length + len(data)
        self._save(records, length)
        self.records, self._length = records, length  # only once the molecule is recorded on disk

    def saved(self) -> int:
        """The number of molecules the progress file records as finished: those a resumed run keeps (also after an
        interruption in the middle of :meth:`add`)."""
        return len(self._read_progress()["records"])

    def finish(self) -> Path:
        """Write the summary (a JSON list of the records) and move the partial SDF to the output; returns it."""
        atomic_write(self.summary, json.dumps(self.records, indent=1) + "\n")
        os.replace(self.partial, self.output)
        self.progress.unlink()
        return self.output

    def discard(self) -> None:
        """Remove the partial SDF and its progress file (a run that wrote nothing worth keeping)."""
        self.partial.unlink(missing_ok=True)
        self.progress.unlink(missing_ok=True)

    def _save(self, records: list[dict], length: int) -> None:
        state = {"settings": self._settings, "length": length, "records": records}
        atomic_write(self.progress, json.dumps(state, indent=1) + "\n")

    def _read_progress(self) -> dict:
        try:
            state = json.loads(self.progress.read_text())
        except ValueError:
            state = None
        if not (isinstance(state, dict) and isinstance(state.get("settings"), dict)
                and isinstance(state.get("length"), int) and isinstance(state.get("records"), list)):
            raise InputError(f"progress file {str(self.progress)!r} is damaged; pass --overwrite (overwrite=True) "
                             "to start afresh")
        return state
