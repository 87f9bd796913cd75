"""Capped peptides from their sequence: ACE-X1...Xn-NME in amber ff14SB with OBC2 implicit water.

The heavy atoms come from RDKit (:func:`rdkit.Chem.MolFromSequence`, which names them as in the PDB and makes
L-amino acids), with the caps added, an ETKDG conformer (fixed seed; peptide bonds set trans) and the backbone first in Amber order
(N, CA, side chain, C, O). OpenMM's ``Modeller.addHydrogens`` adds the hydrogens with Amber names at pH 7: Lys and
Arg charged, Asp and Glu charged, Cys, Tyr neutral, His neutral as HIE (hydrogen on NE2; the residue keeps the
name HIS). The structure is energy-minimised in the force field it is simulated with.
"""

from __future__ import annotations

__all__ = ["AMINO_ACIDS", "MAX_RESIDUES", "FORCEFIELD", "check_sequence", "from_sequence", "openmm_constraints"]

import random
from typing import TYPE_CHECKING

import numpy as np

from molsamp.errors import InputError

if TYPE_CHECKING:
    from molsamp.systems import System

AMINO_ACIDS = "ACDEFGHIKLMNPQRSTVWY"
"""One-letter codes accepted in a sequence (upper case only: lower case, a common mark of D-amino acids, is refused)."""

MAX_RESIDUES = 4
"""Longest sequence :func:`from_sequence` builds."""

FORCEFIELD = ("amber14-all.xml", "implicit/obc2.xml")
"""OpenMM force field files: amber ff14SB and OBC2 implicit water, as in the built-in ``ala2``."""

_BACKBONE = ("N", "CA", "C", "O")


def openmm_constraints(name: str | None) -> dict:
    """``createSystem`` keyword arguments for the constraints ``None``/``"None"``, ``"HBonds"``, ``"AllBonds"`` or
    ``"HAngles"``: MD applies them, and every constrained bond and angle keeps its energy term
    (``flexibleConstraints``), so the System's energy is the full force field."""
    import openmm.app as app

    options = {None: None, "None": None, "HBonds": app.HBonds, "AllBonds": app.AllBonds, "HAngles": app.HAngles}
    if name not in options:
        raise InputError(f"constraints must be one of {list(options)[1:]}, got {name!r}")
    if options[name] is None:
        return {"constraints": None}
    return {"constraints": options[name], "flexibleConstraints": True}


def check_sequence(sequence: str) -> str:
    """The sequence if it is 1 to :data:`MAX_RESIDUES` letters of :data:`AMINO_ACIDS`, else an :class:`InputError`."""
    if not isinstance(sequence, str) or not 1 <= len(sequence) <= MAX_RESIDUES \
            or any(letter not in AMINO_ACIDS for letter in sequence):
        raise InputError(f"peptide sequence {sequence!r}: expected 1 to {MAX_RESIDUES} one-letter codes of "
                         f"{AMINO_ACIDS} (upper case)")
    return sequence


def _heavy_atoms(sequence: str, seed: int):
    """The capped peptide's heavy atoms: an OpenMM Topology without hydrogens and positions (nm) from ETKDG."""
    import openmm.app as app
    from rdkit import Chem
    from rdkit.Chem import AllChem, rdMolTransforms

    mol = Chem.RWMol(Chem.MolFromSequence(sequence))  # L-amino acids with PDB atom and residue names
    labels = [(a.GetPDBResidueInfo().GetResidueNumber(), a.GetPDBResidueInfo().GetResidueName(),
               a.GetPDBResidueInfo().GetName().strip()) for a in mol.GetAtoms()]
    n = len(sequence)
    index = {(number, name): i for i, (number, _, name) in enumerate(labels)}
    for number in range(1, n + 1):  # RDKit (2026.09) bonds Ile's CD1 to the atom it names CG2: the names are swapped
        if sequence[number - 1] == "I":
            (gamma,) = (a.GetIdx() for a in mol.GetAtomWithIdx(index[number, "CD1"]).GetNeighbors())
            other = index[number, "CG1"] + index[number, "CG2"] - gamma
            labels[gamma], labels[other] = (number, "ILE", "CG1"), (number, "ILE", "CG2")
    mol.RemoveAtom(index[n, "OXT"])  # the last atom: the other indices stay valid
    labels.pop()

    def add(number, residue, name, symbol, partner, order=Chem.BondType.SINGLE):
        index[number, name] = mol.AddAtom(Chem.Atom(symbol))
        labels.append((number, residue, name))
        mol.AddBond(index[number, name], partner, order)

    add(0, "ACE", "C", "C", index[1, "N"])
    add(0, "ACE", "CH3", "C", index[0, "C"])
    add(0, "ACE", "O", "O", index[0, "C"], Chem.BondType.DOUBLE)
    add(n + 1, "NME", "N", "N", index[n, "C"])
    add(n + 1, "NME", "C", "C", index[n + 1, "N"])  # OpenMM's name of NME's methyl carbon (CH3 in PDB files)
    Chem.SanitizeMol(mol)
    mol = Chem.AddHs(mol)
    if AllChem.EmbedMolecule(mol, randomSeed=seed) != 0:
        raise InputError(f"peptide sequence {sequence!r}: RDKit could not embed a conformer")
    alpha = {0: index[0, "CH3"], **{k: index[k, "CA"] for k in range(1, n + 1)}, n + 1: index[n + 1, "C"]}
    for k in range(n + 1):  # ETKDG can make cis peptide bonds (as in PPPP), which MD would hardly ever leave
        omega = (alpha[k], index[k, "C"], index[k + 1, "N"], alpha[k + 1])
        if abs(rdMolTransforms.GetDihedralDeg(mol.GetConformer(), *omega)) < 90.0:
            rdMolTransforms.SetDihedralDeg(mol.GetConformer(), *omega, 180.0)

    # Atom order of the Amber residue templates (and systems/ala2.pdb): N, CA, side chain, C, O.
    order = [index[0, "CH3"], index[0, "C"], index[0, "O"]]
    for number in range(1, n + 1):
        side = [i for i, (k, _, name) in enumerate(labels) if k == number and name not in _BACKBONE]
        order += [index[number, "N"], index[number, "CA"], *side, index[number, "C"], index[number, "O"]]
    order += [index[n + 1, "N"], index[n + 1, "C"]]

    topology = app.Topology()
    chain = topology.addChain()
    residues, atoms = {}, {}
    for i in order:
        number, residue, name = labels[i]
        if number not in residues:
            residues[number] = topology.addResidue(residue, chain, id=str(number + 1))
        atoms[i] = topology.addAtom(name, app.Element.getBySymbol(mol.GetAtomWithIdx(i).GetSymbol()), residues[number])
    for bond in mol.GetBonds():
        if bond.GetBeginAtomIdx() in atoms and bond.GetEndAtomIdx() in atoms:
            topology.addBond(atoms[bond.GetBeginAtomIdx()], atoms[bond.GetEndAtomIdx()])
    return topology, mol.GetConformer().GetPositions()[order] / 10.0  # Å -> nm


