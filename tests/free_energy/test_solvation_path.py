"""Coupling paths of a rigid solute in water: exact end states for any weights, and TI and MBAR along a path from
MD at its windows."""

import numpy as np
import openmm
import pytest
import torch

from molsamp.free_energy.rigid_solvation import COUPLED, DECOUPLED, RigidSolvation
from molsamp.free_energy.solvation_path import (
    SolvationPath,
    gauss_legendre_windows,
    path_free_energy,
    sample_path_windows,
    window_energies,
)


@pytest.fixture(scope="module")
def methane(methane_in_water):
    system, positions, n_solute = methane_in_water
    return system, positions, RigidSolvation(system, positions, n_solute)


def test_the_path_ends_are_the_decoupled_and_coupled_energies_for_any_weights(methane):
    _, positions, solvation = methane
    path = SolvationPath(solvation, hidden=8).double()
    torch.nn.init.normal_(path.schedule[-1].weight, std=2.0)
    x = torch.tensor(positions)[None].repeat(2, 1, 1)
    x[1, :5] += 0.3
    for t, coupling in ((0.0, DECOUPLED), (1.0, COUPLED)):
        energy = path(x, torch.full((2,), t, dtype=torch.float64))
        assert torch.allclose(energy, solvation.energy(x, coupling), rtol=0, atol=1e-9)


def test_the_untrained_path_scales_lennard_jones_and_charges_linearly(methane):
    path = SolvationPath(methane[2]).double()
    with torch.no_grad():
        coupling = path.coupling(torch.tensor([0.25], dtype=torch.float64))
    assert float(coupling.lennard_jones) == pytest.approx(0.25) and float(coupling.charge) == pytest.approx(0.25)
    assert float(coupling.lj_softness) == pytest.approx(0.75 * path.lj_softness)


def ghost(system: openmm.System, n_solute: int) -> openmm.System:
    """The System with a solute that neither carries charges nor Lennard-Jones (but still counts in the dispersion
    correction)."""
    system = openmm.XmlSerializer.deserialize(openmm.XmlSerializer.serialize(system))
    force = next(f for f in system.getForces() if isinstance(f, openmm.NonbondedForce))
    for i in range(n_solute):
        _, sigma, _ = force.getParticleParameters(i)
        force.setParticleParameters(i, 0.0, sigma, 0.0)
    return system


def test_ti_and_mbar_of_a_ghost_solute_give_the_dispersion_constant_exactly(methane):
    system, positions, _ = methane
    solvation = RigidSolvation(ghost(system, 5), positions, 5)
    path = SolvationPath(solvation).double()
    times = gauss_legendre_windows(2)
    windows = sample_path_windows(path, times, 10, positions, interval=0.1, equilibration=0.2, seed=3)
    energies = [window_energies(path, window, times) for window in windows]
    result = path_free_energy(times, [u for u, _ in energies], [dudt for _, dudt in energies])
    expected = (solvation._dispersion[1] - solvation._dispersion[0]) / solvation.kT  # the ghost's only trace
    assert result["ti_dF_kT"] == pytest.approx(expected, abs=1e-9)
    assert result["mbar_dF_kT"] == pytest.approx(expected, abs=1e-6)


@pytest.mark.slow
def test_ti_and_mbar_agree_along_the_path_for_methane(methane):
    _, positions, solvation = methane
    path = SolvationPath(solvation).double()
    times = gauss_legendre_windows(4)
    windows = sample_path_windows(path, times, 40, positions, interval=0.2, equilibration=2.0, seed=1)
    assert [w.x.shape for w in windows] == [(40, solvation.n_atoms, 3)] * len(times)
    assert all(w.md_steps == 1000 + 40 * 100 for w in windows)
    energies = [window_energies(path, window, times) for window in windows]
    result = path_free_energy(times, [u for u, _ in energies], [dudt for _, dudt in energies])
    combined = np.hypot(result["ti_err_kT"], result["mbar_err_kT"])
    assert abs(result["ti_dF_kT"] - result["mbar_dF_kT"]) < 3 * combined
    assert -5 < result["mbar_dF_kT"] < 12  # methane's hydration free energy is about 3.4 kT
