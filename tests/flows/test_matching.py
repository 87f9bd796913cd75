"""Equivariant flow matching: alignment over the symmetries, pairing, and a flow that learns DW4."""

import pytest
import torch

from molsamp.flows import EquivariantFlow
from molsamp.flows.matching import align, pair, random_symmetry, train_flow_matching
from molsamp.flows.references import mcmc_samples
from molsamp.targets import DoubleWell


def pairwise_distances(x):
    return torch.sort(torch.cdist(x, x).flatten(1), 1).values


def test_alignment_keeps_shapes_and_brings_a_rotated_relabelled_copy_closer():
    x = torch.randn(64, 5, 3, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    x = x - x.mean(1, keepdim=True)
    moved = random_symmetry(x, torch.Generator().manual_seed(1))
    torch.testing.assert_close(pairwise_distances(moved), pairwise_distances(x))  # shapes unchanged
    aligned = align(moved, x)
    torch.testing.assert_close(pairwise_distances(aligned), pairwise_distances(x))
    before, after = ((moved - x) ** 2).sum((1, 2)), ((aligned - x) ** 2).sum((1, 2))
    assert (after <= before + 1e-9).all() and after.mean() < 0.2 * before.mean()
    assert (after < 1e-12).double().mean() > 0.9  # copies are found exactly (a local search: not guaranteed)


def test_with_atom_types_particles_are_only_exchanged_within_a_type():
    types = [0, 1, 0, 2, 1, 0]
    x = torch.randn(64, 6, 3, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    x = x - x.mean(1, keepdim=True)
    moved = random_symmetry(x, torch.Generator().manual_seed(4), types)
    radii, moved_radii = x.norm(dim=2), moved.norm(dim=2)  # rotations keep each particle's distance from the centre
    for kind in set(types):
        members = [i for i, t in enumerate(types) if t == kind]
        torch.testing.assert_close(torch.sort(moved_radii[:, members], 1).values,
                                   torch.sort(radii[:, members], 1).values)
    assert not torch.allclose(moved_radii, radii)  # some particles did move within their type
    aligned = align(moved, x, types=types)
    assert (((aligned - x) ** 2).sum((1, 2)) < 1e-12).double().mean() > 0.9
    paired = pair(moved, x, types=types)
    assert ((paired - x) ** 2).sum() < ((moved - x) ** 2).sum()


def test_pairing_reorders_and_aligns_without_changing_shapes():
    generator = torch.Generator().manual_seed(2)
    x0 = torch.randn(16, 4, 2, generator=generator, dtype=torch.float64)
    x0 = x0 - x0.mean(1, keepdim=True)
    x1 = torch.randn(16, 4, 2, generator=generator, dtype=torch.float64)
    paired = pair(x0, x1)
    shapes = torch.sort(pairwise_distances(paired), 0).values
    torch.testing.assert_close(shapes, torch.sort(pairwise_distances(x0), 0).values)  # the same prior draws
    assert ((paired - x1) ** 2).sum() < ((x0 - x1) ** 2).sum()  # shorter paths


def test_mcmc_references_reproduce_a_two_particle_well():
    """Two particles on a line, u = d^2 - ... : the separation's density is known in closed form."""
    from molsamp.testing import assert_samples_match

    target = DoubleWell(n_particles=2, dim=1, b=-1.0, c=0.25, d0=1.0)
    samples = mcmc_samples(target, n_chains=2000, n_samples=5, burn_in=500, thin=20, step=0.5, seed=1)
    assert samples.info["js_halves"] < 0.01
    separation = samples.x[:, 0, 0] - samples.x[:, 1, 0]

    def log_density(s):
        r = s.abs() - 1.0
        return -(-1.0 * r**2 + 0.25 * r**4)

    assert_samples_match(separation, log_density, torch.linspace(-4, 4, 41).numpy(), max_js=0.01)


def test_flow_matching_lowers_the_loss_on_dw4():
    data = mcmc_samples(DoubleWell(), n_chains=200, n_samples=5, burn_in=1000, step=0.3, start_scale=2.0).x
    torch.manual_seed(0)
    flow = EquivariantFlow(4, 2, hidden=16, layers=2, prior_scale=2.0).double()
    losses = train_flow_matching(flow, data, steps=150, batch_size=32, learning_rate=3e-3, progress=False)
    assert sum(losses[-30:]) / 30 < 0.85 * sum(losses[:30]) / 30


@pytest.mark.slow
def test_a_trained_dw4_flow_reweights_to_the_target():
    """Exact weights -u - log q make the flow's samples match MCMC in energy; ESS well above a few percent."""
    from molsamp.analysis import kish_ess

    target = DoubleWell()
    reference = mcmc_samples(target, n_chains=1000, n_samples=10, step=0.3, start_scale=2.0)
    torch.manual_seed(0)
    flow = EquivariantFlow(4, 2, hidden=32, layers=3, prior_scale=2.0).double()
    train_flow_matching(flow, reference.x, steps=1000, batch_size=128, learning_rate=2e-3, progress=False)
    with torch.no_grad():
        x, log_q = flow.sample_and_log_prob(1000, torch.Generator().manual_seed(1))
    u = target.energy(x)
    log_w = -u - log_q
    assert kish_ess(log_w) > 200
    weights = torch.softmax(log_w, 0)
    assert abs(float((weights * u).sum()) - float(reference.u.mean())) < 0.5
