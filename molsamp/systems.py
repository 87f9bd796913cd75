"""Molecular systems: what to simulate, loaded from a built-in name, a YAML file in ``systems/`` or a SMILES."""

from __future__ import annotations

__all__ = ["System", "load", "load_flexible", "from_smiles", "available", "repartition_hydrogen_mass", "SYSTEMS_DIR",
           "SOLVENTS", "nonbonded_options"]

import dataclasses
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from molsamp import shipped
from molsamp.errors import InputError, SystemFileError, UnknownSystemError

if TYPE_CHECKING:
    import mdtraj
    import openmm
    from rdkit import Chem

    from molsamp.targets import Target

SYSTEMS_DIR = shipped.SYSTEMS_DIR
"""Built-in system files; ``MOLSAMP_SYSTEMS_PATH`` (colon-separated folders) adds more."""

SOLVENTS = ("obc2", "vacuum")
"""Solvent models of systems made from SMILES: OBC2 implicit water (mbondi2 radii) or none."""


@dataclasses.dataclass(frozen=True, eq=False)
class System:
    """A system to sample: topology, physics and thermodynamic state.

    Attributes:
        name: short name (the YAML file's stem).
        topology: mdtraj Topology (atom names, residues, bonds).
        positions: initial positions ``[N, 3]`` (nm; reduced lengths for analytic systems, ``[N, dim]``).
        temperature: K (reduced temperature for analytic systems).
        masses: ``[N]`` (amu).
        openmm_system: the OpenMM System, or None for analytic systems.
        analytic: the pure-torch energy target of analytic systems, else None.
        timestep: MD time step (ps).
        friction: Langevin friction (1/ps).
        description: one line for listings.
        molecule: for systems made from SMILES, the RDKit molecule (explicit hydrogens, one conformer in Å) in the
            system's atom order; else None.
        smiles: for systems made from SMILES, the fully assigned canonical isomeric SMILES sampled (see
            :func:`from_smiles`); else None.
    """

    name: str
    topology: mdtraj.Topology
    positions: np.ndarray
    temperature: float
    masses: np.ndarray
    openmm_system: openmm.System | None = None
    analytic: Target | None = None
    timestep: float = 0.002
    friction: float = 1.0
    description: str = ""
    molecule: Chem.Mol | None = None
    smiles: str | None = None

    @property
    def n_atoms(self) -> int:
        return len(self.masses)

    @property
    def box(self) -> np.ndarray | None:
        """Periodic box vectors ``[3, 3]`` (nm, one per row) of a periodic system (constant volume), else None."""
        if self.openmm_system is None or not self.openmm_system.usesPeriodicBoundaryConditions():
            return None
        import openmm.unit as unit

        return np.array([v.value_in_unit(unit.nanometer) for v in self.openmm_system.getDefaultPeriodicBoxVectors()])

    def target(self, **kwargs: Any) -> Target:
        """The energy target; keyword arguments go to :class:`~molsamp.targets.OpenMMTarget` (n_workers, platform)."""
        if self.analytic is not None:
            return self.analytic
        from molsamp.targets import OpenMMTarget

        return OpenMMTarget(self.openmm_system, self.temperature, **kwargs)


@dataclasses.dataclass(frozen=True)
class _SystemFile:
    """Schema of a system YAML file (keys as in the file)."""

    description: str = ""
    structure: str | None = None
    forcefield: list[str] | str = dataclasses.field(default_factory=list)
    constraints: str | None = None
    analytic: str | None = None
    parameters: dict[str, Any] = dataclasses.field(default_factory=dict)
    nonbonded: dict[str, Any] = dataclasses.field(default_factory=dict)
    box: list[float] | None = None
    smiles: str | None = None
    solvent: str | None = None
    temperature: float = 300.0
    timestep: float = 0.002
    friction: float = 1.0


_FIELD_TYPES = {"description": str, "structure": str, "forcefield": (list, str), "constraints": str, "analytic": str,
                "parameters": dict, "nonbonded": dict, "box": list, "smiles": str, "solvent": str, "temperature": (int, float),
                "timestep": (int, float), "friction": (int, float)}


def _search_path() -> list[Path]:
    extra = [Path(p) for p in os.environ.get("MOLSAMP_SYSTEMS_PATH", "").split(os.pathsep) if p]
    return [*extra, SYSTEMS_DIR]


