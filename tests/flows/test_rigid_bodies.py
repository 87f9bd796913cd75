"""Rigid bodies: quaternions to rotations and back, atoms from bodies and back, the geometry kept exactly, clear
errors for non-unit quaternions."""

import numpy as np
import openmm
import openmm.app as app
import pytest
import torch

from molsamp.errors import InputError
from molsamp.flows.rigid_bodies import (RigidBodies, RigidBodyTarget, matrix_to_quaternion, quaternion_to_matrix,
                                        water_body)
from molsamp.systems import SYSTEMS_DIR, load
from molsamp.targets import OpenMMTarget

WATER = torch.tensor([[0.0, 0.0, 0.0], [0.09572, 0.0, 0.0], [-0.02399, 0.09267, 0.0]], dtype=torch.float64)
"""O, H, H of rigid water (nm): 0.09572 nm bonds at 104.52 degrees, the oxygen as the reference point."""


def unit_quaternions(shape, seed=0):
    q = torch.randn(*shape, 4, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    return q / q.norm(dim=-1, keepdim=True)


def test_quaternions_give_rotations_the_same_for_q_and_minus_q():
    q = unit_quaternions((100,))
    rotation = quaternion_to_matrix(q)
    identity = torch.eye(3, dtype=torch.float64).expand(100, 3, 3)
    torch.testing.assert_close(rotation @ rotation.transpose(1, 2), identity)
    torch.testing.assert_close(torch.linalg.det(rotation), torch.ones(100, dtype=torch.float64))
    torch.testing.assert_close(quaternion_to_matrix(-q), rotation)


def test_rotations_give_back_their_quaternions_up_to_sign():
    q = unit_quaternions((200,), seed=1)
    back = matrix_to_quaternion(quaternion_to_matrix(q))
    torch.testing.assert_close(back, torch.where(q[:, :1] < 0, -q, q))
    half_turn = torch.diag(torch.tensor([1.0, -1.0, -1.0], dtype=torch.float64))  # trace -1: w = 0
    torch.testing.assert_close(quaternion_to_matrix(matrix_to_quaternion(half_turn)), half_turn)


def test_atoms_from_bodies_keep_the_geometry_and_give_back_their_bodies():
    rigid = RigidBodies(WATER)
    centres = torch.randn(8, 16, 3, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    q = unit_quaternions((8, 16), seed=3)
    x = rigid.atoms(centres, q)
    assert x.shape == (8, 48, 3)
    molecules = x.reshape(8, 16, 3, 3)
    torch.testing.assert_close(torch.cdist(molecules, molecules), torch.cdist(WATER, WATER).expand(8, 16, 3, 3))
    back_centres, back_q = rigid.bodies(x)
    torch.testing.assert_close(back_centres, centres)
    torch.testing.assert_close(back_q, torch.where(q[..., :1] < 0, -q, q))
    torch.testing.assert_close(rigid.atoms(centres, -q), x)


def test_a_mirror_image_is_fitted_by_a_proper_rotation():
    rigid = RigidBodies(WATER)
    mirror = -rigid.atoms(torch.zeros(1, 1, 3, dtype=torch.float64), unit_quaternions((1, 1), seed=4))
    _, q = rigid.bodies(mirror)
    assert float(torch.linalg.det(quaternion_to_matrix(q))) == pytest.approx(1.0)


def test_non_unit_quaternions_and_broken_molecules_are_clear_errors():
    rigid = RigidBodies(WATER)
    with pytest.raises(InputError, match="norm 1"):
        rigid.atoms(torch.zeros(1, 1, 3, dtype=torch.float64), torch.tensor([[[1.0, 0.1, 0.0, 0.0]]]))
    with pytest.raises(InputError, match="whole molecules"):
        rigid.bodies(torch.zeros(1, 4, 3))
    with pytest.raises(InputError, match="at least 3 atoms"):
        RigidBodies(WATER[:2])


def test_water_body_is_the_geometry_md_keeps_with_openmms_virtual_site():
    ice = load("ice-xi-16")
    body = water_body(ice.openmm_system)
    torch.testing.assert_close(body[1:3].norm(dim=-1), torch.full((2,), 0.09572, dtype=torch.float64))
    angle = torch.arccos(torch.dot(body[1], body[2]) / 0.09572**2)
    assert float(angle) == pytest.approx(np.radians(104.52), abs=1e-6)
    x = RigidBodies(body).atoms(torch.tensor([[[0.1, 0.2, 0.3]]], dtype=torch.float64), unit_quaternions((1, 1)))[0]
    context = openmm.Context(ice.openmm_system, openmm.VerletIntegrator(0.001),
                             openmm.Platform.getPlatformByName("Reference"))
    context.setPositions(np.concatenate([x.numpy(), np.zeros((60, 3))]))
    context.computeVirtualSites()
    site = context.getState(getPositions=True).getPositions(asNumpy=True).value_in_unit(openmm.unit.nanometer)[3]
    np.testing.assert_allclose(site, x[3].numpy(), atol=1e-12)


def test_ice_energy_of_rigid_bodies_equals_an_independent_openmm_evaluation():
    ice = load("ice-xi-16")
    rigid = RigidBodies(water_body(ice.openmm_system))
    centres, q = rigid.bodies(torch.as_tensor(ice.positions)[None])
    # independent: every term of flexible TIP4P/Ew (bonds and angles are zero at the rigid geometry)
    pdb = app.PDBFile(str(SYSTEMS_DIR / "ice-xi-16.pdb"))
    pdb.topology.setPeriodicBoxVectors(ice.box * openmm.unit.nanometer)
    cutoff = 0.73358 / 2 - 1e-5
    flexible = app.ForceField("tip4pew.xml").createSystem(
        pdb.topology, nonbondedMethod=app.PME, nonbondedCutoff=cutoff, switchDistance=0.9 * cutoff,
        ewaldErrorTolerance=1e-4, rigidWater=False)
    context = openmm.Context(flexible, openmm.VerletIntegrator(0.001), openmm.Platform.getPlatformByName("Reference"))
    context.setPositions(rigid.atoms(centres, q)[0].numpy())
    expected = context.getState(getEnergy=True).getPotentialEnergy().value_in_unit(openmm.unit.kilojoule_per_mole)
    with ice.target(n_workers=0, platform="Reference") as atoms:
        target = RigidBodyTarget(atoms, rigid)
        assert target.event_shape == (16, 7)
        state = torch.cat([centres, q], -1)
        energy = float(target.energy(state)[0])
        assert energy == pytest.approx(expected / atoms.kT, abs=1e-8)
        assert energy * atoms.kT / 16 == pytest.approx(-62, abs=3)  # kJ/mol per molecule: ice's lattice energy
        shifted = state.clone()
        shifted[..., :3] += torch.tensor([0.3, -0.2, 0.5], dtype=torch.float64)  # periodic: a global shift is free,
        assert float(target.energy(shifted)[0]) == pytest.approx(energy, abs=1e-4)  # up to PME's grid error


def test_rigid_body_gradients_are_the_energys_derivatives_through_the_virtual_sites():
    # PME's real-space cutoff makes the ice energy jump by ~0.01 kT where a pair crosses it, too rough for finite
    # differences: the same 16 TIP4P/Ew waters without a cutoff are smooth
    pdb = app.PDBFile(str(SYSTEMS_DIR / "ice-xi-16.pdb"))
    cluster = app.ForceField("tip4pew.xml").createSystem(pdb.topology, nonbondedMethod=app.NoCutoff)
    rigid = RigidBodies(water_body(cluster))
    centres, q = rigid.bodies(torch.as_tensor(pdb.getPositions(asNumpy=True)._value)[None])
    state = torch.cat([centres, q], -1)
    with OpenMMTarget(cluster, 100.0, n_workers=0, platform="Reference") as atoms:
        target = RigidBodyTarget(atoms, rigid)
        direction = torch.randn(state.shape, generator=torch.Generator().manual_seed(5), dtype=torch.float64)
        direction[..., 3:] -= (direction[..., 3:] * q).sum(-1, keepdim=True) * q  # tangent to the unit sphere
        variable = state.clone().requires_grad_(True)
        (gradient,) = torch.autograd.grad(target.energy(variable).sum(), variable)

        def along(t):
            moved = state + t * direction
            moved[..., 3:] /= moved[..., 3:].norm(dim=-1, keepdim=True)
            return float(target.energy(moved)[0])
        step = 1e-6
        numeric = (along(step) - along(-step)) / (2 * step)
        assert float((gradient * direction).sum()) == pytest.approx(numeric, rel=1e-5)
        with pytest.raises(InputError, match="expected"):
            target.energy(state[:, :8])


def test_water_body_needs_rigid_water():
    pdb = app.PDBFile(str(SYSTEMS_DIR / "ice-xi-16.pdb"))
    flexible = app.ForceField("tip4pew.xml").createSystem(pdb.topology, rigidWater=False)
    with pytest.raises(InputError, match="rigid water"):
        water_body(flexible)
