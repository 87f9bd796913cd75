"""A rigid solute in rigid water in torch: its energy is the OpenMM System's at the coupled end and the water box's
plus the solute's own in vacuum at the decoupled end; the path between is smooth where atoms overlap."""

import numpy as np
import openmm
import pytest
import torch

from molsamp.errors import InputError
from molsamp.free_energy.rigid_solvation import (
    COUPLED,
    DECOUPLED,
    Coupling,
    RigidSolvation,
    dispersion_correction,
    end_state_samples,
    rigid_solvation_system,
)

BOX = 1.5


@pytest.fixture(scope="module")
def methane(methane_in_water):
    system, positions, n_solute = methane_in_water
    return system, positions, n_solute, RigidSolvation(system, positions, n_solute, tolerance=1e-7)


def openmm_energy(system: openmm.System, positions: np.ndarray) -> float:
    """kJ/mol, from OpenMM's reference platform with PME at tolerance 1e-7 (independent of the torch Ewald sum)."""
    system = openmm.XmlSerializer.deserialize(openmm.XmlSerializer.serialize(system))
    for force in system.getForces():
        if isinstance(force, openmm.NonbondedForce):
            force.setEwaldErrorTolerance(1e-7)
    context = openmm.Context(system, openmm.VerletIntegrator(1e-3), openmm.Platform.getPlatformByName("Reference"))
    context.setPositions(positions)
    return context.getState(getEnergy=True).getPotentialEnergy().value_in_unit(openmm.unit.kilojoule_per_mole)


def water_only(system: openmm.System, n_solute: int) -> openmm.System:
    """The System's waters alone (same box, cutoff, Ewald and dispersion settings)."""
    force = next(f for f in system.getForces() if isinstance(f, openmm.NonbondedForce))
    water = openmm.System()
    water.setDefaultPeriodicBoxVectors(*system.getDefaultPeriodicBoxVectors())
    nonbonded = openmm.NonbondedForce()
    nonbonded.setNonbondedMethod(force.getNonbondedMethod())
    nonbonded.setCutoffDistance(force.getCutoffDistance())
    nonbonded.setUseDispersionCorrection(force.getUseDispersionCorrection())
    for i in range(n_solute, system.getNumParticles()):
        water.addParticle(system.getParticleMass(i))
        nonbonded.addParticle(*force.getParticleParameters(i))
    for index in range(force.getNumExceptions()):
        i, j, *parameters = force.getExceptionParameters(index)
        if i >= n_solute:
            nonbonded.addException(i - n_solute, j - n_solute, *parameters)
    water.addForce(nonbonded)
    return water


def vacuum_energy(smiles: str, positions: np.ndarray) -> float:
    from openmm import app

    from molsamp.forcefields import parametrize

    prmtop = app.AmberPrmtopFile(str(parametrize(smiles).prmtop))
    return openmm_energy(prmtop.createSystem(nonbondedMethod=app.NoCutoff), positions)


def test_the_coupled_energy_is_the_openmm_systems_energy(methane):
    system, positions, _, solvation = methane
    moved = positions.copy()
    moved[:5] += [0.31, -0.2, 0.45]  # anywhere in the box, across its faces too
    for x in (positions, moved):
        energy = float(solvation.energy(torch.tensor(x)[None], COUPLED)) * solvation.kT
        assert energy == pytest.approx(openmm_energy(system, x), abs=5e-3)


def test_the_decoupled_energy_is_the_water_box_plus_the_solute_in_vacuum(methane):
    system, positions, n_solute, solvation = methane
    expected = openmm_energy(water_only(system, n_solute), positions[n_solute:]) + \
        vacuum_energy("C", positions[:n_solute])
    energy = float(solvation.energy(torch.tensor(positions)[None], DECOUPLED)) * solvation.kT
    assert energy == pytest.approx(expected, abs=5e-3)


def test_a_decoupled_solute_does_not_feel_where_it_is(methane):
    _, positions, n_solute, solvation = methane
    x = torch.tensor(positions)[None].repeat(2, 1, 1)
    x[1, :n_solute] += torch.tensor([0.5, 0.1, -0.7], dtype=torch.float64)
    energy = solvation.energy(x, DECOUPLED)
    assert float(energy[0]) == pytest.approx(float(energy[1]), abs=1e-9)