def available() -> dict[str, str]:
    """Built-in system names and their one-line descriptions."""
    import yaml

    names = {}
    for folder in reversed(_search_path()):
        for path in sorted(folder.glob("*.yaml")):
            names[path.stem] = (yaml.safe_load(path.read_text()) or {}).get("description", "")
    return dict(sorted(names.items()))


def _find(name_or_path: str | os.PathLike) -> Path:
    path = Path(name_or_path)
    if path.suffix in (".yaml", ".yml") or path.exists():
        if not path.is_file():
            raise UnknownSystemError(f"system file {str(path)!r} does not exist")
        return path
    for folder in _search_path():
        if (candidate := folder / f"{name_or_path}.yaml").is_file():
            return candidate
    raise UnknownSystemError(f"unknown system {str(name_or_path)!r}; available: {', '.join(available())}")


def _parse(path: Path) -> _SystemFile:
    import yaml

    try:
        raw = yaml.safe_load(path.read_text())
    except yaml.YAMLError as error:
        raise SystemFileError(f"{path}: not valid YAML ({error})".replace("\n", " ")) from None
    if not isinstance(raw, dict):
        raise SystemFileError(f"{path}: expected a mapping of keys to values at the top level")
    for key, value in raw.items():
        if key not in _FIELD_TYPES:
            raise SystemFileError(f"{path}: unknown key {key!r}; allowed: {', '.join(_FIELD_TYPES)}")
        if not isinstance(value, _FIELD_TYPES[key]) or isinstance(value, bool):
            raise SystemFileError(f"{path}: key {key!r} has the wrong type ({type(value).__name__}: {value!r})")
    spec = _SystemFile(**raw)
    for key, zero_ok in (("temperature", False), ("timestep", False), ("friction", True)):
        value = getattr(spec, key)
        if not (np.isfinite(value) and (value >= 0 if zero_ok else value > 0)):
            raise SystemFileError(f"{path}: key {key!r} must be a {'non-negative' if zero_ok else 'positive'} "
                                  f"number, got {value!r}")
    if sum(source is not None for source in (spec.structure, spec.analytic, spec.smiles)) != 1:
        raise SystemFileError(f"{path}: give exactly one of 'structure' (with 'forcefield'), 'analytic' or 'smiles'")
    if spec.structure is not None and not spec.forcefield:
        raise SystemFileError(f"{path}: key 'forcefield' is required with 'structure'")
    if spec.structure is None and (spec.nonbonded or spec.box):
        raise SystemFileError(f"{path}: keys 'nonbonded' and 'box' apply only with 'structure'")
    if spec.box is not None and not (len(spec.box) == 3 and all(isinstance(edge, (int, float)) and edge > 0
                                                                for edge in spec.box)):
        raise SystemFileError(f"{path}: key 'box' must be three positive edge lengths (nm), got {spec.box!r}")
    if spec.structure is not None and not isinstance(spec.forcefield, list):
        raise SystemFileError(f"{path}: key 'forcefield' must be a list of OpenMM force field files with 'structure'")
    if spec.smiles is None and spec.solvent is not None:
        raise SystemFileError(f"{path}: key 'solvent' applies only with 'smiles'")
    if spec.smiles is not None:
        from molsamp.forcefields import FORCEFIELDS

        if spec.forcefield not in ([], *FORCEFIELDS):
            raise SystemFileError(f"{path}: key 'forcefield' must be one of {list(FORCEFIELDS)} with 'smiles', "
                                  f"got {spec.forcefield!r}")
        if spec.solvent not in (None, *SOLVENTS):
            raise SystemFileError(f"{path}: key 'solvent' must be one of {list(SOLVENTS)}, got {spec.solvent!r}")
        if spec.constraints is not None:
            raise SystemFileError(f"{path}: key 'constraints' does not apply with 'smiles' (always HBonds for MD; "
                                  "the energy keeps every bond)")
    return spec


