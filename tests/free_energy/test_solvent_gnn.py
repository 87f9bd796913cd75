"""The learned correction of neural TI's interpolating potential: a function of the configuration that respects
the system's symmetries and only sees pairs within its cutoffs."""

import pytest
import torch

from molsamp.free_energy.lj_solute import LennardJonesSolute
from molsamp.free_energy.solvent_gnn import SolventMessagePassing

SYSTEM = LennardJonesSolute(n_solvent=40)


@pytest.fixture(scope="module")
def network():
    torch.manual_seed(0)
    return SolventMessagePassing(SYSTEM.box, cutoff=1.2, solute_cutoff=1.6, scalars=8, vectors=4,
                                 hidden=(16,)).double()


@pytest.fixture(scope="module")
def x():
    generator = torch.Generator().manual_seed(0)
    return torch.rand(3, SYSTEM.n_atoms, 3, generator=generator, dtype=torch.float64) * SYSTEM.box


def test_output_is_one_number_per_configuration_and_depends_on_time_and_positions(network, x):
    t = torch.tensor([0.2, 0.5, 0.9], dtype=torch.float64)
    u = network(x, t)
    assert u.shape == (3,) and bool(torch.isfinite(u).all())
    assert not torch.allclose(u, network(x, 1 - t))
    moved = x.clone()
    moved[:, 1] += 0.3
    assert not torch.allclose(u, network(moved, t))


def test_invariant_to_translation_solvent_permutation_and_rotation_by_the_box_symmetry(network, x):
    t = torch.full((3,), 0.4, dtype=torch.float64)
    u = network(x, t)
    shifted = (x + torch.tensor([1.1, -2.3, 0.7], dtype=torch.float64)).remainder(SYSTEM.box)
    torch.testing.assert_close(network(shifted, t), u)
    order = torch.cat([torch.zeros(1, dtype=torch.long), 1 + torch.randperm(SYSTEM.n_solvent)])
    torch.testing.assert_close(network(x[:, order], t), u)
    quarter_turn = x[..., [1, 0, 2]] * torch.tensor([-1.0, 1.0, 1.0], dtype=torch.float64)
    torch.testing.assert_close(network(quarter_turn.remainder(SYSTEM.box), t), u)


def test_edges_are_the_pairs_within_the_cutoffs(network, x):
    _, senders, receivers, displacement = network.graph(x)
    d = x[:, :, None] - x[:, None]
    r = (d - SYSTEM.box * torch.round(d / SYSTEM.box)).norm(dim=-1)
    n = SYSTEM.n_atoms
    cutoff = torch.full((n, n), 1.2, dtype=torch.float64)
    cutoff[0, :] = cutoff[:, 0] = 1.6
    expected = (r < cutoff) & ~torch.eye(n, dtype=torch.bool)
    assert len(senders) == int(expected.sum())
    b, i, j = senders // n, senders % n, receivers % n
    assert bool(expected[b, i, j].all()) and bool((receivers // n == b).all())
    assert float((displacement**2).sum(-1).max()) < 1
