"""Relaxing a generated molecule in GAFF2/AM1-BCC: the energy falls to a minimum, atoms keep their order, and the
geometry moves only a little from a good starting structure."""

import numpy as np
import openmm
from rdkit import Chem

from molsamp.systems import from_smiles
from molsamp.voxel import molecule_from_atoms
from molsamp.voxel.relax import relax


def test_relaxation_lowers_the_energy_to_a_minimum(embed, tmp_path, monkeypatch):
    monkeypatch.setenv("MOLSAMP_CACHE", str(tmp_path))
    elements, positions = embed("OCC#N", seed=3)
    rng = np.random.default_rng(0)
    molecule = molecule_from_atoms(elements, positions + rng.normal(0, 0.05, positions.shape))
    relaxed, energy, rmsd = relax(molecule, solvent="vacuum")
    assert [a.GetSymbol() for a in relaxed.GetAtoms()] == elements
    assert 0 < rmsd < 0.5
    system = from_smiles("OCC#N", solvent="vacuum")
    order = system.molecule.GetSubstructMatch(relaxed)
    reordered = np.empty((len(order), 3))
    reordered[list(order)] = relaxed.GetConformer().GetPositions()
    context = openmm.Context(system.openmm_system, openmm.VerletIntegrator(0.001),
                             openmm.Platform.getPlatformByName("Reference"))
    start = np.empty_like(reordered)
    start[list(order)] = molecule.GetConformer().GetPositions()
    energies = []
    for xyz in (start, reordered):
        context.setPositions(xyz / 10.0)
        energies.append(context.getState(getEnergy=True).getPotentialEnergy()._value)
    assert energies[1] < energies[0] and abs(energies[1] - energy) < 1.0
    assert Chem.MolToSmiles(Chem.RemoveHs(relaxed)) == "N#CCO"