def _openmm_system(path: Path, spec: _SystemFile) -> System:
    import mdtraj
    import openmm
    import openmm.app as app

    from molsamp.peptides import openmm_constraints

    structure = path.parent / spec.structure
    if not structure.is_file():
        raise SystemFileError(f"{path}: key 'structure': file {str(structure)!r} does not exist")
    pdb = app.PDBFile(str(structure))
    try:
        constraints = openmm_constraints(spec.constraints)
    except InputError as error:
        raise SystemFileError(f"{path}: key {error}") from None
    try:
        nonbonded = nonbonded_options(spec.nonbonded)
    except InputError as error:
        raise SystemFileError(f"{path}: key 'nonbonded': {error}") from None
    if spec.box is not None:
        pdb.topology.setPeriodicBoxVectors(np.diag(spec.box) * openmm.unit.nanometer)
    if nonbonded["nonbondedMethod"] != app.NoCutoff and pdb.topology.getPeriodicBoxVectors() is None:
        raise SystemFileError(f"{path}: a periodic nonbonded method needs a box (CRYST1 record) in {spec.structure}")
    try:
        forcefield = app.ForceField(*spec.forcefield)
        openmm_system = forcefield.createSystem(pdb.topology, **nonbonded, **constraints)
    except (ValueError, OSError) as error:
        raise SystemFileError(f"{path}: key 'forcefield': {error}") from None
    masses = np.array([openmm_system.getParticleMass(i)._value for i in range(openmm_system.getNumParticles())])
    return System(
        name=path.stem, topology=mdtraj.Topology.from_openmm(pdb.topology),
        positions=np.asarray(pdb.getPositions(asNumpy=True)._value), temperature=float(spec.temperature),
        masses=masses, openmm_system=openmm_system, timestep=float(spec.timestep), friction=float(spec.friction),
        description=spec.description,
    )


NONBONDED_METHODS = ("NoCutoff", "CutoffPeriodic", "Ewald", "PME")
"""Nonbonded methods a system file may name (OpenMM's ``app`` constants of the same names)."""


def nonbonded_options(spec: dict[str, Any]) -> dict[str, Any]:
    """``createSystem`` keyword arguments of a system file's ``nonbonded`` mapping: ``method`` (one of
    :data:`NONBONDED_METHODS`, default NoCutoff), ``cutoff`` and ``switch`` (nm; switching from ``switch`` to the
    cutoff, default none), ``dispersion_correction`` (default true) and ``ewald_error_tolerance`` (default 5e-4)."""
    import openmm.app as app

    known = {"method", "cutoff", "switch", "dispersion_correction", "ewald_error_tolerance"}
    if unknown := set(spec) - known:
        raise InputError(f"unknown keys {sorted(unknown)}; allowed: {sorted(known)}")
    method = spec.get("method", "NoCutoff")
    if method not in NONBONDED_METHODS:
        raise InputError(f"method must be one of {list(NONBONDED_METHODS)}, got {method!r}")
    options: dict[str, Any] = {"nonbondedMethod": getattr(app, method)}
    if method == "NoCutoff":
        if len(spec) > 1:
            raise InputError("NoCutoff takes no other options")
        return options
    cutoff, switch = spec.get("cutoff"), spec.get("switch")
    if not isinstance(cutoff, (int, float)) or isinstance(cutoff, bool) or not cutoff > 0:
        raise InputError(f"{method} needs a positive 'cutoff' (nm), got {cutoff!r}")
    if switch is not None and not (isinstance(switch, (int, float)) and 0 < switch < cutoff):
        raise InputError(f"'switch' must be a distance (nm) below the cutoff {cutoff}, got {switch!r}")
    tolerance = spec.get("ewald_error_tolerance", 5e-4)
    if not (isinstance(tolerance, float) and 0 < tolerance < 1):
        raise InputError(f"'ewald_error_tolerance' must be a number in (0, 1), got {tolerance!r}")
    correction = spec.get("dispersion_correction", True)
    if not isinstance(correction, bool):
        raise InputError(f"'dispersion_correction' must be true or false, got {correction!r}")
    return {**options, "nonbondedCutoff": float(cutoff), "switchDistance": None if switch is None else float(switch),
            "ewaldErrorTolerance": tolerance, "useDispersionCorrection": correction}


