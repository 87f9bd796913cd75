"""Rigid bodies: quaternions to rotations and back, atoms from bodies and back, the geometry kept exactly, clear
errors for non-unit quaternions."""

import pytest
import torch

from molsamp.errors import InputError
from molsamp.flows.rigid_bodies import RigidBodies, matrix_to_quaternion, quaternion_to_matrix

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
