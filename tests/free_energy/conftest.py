"""Shared fixtures of the free-energy tests."""

import pytest

METHANE_BOX = 1.5
"""nm: the edge of the small water box of the rigid-solvation tests."""


@pytest.fixture(scope="session")
def methane_in_water():
    """Methane among rigid TIP3P waters in a cube of :data:`METHANE_BOX` nm as OpenMM fills it (no MD at 1 bar: the
    tests need a Hamiltonian, not a density): the OpenMM System, positions (nm) and the solute's atom count."""
    from molsamp.free_energy.rigid_solvation import rigid_solvation_system

    return rigid_solvation_system("C", box=METHANE_BOX, pressure_equilibration=0)
