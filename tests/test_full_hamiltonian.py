"""Every kind of system's Target is the full Hamiltonian it declares: its energies equal an independent OpenMM
evaluation of the same force field built with ``constraints=None`` (every bond term kept), on perturbed
configurations that stretch the bonds MD would constrain. The alchemical hydration legs get the same check in
tests/free_energy/test_alchemy.py."""

import numpy as np
import openmm
import openmm.app as app
import pytest
import torch

from molsamp.forcefields import parametrize
from molsamp.systems import SYSTEMS_DIR, from_smiles, load

RELATIVE_TOLERANCE = 1e-6
IMPLICIT_PEPTIDE = ("amber14-all.xml", "implicit/obc2.xml")


def perturbed(positions: np.ndarray, n: int = 4, scale: float = 0.005, seed: int = 0) -> np.ndarray:
    """``n`` copies of ``positions`` (nm) with Gaussian noise of ``scale`` nm on every coordinate."""
    noise = np.random.default_rng(seed).standard_normal((n, *positions.shape))
    return np.asarray(positions)[None] + scale * noise


def independent_energies(openmm_system: openmm.System, x: np.ndarray, box: np.ndarray | None = None) -> np.ndarray:
    """Potential energies (kJ/mol) from a plain OpenMM Context on the Reference platform."""
    context = openmm.Context(openmm_system, openmm.VerletIntegrator(0.001),
                             openmm.Platform.getPlatformByName("Reference"))
    energies = []
    for xi in x:
        if box is not None:
            context.setPeriodicBoxVectors(*box)
        context.setPositions(xi)
        energies.append(context.getState(getEnergy=True).getPotentialEnergy()._value)
    return np.array(energies)


def assert_target_is_hamiltonian(system, reference: openmm.System) -> None:
    x = perturbed(system.positions)
    with system.target(n_workers=0, platform="Reference") as target:
        energies = target.energy(torch.as_tensor(x)).numpy() * target.kT
    expected = independent_energies(reference, x)
    np.testing.assert_allclose(energies, expected, rtol=RELATIVE_TOLERANCE)


def test_ala2_target_keeps_the_bonds_md_constrains():
    system = load("ala2")
    assert system.openmm_system.getNumConstraints() > 0  # MD still constrains X-H bonds
    pdb = app.PDBFile(str(SYSTEMS_DIR / "ala2.pdb"))
    reference = app.ForceField(*IMPLICIT_PEPTIDE).createSystem(pdb.topology, nonbondedMethod=app.NoCutoff,
                                                               constraints=None)
    assert_target_is_hamiltonian(system, reference)


def test_peptide_target_is_ff14sb_obc2_without_constraints():
    system = load("peptide:AK")
    reference = app.ForceField(*IMPLICIT_PEPTIDE).createSystem(system.topology.to_openmm(),
                                                               nonbondedMethod=app.NoCutoff, constraints=None)
    assert_target_is_hamiltonian(system, reference)


@pytest.mark.parametrize("solvent", ["obc2", "vacuum"])
def test_smiles_target_is_its_prmtop_without_constraints(tmp_path, solvent):
    smiles = "CC(=O)Nc1ccccc1"
    system = from_smiles(smiles, solvent=solvent, cache_dir=tmp_path)
    prmtop = app.AmberPrmtopFile(str(parametrize(system.smiles or smiles, cache_dir=tmp_path).prmtop))
    reference = prmtop.createSystem(nonbondedMethod=app.NoCutoff, constraints=None,
                                    implicitSolvent=app.OBC2 if solvent == "obc2" else None)
    assert_target_is_hamiltonian(system, reference)