def test_soft_cores_keep_energies_and_forces_finite_where_the_solute_overlaps_a_water(methane):
    _, positions, n_solute, solvation = methane
    x = torch.tensor(positions)[None].clone()
    oxygen = n_solute
    x[0, :n_solute] += x[0, oxygen + 1] - x[0, 0]  # the solute's carbon onto a water hydrogen
    x.requires_grad_(True)
    hard = solvation.energy(x, Coupling(lennard_jones=0.5, charge=0.5))
    soft = solvation.energy(x, Coupling(lennard_jones=0.5, lj_softness=0.5, charge=0.5, coulomb_softness=0.01))
    (gradient,) = torch.autograd.grad(soft.sum(), x)
    assert float(hard.detach()) < -1e6  # the carbon's charge collapsed onto the hydrogen's
    assert abs(float(soft.detach())) < 1e5 and bool(torch.isfinite(gradient).all())


def test_the_coupling_scales_lennard_jones_linearly_and_charges_quadratically(methane):
    _, positions, _, solvation = methane
    x = torch.tensor(positions)[None]

    def energy(lennard_jones, charge):
        return float(solvation.energy(x, Coupling(lennard_jones=lennard_jones, charge=charge)))

    assert energy(0.5, 0) == pytest.approx((energy(0, 0) + energy(1, 0)) / 2, abs=1e-9)
    linear = (energy(0, 1) - energy(0, -1)) / 2  # solute-water Coulomb
    quadratic = (energy(0, 1) + energy(0, -1)) / 2 - energy(0, 0)  # the solute's charges with their images
    assert energy(0, 0.5) == pytest.approx(energy(0, 0) + linear / 2 + quadratic / 4, abs=1e-9)
    assert abs(linear) > 1e-3


def test_the_dispersion_correction_of_one_kind_of_particle():
    sigma, epsilon, cutoff, volume, n = 0.3, 0.5, 0.9, 8.0, 10
    expected = 8 * np.pi * n**2 / volume * epsilon * (sigma**12 / (9 * cutoff**9) - sigma**6 / (3 * cutoff**3))
    assert dispersion_correction(np.full(n, sigma), np.full(n, epsilon), cutoff, volume) == pytest.approx(expected)


def test_a_pair_of_atoms_in_one_molecule_that_is_no_exception_is_a_clear_error(methane):
    system, positions, n_solute, _ = methane
    broken = openmm.XmlSerializer.deserialize(openmm.XmlSerializer.serialize(system))
    force = next(f for f in broken.getForces() if isinstance(f, openmm.NonbondedForce))
    copy = openmm.NonbondedForce()
    for setter, getter in (("setNonbondedMethod", "getNonbondedMethod"), ("setCutoffDistance", "getCutoffDistance")):
        getattr(copy, setter)(getattr(force, getter)())
    for i in range(force.getNumParticles()):
        copy.addParticle(*force.getParticleParameters(i))
    for index in range(1, force.getNumExceptions()):  # the first exception left out
        copy.addException(*force.getExceptionParameters(index))
    broken.removeForce([type(f) for f in broken.getForces()].index(openmm.NonbondedForce))
    broken.addForce(copy)
    with pytest.raises(InputError, match="three bonds"):
        RigidSolvation(broken, positions, n_solute)


def test_a_charged_solute_is_a_clear_error():
    with pytest.raises(InputError, match="charged"):
        rigid_solvation_system("C[NH3+]", box=BOX)


def shuffled_waters(x: torch.Tensor, n_solute: int, generator: torch.Generator) -> torch.Tensor:
    n_water = (x.shape[1] - n_solute) // 3
    order = torch.randperm(n_water, generator=generator)
    waters = x[:, n_solute:].reshape(len(x), n_water, 3, 3)[:, order].flatten(1, 2)
    return torch.cat([x[:, :n_solute], waters], 1)


def test_a_copy_with_its_waters_relabelled_and_moved_pairs_with_itself(methane):
    _, positions, n_solute, solvation = methane
    x = torch.tensor(positions)[None]
    labels = torch.arange(x.shape[1], dtype=torch.float64)[None, :, None].expand(1, -1, 3)  # in place of gradients
    copy = shuffled_waters(x, n_solute, torch.Generator().manual_seed(1)) + torch.tensor([0.7, -0.4, 1.1])
    copy_labels = shuffled_waters(labels, n_solute, torch.Generator().manual_seed(1))
    x0, _, x1, labels1 = solvation.align(x, labels, copy, copy_labels)
    assert torch.allclose(x1, x0, atol=1e-9) and torch.equal(labels1, labels)
    assert torch.allclose(x0[0, 0], torch.zeros(3, dtype=torch.float64))
    assert torch.allclose(solvation.energy(x1), solvation.energy(x), atol=1e-8)