def _analytic_system(path: Path, spec: _SystemFile) -> System:
    import mdtraj

    from molsamp.targets import ANALYTIC_TARGETS

    if spec.analytic not in ANALYTIC_TARGETS:
        raise SystemFileError(f"{path}: key 'analytic' must be one of {list(ANALYTIC_TARGETS)}, got {spec.analytic!r}")
    try:
        target = ANALYTIC_TARGETS[spec.analytic](**spec.parameters, temperature=float(spec.temperature))
    except TypeError as error:
        raise SystemFileError(f"{path}: key 'parameters': {error}") from None
    topology = mdtraj.Topology()
    residue = topology.add_residue("UNL", topology.add_chain())
    for i in range(target.n_atoms):
        topology.add_atom(f"P{i}", mdtraj.element.virtual, residue)
    return System(
        name=path.stem, topology=topology, positions=_lattice_positions(target.n_atoms, target.dim),
        temperature=float(spec.temperature), masses=np.ones(target.n_atoms), analytic=target,
        timestep=float(spec.timestep), friction=float(spec.friction), description=spec.description,
    )


def _smiles_system(path: Path, spec: _SystemFile) -> System:
    try:
        system = from_smiles(spec.smiles, forcefield=spec.forcefield or "gaff2", solvent=spec.solvent or "obc2",
                             temperature=float(spec.temperature), name=path.stem, description=spec.description or None)
    except InputError as error:
        raise SystemFileError(f"{path}: key 'smiles': {error}") from None
    return dataclasses.replace(system, timestep=float(spec.timestep), friction=float(spec.friction))


def from_smiles(
    smiles: str,
    forcefield: str = "gaff2",
    solvent: str = "obc2",
    temperature: float = 300.0,
    cache_dir: str | os.PathLike | None = None,
    seed: int = 0,
    name: str | None = None,
    description: str | None = None,
    charges: str = "am1bcc-fast",
    stereo: str = "first",
) -> System:
    """A small organic molecule from SMILES: GAFF2 (or ``forcefield="gaff"``) with AM1-BCC charges.

    A system is one stereoisomer, stored as ``System.smiles`` (canonical isomeric SMILES). Where ``smiles`` leaves
    stereocentres or stereo double bonds unassigned, ``stereo="first"`` samples the first of
    :func:`molsamp.stereo.stereoisomers` and warns (:class:`~molsamp.stereo.StereoWarning`); ``stereo="all"``
    raises :class:`InputError` (enumerate the isomers with :func:`molsamp.stereo.expand_stereo`).

    Parameters come from :func:`molsamp.forcefields.parametrize` (AmberTools, cached in ``cache_dir``; ``seed``
    seeds the conformer, which has the stereo sampled). ``charges`` defaults to ``"am1bcc-fast"`` (no AM1 geometry
    optimisation), so a new drug-sized molecule is ready in seconds; ``"am1bcc"`` is the standard method. The OpenMM
    System has no cutoff and, for ``solvent="obc2"``, OBC2 implicit water; its X-H bond constraints are for MD, and
    every bond keeps its energy term (``flexibleConstraints=True``), so the target is the full force field.
    Positions (nm) are the cached conformer's. Temperature in K; time step 0.002 ps, friction 1/ps.
    """
    if solvent not in SOLVENTS:
        raise InputError(f"solvent must be one of {list(SOLVENTS)}, got {solvent!r}")
    import mdtraj
    import openmm.app as app

    from molsamp.forcefields import parametrize
    from molsamp.stereo import resolve_stereo

    isomeric = resolve_stereo(smiles, stereo)
    parameters = parametrize(isomeric, forcefield=forcefield, cache_dir=cache_dir, seed=seed, charges=charges)
    prmtop = app.AmberPrmtopFile(str(parameters.prmtop))
    openmm_system = prmtop.createSystem(nonbondedMethod=app.NoCutoff, constraints=app.HBonds, flexibleConstraints=True,
                                        implicitSolvent=app.OBC2 if solvent == "obc2" else None)
    masses = np.array([openmm_system.getParticleMass(i)._value for i in range(openmm_system.getNumParticles())])
    return System(
        name=name or smiles, topology=mdtraj.Topology.from_openmm(prmtop.topology),
        positions=parameters.molecule.GetConformer().GetPositions() / 10.0, temperature=float(temperature),
        masses=masses, openmm_system=openmm_system, molecule=parameters.molecule, smiles=isomeric,
        description=description or f"{isomeric}: {forcefield.upper()}/AM1-BCC, {solvent}",
    )


