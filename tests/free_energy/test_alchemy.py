"""Alchemical systems: lambda = 1 is the plain system, lambda = 0 has no solute-solvent interaction."""

import numpy as np
import openmm
import openmm.app as app
import pytest

from molsamp.errors import InputError
from molsamp.forcefields import parametrize, solvate
from molsamp.free_energy import LambdaSchedule, hydration_legs, set_lambdas
from molsamp.free_energy.legs import CUTOFF, HYDROGEN_MASS

PADDING = 1.0  # nm: the smallest box that holds the 0.9 nm cutoff around methanol


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    return tmp_path_factory.getbasetemp() / "molsamp-cache"


@pytest.fixture(scope="module")
def legs(cache):
    return hydration_legs("CO", forcefield="gaff", padding=PADDING, cache_dir=cache)


def energy(system, positions, box=None, lambdas=None):
    """Potential energy (kJ/mol) on the Reference platform, in the alchemical state ``lambdas`` if given."""
    context = openmm.Context(system, openmm.VerletIntegrator(0.001), openmm.Platform.getPlatformByName("Reference"))
    if box is not None:
        context.setPeriodicBoxVectors(*box)
    context.setPositions(positions)
    if lambdas is not None:
        set_lambdas(context, *lambdas)
    return context.getState(getEnergy=True).getPotentialEnergy().value_in_unit(openmm.unit.kilojoule_per_mole)


def test_solvent_leg_is_methanol_in_a_periodic_tip3p_box(legs):
    solvent, vacuum = legs
    assert solvent.solute_atoms == vacuum.solute_atoms == tuple(range(6))
    assert solvent.periodic and not vacuum.periodic
    n_water = (len(solvent.positions) - 6) / 3
    assert n_water == int(n_water) and n_water > 100
    assert np.allclose(solvent.box, solvent.box[0, 0] * np.eye(3))  # cubic
    assert solvent.box.diagonal().min() >= 2 * CUTOFF
    masses = [solvent.system().getParticleMass(i).value_in_unit(openmm.unit.amu) for i in range(6)]
    assert masses.count(pytest.approx(HYDROGEN_MASS)) == 4


@pytest.mark.parametrize("leg_index", [0, 1])
def test_coupled_state_is_the_plain_flexible_system(cache, legs, leg_index):
    """At full coupling a leg's energy is that of the plain force field with every bond kept (constraints=None,
    flexible water), on positions perturbed by 0.005 nm so that the bonds MD would constrain are stretched."""
    leg = legs[leg_index]
    parameters = parametrize("CO", forcefield="gaff", cache_dir=cache, charges="am1bcc")  # hydration_legs default
    if leg.periodic:
        prmtop = app.AmberPrmtopFile(str(solvate(parameters, PADDING)[0]))
        plain = prmtop.createSystem(nonbondedMethod=app.PME, nonbondedCutoff=CUTOFF, constraints=None,
                                    rigidWater=False)
    else:
        plain = app.AmberPrmtopFile(str(parameters.prmtop)).createSystem(nonbondedMethod=app.NoCutoff,
                                                                         constraints=None)
    x = leg.positions + 0.005 * np.random.default_rng(0).standard_normal(leg.positions.shape)
    # In water the alchemical factory splits the Ewald sum (solute and solvent parts apart), which moves the energy
    # by about 0.03 kJ/mol at OpenMM's default PME accuracy (5e-4): far below a missing bond term here (hundreds).
    tolerance = {"atol": 0.1, "rtol": 0.0} if leg.periodic else {"rtol": 1e-6}
    np.testing.assert_allclose(energy(leg.system(), x, leg.box, (1.0, 1.0)), energy(plain, x, leg.box), **tolerance)


def test_decoupled_solute_does_not_feel_the_water(legs):
    solvent, _ = legs
    moved = solvent.positions.copy()
    moved[:6] += np.array([0.31, -0.17, 0.22])  # rigid shift of the solute into other water
    system = solvent.system()
    coupled = energy(system, moved, solvent.box, (1.0, 1.0)) - energy(system, solvent.positions, solvent.box, (1.0, 1.0))
    decoupled = energy(system, moved, solvent.box, (0.0, 0.0)) - energy(system, solvent.positions, solvent.box,
                                                                       (0.0, 0.0))
    assert abs(coupled) > 10.0  # kJ/mol: coupled, the move is felt
    assert abs(decoupled) < 1e-3


def test_decoupled_solvent_leg_is_water_plus_the_decoupled_solute(legs):
    solvent, vacuum = legs
    system = solvent.system()
    full = energy(system, solvent.positions, solvent.box, (0.0, 0.0))
    solute_only = energy(vacuum.system(), solvent.positions[:6], None, (0.0, 0.0))
    far = solvent.positions.copy()
    far[:6] += 5 * solvent.box.diagonal() / 2 + 0.01  # any position: the solute is invisible
    np.testing.assert_allclose(energy(system, far, solvent.box, (0.0, 0.0)), full, atol=1e-3)
    assert np.isfinite(solute_only)


def test_default_schedule_turns_charges_off_before_sterics():
    schedule = LambdaSchedule()
    assert len(schedule) == 17
    assert schedule.to_dict()["lambda_electrostatics"][:5] == [1.0, 0.75, 0.5, 0.25, 0.0]
    assert all(s == 1.0 for e, s in zip(schedule.electrostatics, schedule.sterics) if e > 0)


@pytest.mark.parametrize("electrostatics, sterics, message", [
    ((1.0, 0.0), (1.0,), "as many"),
    ((1.0, 0.5), (1.0, 0.0), "decoupled state"),
    ((1.0, 0.5, 0.0), (1.0, 0.5, 0.0), "charges must be off"),
    ((1.0, 1.5, 0.0), (1.0, 1.0, 0.0), r"\[0, 1\]"),
])
def test_bad_schedules_are_refused(electrostatics, sterics, message):
    with pytest.raises(InputError, match=message):
        LambdaSchedule(electrostatics, sterics)
