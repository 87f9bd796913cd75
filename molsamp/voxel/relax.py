"""Relaxation of generated molecules in the project's force field (GAFF2 with AM1-BCC charges, OBC2 implicit water
by default): a local energy minimisation from the generated geometry, with the energy there and how far the atoms
moved."""

from __future__ import annotations

__all__ = ["relax"]

from typing import TYPE_CHECKING

import numpy as np

from molsamp.errors import InputError

if TYPE_CHECKING:
    from rdkit import Chem


def relax(molecule: Chem.Mol, forcefield: str = "gaff2", solvent: str = "obc2", tolerance: float = 1.0
          ) -> tuple[Chem.Mol, float, float]:
    """``molecule`` (hydrogens explicit, one conformer in Å) minimised to an energy gradient below ``tolerance``
    (kJ/mol/nm) with every bond flexible; returns the relaxed copy, its potential energy (kJ/mol) and the RMSD
    (Å, no superposition) between the generated and the relaxed positions. Stereo is taken from the 3D geometry;
    parameters come from the project's cache (:func:`molsamp.systems.from_smiles`)."""
    import openmm
    from rdkit import Chem

    from molsamp.systems import from_smiles

    molecule = Chem.Mol(molecule)
    Chem.AssignStereochemistryFrom3D(molecule)
    system = from_smiles(Chem.MolToSmiles(Chem.RemoveHs(molecule)), forcefield=forcefield, solvent=solvent)
    order = system.molecule.GetSubstructMatch(molecule, useChirality=True)
    if len(order) != molecule.GetNumAtoms():
        raise InputError(f"molecule {Chem.MolToSmiles(Chem.RemoveHs(molecule))!r}: its parametrised form does not "
                         "match the generated atoms")
    generated = molecule.GetConformer().GetPositions()
    positions = np.empty_like(generated)
    positions[list(order)] = generated
    openmm_system = openmm.XmlSerializer.clone(system.openmm_system)
    for index in reversed(range(openmm_system.getNumConstraints())):
        openmm_system.removeConstraint(index)
    context = openmm.Context(openmm_system, openmm.VerletIntegrator(0.001),
                             openmm.Platform.getPlatformByName("Reference"))
    context.setPositions(positions / 10.0)
    openmm.LocalEnergyMinimizer.minimize(context, tolerance)
    state = context.getState(getEnergy=True, getPositions=True)
    relaxed_positions = state.getPositions(asNumpy=True)._value * 10.0
    relaxed = Chem.Mol(molecule)
    conformer = relaxed.GetConformer()
    for i, j in enumerate(order):
        conformer.SetAtomPosition(i, relaxed_positions[j].tolist())
    rmsd = float(np.sqrt(((relaxed_positions[list(order)] - generated) ** 2).sum(1).mean()))
    return relaxed, float(state.getPotentialEnergy()._value), rmsd