def test_interpolation_keeps_molecules_rigid_and_reaches_both_ends(methane):
    _, positions, n_solute, solvation = methane
    generator = torch.Generator().manual_seed(2)
    centres, quaternions = solvation.rigid_bodies(torch.tensor(positions)[None])
    x0 = solvation.positions(centres, quaternions)  # exactly rigid (the water box's file rounds positions)
    turned = torch.randn(quaternions.shape, generator=generator, dtype=torch.float64)
    x1 = solvation.positions(centres + 0.3 * torch.rand(centres.shape, generator=generator, dtype=torch.float64),
                             turned / turned.norm(dim=-1, keepdim=True))
    ends = solvation.interpolate(x0.expand(2, -1, -1), x1.expand(2, -1, -1), torch.tensor([0.0, 1.0]))
    for end, expected in zip(ends, (x0[0], x1[0])):
        offset = end - expected  # the same positions, some atoms maybe in another periodic image
        assert torch.allclose(offset, BOX * torch.round(offset / BOX), atol=1e-9)
    middle = solvation.interpolate(x0, x1, torch.tensor([0.5]))
    waters = middle[:, n_solute:].reshape(-1, 3, 3)
    body = solvation.water_body.body
    assert torch.allclose(torch.cdist(waters, waters), torch.cdist(body, body).expand(len(waters), -1, -1),
                          atol=1e-9)


def test_slerp_halves_a_rotation_and_takes_the_shorter_way():
    from molsamp.flows.rigid_bodies import quaternion_to_matrix
    from molsamp.free_energy.rigid_solvation import slerp

    angle = torch.tensor(2.0, dtype=torch.float64)
    identity = torch.tensor([1.0, 0, 0, 0], dtype=torch.float64)
    about_z = torch.stack([torch.cos(angle / 2), torch.tensor(0.0), torch.tensor(0.0), torch.sin(angle / 2)])
    for end in (about_z, -about_z):  # the same rotation
        half = quaternion_to_matrix(slerp(identity, end, torch.tensor([0.5], dtype=torch.float64)))
        assert float(half[0, 0]) == pytest.approx(np.cos(1.0)) and float(half[1, 0]) == pytest.approx(np.sin(1.0))


@pytest.fixture(scope="module")
def coupled_frames(methane):
    system, positions, n_solute, _ = methane
    return end_state_samples(system, positions, n_solute, coupled=True, n_frames=3, interval=0.2, equilibration=1,
                             seed=1)


def test_md_of_the_end_states_keeps_every_molecule_rigid_and_counts_its_steps(methane, coupled_frames):
    system, positions, n_solute, solvation = methane
    decoupled = end_state_samples(system, positions, n_solute, coupled=False, n_frames=3, interval=0.2,
                                  equilibration=1, seed=1)
    for samples in (coupled_frames, decoupled):
        assert samples.x.shape == (3, solvation.n_atoms, 3) and samples.md_steps == 500 + 3 * 100
        x = torch.tensor(samples.x)
        rigid = solvation.positions(*solvation.rigid_bodies(x))  # the best rigid fit
        offset = rigid - x
        assert torch.allclose(offset, BOX * torch.round(offset / BOX), atol=1e-5)
    spread = decoupled.x[:, 0].std(0)  # the decoupled solute is placed anywhere in the box
    assert (spread > 0.05).all()


@pytest.mark.parametrize("coupling", [COUPLED, DECOUPLED, Coupling(0.6, 0.3, 0.4, 0.01),
                                      Coupling(0.2, 0.7, 0.0, 0.05)])
def test_the_openmm_system_at_a_coupling_has_the_energy_less_a_constant(methane, coupled_frames, coupling):
    _, _, _, solvation = methane
    context = openmm.Context(solvation.openmm_system(coupling), openmm.VerletIntegrator(1e-3),
                             openmm.Platform.getPlatformByName("Reference"))
    differences = []
    for x in coupled_frames.x:
        context.setPositions(x)
        expected = context.getState(getEnergy=True).getPotentialEnergy().value_in_unit(openmm.unit.kilojoule_per_mole)
        differences.append(float(solvation.energy(torch.tensor(x)[None], coupling)) * solvation.kT - expected)
    assert np.ptp(differences) < 2e-3  # kJ/mol; the constant is the dispersion correction
    assert np.mean(differences) < -1.0


def test_the_water_is_brought_to_the_density_of_one_bar_and_stays_rigid():
    filled = rigid_solvation_system("C", box=BOX, pressure_equilibration=0)
    system, positions, n_solute = rigid_solvation_system("C", box=BOX, pressure_equilibration=4.0)
    edge = system.getDefaultPeriodicBoxVectors()[0][0].value_in_unit(openmm.unit.nanometer)
    assert len(positions) == len(filled[1]) and edge < 0.99 * BOX  # OpenMM's filled box is too dilute
    solvation = RigidSolvation(system, positions, n_solute)
    x = torch.tensor(positions)[None]
    offset = solvation.positions(*solvation.rigid_bodies(x)) - x
    assert torch.allclose(offset, edge * torch.round(offset / edge), atol=1e-5)