def repartition_hydrogen_mass(system: System, hydrogen_mass: float = 3.0, timestep: float | None = None) -> System:
    """A copy of ``system`` whose hydrogens weigh ``hydrogen_mass`` (amu), the difference taken from the heavy atom
    each is bonded to (and ``timestep`` in ps, if given). Configurational averages are unchanged; the fastest
    vibrations slow down, so flexible X-H bonds tolerate a 2 fs step."""
    import openmm

    if system.openmm_system is None:
        raise InputError(f"system {system.name!r} has no OpenMM system to repartition")
    openmm_system = openmm.XmlSerializer.clone(system.openmm_system)
    masses = system.masses.copy()
    for bond in system.topology.bonds:
        pair = (bond.atom1, bond.atom2) if bond.atom1.element.symbol == "H" else (bond.atom2, bond.atom1)
        hydrogen, heavy = pair
        if hydrogen.element.symbol != "H" or heavy.element.symbol == "H":
            continue
        shift = hydrogen_mass - masses[hydrogen.index]
        masses[hydrogen.index] += shift
        masses[heavy.index] -= shift
    for index, mass in enumerate(masses):
        openmm_system.setParticleMass(index, mass)
    return dataclasses.replace(system, openmm_system=openmm_system, masses=masses,
                               timestep=system.timestep if timestep is None else timestep)


def load_flexible(name_or_path: str | os.PathLike) -> System:
    """:func:`load` with every bond flexible and hydrogens of 3 amu for a 2 fs step: each bond keeps its energy term
    (as moves outside MD need) and MD stays stable. The dynamics of the project's peptide reference MD."""
    return repartition_hydrogen_mass(load(name_or_path, constraints=None), 3.0, timestep=0.002)


def _lattice_positions(n: int, dim: int, spacing: float = 1.0) -> np.ndarray:
    """The ``n`` points of a cubic lattice nearest its centre, centred at the origin (reduced lengths)."""
    side = int(np.ceil(n ** (1 / dim))) + 2
    grid = np.stack(np.meshgrid(*[np.arange(side)] * dim, indexing="ij"), -1).reshape(-1, dim) * spacing
    grid = grid - grid.mean(0)
    nearest = grid[np.argsort(np.linalg.norm(grid, axis=1), kind="stable")[:n]]
    return nearest - nearest.mean(0)


def load(name_or_path: str | os.PathLike, constraints: str | None = "default") -> System:
    """Load a built-in system by name (``"ala2"``, ``"lj13"``, see :func:`available`) or from a YAML file.

    A YAML file gives exactly one of ``structure`` (PDB file, with ``forcefield``: a list of OpenMM force field
    files), ``analytic`` (with ``parameters``) or ``smiles`` (with optional ``forcefield``: gaff2 or gaff, and
    ``solvent``: obc2 or vacuum; see :func:`from_smiles`).

    ``"peptide:SEQ"`` builds the capped peptide ACE-SEQ-NME from 1 to 4 one-letter amino-acid codes (``"peptide:AK"``)
    in amber ff14SB with OBC2 implicit water, like ``ala2``; see :func:`molsamp.peptides.from_sequence`.

    ``constraints`` overrides the constraints MD applies to structure and peptide systems (``None``: all bonds
    flexible in MD too). The energy (``system.target()``) keeps every bond term whatever the constraints.
    """
    if isinstance(name_or_path, str) and name_or_path.startswith("peptide:"):
        from molsamp.peptides import check_sequence, from_sequence

        sequence = name_or_path.removeprefix("peptide:")
        try:
            check_sequence(sequence)
        except InputError as error:
            raise UnknownSystemError(f"unknown system {name_or_path!r}: {error}") from None
        return from_sequence(sequence, **({} if constraints == "default" else {"constraints": constraints}))
    path = _find(name_or_path)
    spec = _parse(path)
    if spec.structure is not None:
        if constraints != "default":
            spec = dataclasses.replace(spec, constraints=constraints)
        return _openmm_system(path, spec)
    if constraints != "default":
        raise InputError(f"system {name_or_path!r}: constraints can only be chosen for structure and peptide systems")
    return _smiles_system(path, spec) if spec.smiles is not None else _analytic_system(path, spec)