def from_sequence(
    sequence: str,
    temperature: float = 300.0,
    seed: int = 0,
    name: str | None = None,
    description: str | None = None,
    constraints: str | None = "HBonds",
) -> System:
    """A capped peptide ACE-``sequence``-NME in amber ff14SB with OBC2 implicit water.

    ``sequence`` is 1 to :data:`MAX_RESIDUES` one-letter codes of :data:`AMINO_ACIDS` (``"A"`` gives alanine
    dipeptide with the atoms, names and bonds of the built-in ``ala2``). ``seed`` seeds RDKit's ETKDG conformer and the
    hydrogens' starting positions.
    The OpenMM System has no cutoff and HBonds ``constraints`` for MD (None: none); either way every bond keeps its
    energy term, so the target is the full force field. Positions (nm) are minimised in it. Temperature in K;
    time step 0.002 ps, friction 1/ps. Protonation is that of pH 7 (see the module docstring; His is HIE).
    The name is ``"peptide:" + sequence`` unless given.

    >>> from_sequence("AK").topology.n_residues
    4
    """
    import mdtraj
    import openmm
    import openmm.app as app
    import openmm.unit as unit

    from molsamp.systems import System

    check_sequence(sequence)
    topology, positions = _heavy_atoms(sequence, seed)
    forcefield = app.ForceField(*FORCEFIELD)
    modeller = app.Modeller(topology, positions * unit.nanometer)
    variants = ["HIE" if residue.name == "HIS" else None for residue in topology.residues()]
    state = random.getstate()  # Modeller places new hydrogens with the global `random`: seed it, then restore it
    random.seed(seed)
    try:
        modeller.addHydrogens(forcefield, pH=7.0, variants=variants,
                              platform=openmm.Platform.getPlatformByName("Reference"))
    finally:
        random.setstate(state)
    openmm_system = forcefield.createSystem(modeller.topology, nonbondedMethod=app.NoCutoff,
                                            **openmm_constraints(constraints))

    # One CPU thread: deterministic, and quick (a second or less) at this size.
    context = openmm.Context(openmm_system, openmm.VerletIntegrator(0.001), openmm.Platform.getPlatformByName("CPU"),
                             {"Threads": "1"})
    context.setPositions(modeller.positions)
    context.applyConstraints(1e-6)
    openmm.LocalEnergyMinimizer.minimize(context, 10.0, 0)  # tolerance in kJ/mol/nm
    minimised = context.getState(getPositions=True).getPositions(asNumpy=True).value_in_unit(unit.nanometer)
    del context

    masses = np.array([openmm_system.getParticleMass(i)._value for i in range(openmm_system.getNumParticles())])
    return System(
        name=name or f"peptide:{sequence}", topology=mdtraj.Topology.from_openmm(modeller.topology),
        positions=np.asarray(minimised), temperature=float(temperature), masses=masses, openmm_system=openmm_system,
        description=description or f"capped peptide ACE-{sequence}-NME, amber ff14SB + OBC2 implicit water",
    )
