"""Coupling paths of a rigid solute in water: exact end states for any weights, and TI and MBAR along a path from
MD at its windows."""

import numpy as np
import openmm
import pytest
import torch

from molsamp.errors import InputError
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


def coupling_at(path: SolvationPath, t: float) -> list[float]:
    with torch.no_grad():
        coupling = path.coupling(torch.tensor([t], dtype=torch.float64))
    return [float(coupling.lennard_jones), float(coupling.lj_softness), float(coupling.charge),
            float(coupling.coulomb_softness)]


def test_the_untrained_path_turns_on_lennard_jones_then_charges_linearly(methane):
    path = SolvationPath(methane[2]).double()
    assert coupling_at(path, 0.25) == pytest.approx([0.5, 0.5 * path.lj_softness, 0.0, path.coulomb_softness])
    assert coupling_at(path, 0.75) == pytest.approx([1.0, 0.0, 0.5, 0.5 * path.coulomb_softness])


def test_no_learned_schedule_charges_the_solute_before_its_lennard_jones_is_fully_on(methane):
    path = SolvationPath(methane[2], hidden=8).double()
    torch.nn.init.normal_(path.schedule[-1].weight, std=3.0)
    torch.nn.init.normal_(path.schedule[-1].bias, std=3.0)
    for t in np.linspace(0, 1, 41):
        lennard_jones, lj_softness, charge, _ = coupling_at(path, t)
        assert charge == 0 or (lennard_jones == 1 and lj_softness == 0)


def test_the_one_piece_path_scales_lennard_jones_and_charges_together(methane):
    path = SolvationPath(methane[2], charges_last=False).double()
    assert coupling_at(path, 0.25) == pytest.approx([0.25, 0.75 * path.lj_softness, 0.25,
                                                     0.75 * path.coulomb_softness])


def test_the_windows_quadrature_is_exact_for_a_cubic_on_each_piece():
    def integrand(t):
        return np.where(t < 0.5, 3 * t**3, 1 - t + (t - 0.5) ** 3)

    exact = 3 / 64 + (0.5 - 0.375) + 1 / 64
    times, weights = gauss_legendre_windows(4, pieces=2)
    assert times[0] == 0 and times[-1] == 1 and weights[0] == weights[-1] == 0
    assert weights @ integrand(times) == pytest.approx(exact, abs=1e-14)
    one_piece = gauss_legendre_windows(4)
    assert abs(one_piece[1] @ integrand(one_piece[0]) - exact) > 1e-4


def test_windows_that_do_not_split_over_the_pieces_are_an_input_error():
    with pytest.raises(InputError, match="do not split evenly"):
        gauss_legendre_windows(5, pieces=2)


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
    times, weights = gauss_legendre_windows(2, path.pieces)
    windows = sample_path_windows(path, times, 10, positions, interval=0.1, equilibration=0.2, seed=3)
    energies = [window_energies(path, window, times) for window in windows]
    result = path_free_energy(times, weights, [u for u, _ in energies], [dudt for _, dudt in energies])
    expected = (solvation._dispersion[1] - solvation._dispersion[0]) / solvation.kT  # the ghost's only trace
    assert result["ti_dF_kT"] == pytest.approx(expected, abs=1e-9)
    assert result["mbar_dF_kT"] == pytest.approx(expected, abs=1e-6)


@pytest.mark.slow
def test_ti_and_mbar_agree_along_the_path_for_methane(methane):
    _, positions, solvation = methane
    path = SolvationPath(solvation).double()
    times, weights = gauss_legendre_windows(4, path.pieces)
    windows = sample_path_windows(path, times, 40, positions, interval=0.2, equilibration=2.0, seed=1)
    assert [w.x.shape for w in windows] == [(40, solvation.n_atoms, 3)] * len(times)
    assert all(w.md_steps == 1000 + 40 * 100 for w in windows)
    energies = [window_energies(path, window, times) for window in windows]
    result = path_free_energy(times, weights, [u for u, _ in energies], [dudt for _, dudt in energies])
    combined = np.hypot(result["ti_err_kT"], result["mbar_err_kT"])
    assert abs(result["ti_dF_kT"] - result["mbar_dF_kT"]) < 3 * combined
    assert -5 < result["mbar_dF_kT"] < 12  # methane's hydration free energy is about 3.4 kT
