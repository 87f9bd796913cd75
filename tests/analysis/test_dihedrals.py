import math

import mdtraj as md
import numpy as np
import pytest
import torch

from molsamp.analysis import backbone_dihedral_indices, compute_dihedrals, fold_torsions
from molsamp.errors import InputError

# Alanine dipeptide (ACE-ALA-NME) in the atom order of the usual 22-atom PDB files.
RESIDUES = {
    "ACE": [("HH31", "H"), ("CH3", "C"), ("HH32", "H"), ("HH33", "H"), ("C", "C"), ("O", "O")],
    "ALA": [("N", "N"), ("H", "H"), ("CA", "C"), ("HA", "H"), ("CB", "C"), ("HB1", "H"), ("HB2", "H"),
            ("HB3", "H"), ("C", "C"), ("O", "O")],
    "NME": [("N", "N"), ("H", "H"), ("CH3", "C"), ("HH31", "H"), ("HH32", "H"), ("HH33", "H")],
}


def alanine_dipeptide_topology() -> md.Topology:
    topology = md.Topology()
    chain = topology.add_chain()
    for name, atoms in RESIDUES.items():
        residue = topology.add_residue(name, chain)
        for atom, element in atoms:
            topology.add_atom(atom, md.element.get_by_symbol(element), residue)
    return topology


def angle_difference(a, b):
    """Smallest signed difference of two angles, so that pi and -pi agree."""
    return np.remainder(np.asarray(a) - np.asarray(b) + np.pi, 2 * np.pi) - np.pi


def test_matches_mdtraj_on_random_quadruples():
    rng = np.random.default_rng(0)
    xyz = rng.uniform(0.0, 1.5, size=(50, 12, 3)).astype(np.float32)
    indices = np.stack([rng.choice(12, size=4, replace=False) for _ in range(30)])

    ours = compute_dihedrals(xyz, indices)
    theirs = md.compute_dihedrals(md.Trajectory(xyz, None), indices)

    assert ours.shape == (50, 30) and ours.dtype == torch.float64
    assert np.abs(angle_difference(ours.numpy(), theirs)).max() < 1e-5
    assert ours.abs().max() <= math.pi


def test_phi_psi_of_alanine_dipeptide_match_mdtraj():
    topology = alanine_dipeptide_topology()
    indices = backbone_dihedral_indices(topology)
    np.testing.assert_array_equal(indices["phi"], [[4, 6, 8, 14]])
    np.testing.assert_array_equal(indices["psi"], [[6, 8, 14, 16]])

    xyz = np.random.default_rng(1).normal(scale=0.3, size=(20, 22, 3)).astype(np.float32)
    trajectory = md.Trajectory(xyz, topology)
    for name, compute in [("phi", md.compute_phi), ("psi", md.compute_psi)]:
        _, theirs = compute(trajectory)
        ours = compute_dihedrals(torch.from_numpy(xyz), indices[name])
        assert ours.dtype == torch.float32  # floating tensors keep their dtype
        assert np.abs(angle_difference(ours.numpy(), theirs)).max() < 1e-5


def test_sign_convention_on_a_known_geometry():
    # Looking down the 1->2 bond, atom 3 is rotated +90 degrees from atom 0.
    x = torch.tensor([[[1.0, 0, 0], [0, 0, 0], [0, 0, 1], [0, 1, 1]]], dtype=torch.float64)
    assert compute_dihedrals(x, [[0, 1, 2, 3]]).item() == pytest.approx(math.pi / 2)
    mirrored = x * torch.tensor([1.0, -1.0, 1.0], dtype=torch.float64)
    assert compute_dihedrals(mirrored, [[0, 1, 2, 3]]).item() == pytest.approx(-math.pi / 2)


def test_gradients_pass_gradcheck():
    x = torch.randn(3, 6, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(2), requires_grad=True)
    indices = [[0, 1, 2, 3], [5, 4, 3, 2], [1, 3, 0, 5]]
    assert torch.autograd.gradcheck(lambda x: compute_dihedrals(x, indices), (x,))


def test_topology_without_backbone_gives_empty_indices():
    topology = md.Topology()
    residue = topology.add_residue("HOH", topology.add_chain())
    for name, element in [("O", "O"), ("H1", "H"), ("H2", "H")]:
        topology.add_atom(name, md.element.get_by_symbol(element), residue)
    indices = backbone_dihedral_indices(topology)
    assert indices["phi"].shape == (0, 4) and indices["psi"].shape == (0, 4)
    assert compute_dihedrals(np.zeros((2, 3, 3)), indices["phi"]).shape == (2, 0)


@pytest.mark.parametrize(
    ("x", "indices", "message"),
    [
        (np.zeros((4, 3)), [[0, 1, 2, 3]], "expected \\(B, N, 3\\)"),
        (np.zeros((1, 4, 3)), [[0, 1, 2]], "expected \\(M, 4\\)"),
        (np.zeros((1, 4, 3)), [[0, 1, 2, 4]], "must lie in \\[0, 4\\)"),
    ],
)
def test_bad_input_names_the_problem(x, indices, message):
    with pytest.raises(InputError, match=message):
        compute_dihedrals(x, indices)


def test_folding_maps_symmetry_turns_together_and_fills_the_circle():
    theta = np.random.default_rng(0).uniform(-math.pi, math.pi, (1000, 3))
    symmetry = np.array([1, 2, 3])
    folded = fold_torsions(theta, symmetry)
    np.testing.assert_allclose(folded[:, 0], theta[:, 0], atol=1e-12)  # symmetry 1: unchanged
    turned = theta + 2 * math.pi / symmetry
    np.testing.assert_allclose(np.cos(fold_torsions(turned, symmetry) - folded), 1.0, atol=1e-9)
    assert folded.min() < -3.0 and folded.max() > 3.0  # one period stretched over the whole circle
    with pytest.raises(InputError, match="symmetry numbers"):
        fold_torsions(theta, [1, 2])
