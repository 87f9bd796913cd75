"""Crystal flows: the chart around a lattice, the Haar measure in rotation vectors, exact and normalised densities,
the same density at q and -q, log-determinants equal to autograd's."""

import math

import pytest
import torch

from molsamp.errors import InputError
from molsamp.flows.crystal import (CrystalFlow, LatticeChart, log_haar_density, quaternion_to_rotation_vector,
                                   rotation_vector_to_quaternion)


def unit_quaternions(n, generator):
    q = torch.randn(n, 4, generator=generator, dtype=torch.float64)
    return q / q.norm(dim=-1, keepdim=True)


def random_flow(molecules, translation_invariant, position_scale, angle_scale, bound, seed=0, coupling_scale=0.3,
                conditioner="mlp", float32_conditioner=False, split="molecules"):
    """A flow with random couplings (not the identity; their weights of standard deviation ``coupling_scale``) and a
    random correlated prior."""
    generator = torch.Generator().manual_seed(seed)
    chart = LatticeChart(torch.rand(molecules, 3, generator=generator, dtype=torch.float64),
                         unit_quaternions(molecules, generator), torch.tensor([1.0, 1.2, 0.9]), translation_invariant)
    n_positions = 3 * chart.n_displaced
    scales = torch.cat([torch.full((n_positions,), position_scale), torch.full((chart.dim - n_positions,),
                                                                               angle_scale)]).double()
    mixing = torch.eye(chart.dim, dtype=torch.float64) + 0.2 * torch.randn(chart.dim, chart.dim, generator=generator,
                                                                           dtype=torch.float64) / chart.dim**0.5
    covariance = scales[:, None] * (mixing @ mixing.T) * scales[None, :] / 2
    flow = CrystalFlow(chart, 0.1 * scales * torch.randn(chart.dim, generator=generator, dtype=torch.float64),
                       covariance, layers=4, hidden=16, bins=4, bound=bound, conditioner=conditioner,
                       float32_conditioner=float32_conditioner, split=split)
    with torch.no_grad():
        for parameter in flow.parameters():
            parameter.normal_(std=coupling_scale, generator=generator)
    return flow


def test_rotation_vectors_and_quaternions_round_trip_with_q_and_minus_q_alike():
    generator = torch.Generator().manual_seed(1)
    q = unit_quaternions(500, generator)
    omega = quaternion_to_rotation_vector(q)
    assert float(omega.norm(dim=-1).max()) <= math.pi
    torch.testing.assert_close(quaternion_to_rotation_vector(-q), omega)
    torch.testing.assert_close(rotation_vector_to_quaternion(omega), torch.where(q[:, :1] < 0, -q, q))
    small = torch.tensor([[1e-12, 0.0, 0.0]], dtype=torch.float64)
    torch.testing.assert_close(quaternion_to_rotation_vector(rotation_vector_to_quaternion(small)), small)


def test_haar_measure_in_rotation_vectors_has_the_euler_volume_and_is_what_uniform_rotations_follow():
    angle = torch.linspace(0, math.pi, 20001, dtype=torch.float64)
    shell = 4 * math.pi * angle**2 * torch.exp(log_haar_density(torch.stack([angle, 0 * angle, 0 * angle], -1)))
    assert float(torch.trapezoid(shell, angle)) == pytest.approx(8 * math.pi**2, rel=1e-8)
    # uniform rotations (uniform unit quaternions) have angles with density (1 - cos theta) / pi
    angles = quaternion_to_rotation_vector(unit_quaternions(200_000, torch.Generator().manual_seed(2))).norm(dim=-1)
    assert float((angles < math.pi / 2).double().mean()) == pytest.approx(0.5 - 1 / math.pi, abs=0.004)


@pytest.mark.parametrize("conditioner,float32_conditioner,split", [
    ("mlp", False, "molecules"), ("attention", False, "molecules"), ("attention", True, "molecules"),
    ("attention", False, "coordinates")])
@pytest.mark.parametrize("translation_invariant", [False, True])
def test_log_q_of_a_sample_is_its_log_prob_and_the_same_at_minus_q(translation_invariant, conditioner,
                                                                   float32_conditioner, split):
    # random attention weights of standard deviation 0.3 over tokens that hold given and moved coordinates make splines
    # so steep that float64 round-off in the chart grows to about 1e-4 in log q; at 0.1 they are still far from the
    # identity (each coupling alone is exact to 1e-11 either way: the log-determinant test)
    flow = random_flow(3, translation_invariant, 0.01, 0.05, bound=6.0, conditioner=conditioner,
                       float32_conditioner=float32_conditioner, split=split,
                       coupling_scale=0.1 if split == "coordinates" else 0.3)
    with torch.no_grad():
        states, log_q = flow.sample_and_log_prob(500, torch.Generator().manual_seed(3))
        torch.testing.assert_close(flow.log_prob(states), log_q, atol=1e-5, rtol=0)
        flipped = states.clone()
        flipped[:, 1, 3:] *= -1
        torch.testing.assert_close(flow.log_prob(flipped), log_q, atol=1e-5, rtol=0)
        if translation_invariant:  # a global shift of a sample has the same density
            shifted = states.clone()
            shifted[..., :3] += torch.tensor([0.3, 0.7, -0.2], dtype=torch.float64)
            torch.testing.assert_close(flow.log_prob(shifted), log_q, atol=1e-5, rtol=0)
    quaternions = states[..., 3:]
    torch.testing.assert_close(quaternions.norm(dim=-1), torch.ones(500, 3, dtype=torch.float64))


@pytest.mark.parametrize("conditioner,float32_conditioner,split", [
    ("mlp", False, "molecules"), ("attention", False, "molecules"), ("mlp", True, "molecules"),
    ("attention", False, "coordinates")])
def test_couplings_log_determinants_equal_autograds(conditioner, float32_conditioner, split):
    flow = random_flow(3, True, 0.01, 0.05, bound=6.0, conditioner=conditioner,
                       float32_conditioner=float32_conditioner, split=split)
    z = torch.randn(4, flow.chart.dim, generator=torch.Generator().manual_seed(4), dtype=torch.float64)
    for coupling in flow.couplings:
        _, log_det = coupling(z)
        for row in range(len(z)):  # one row at a time: a float32 net's rounding depends on the batch it is in
            jacobian = torch.autograd.functional.jacobian(lambda v: coupling(v[None])[0][0], z[row])
            log_det_row = float(coupling(z[row:row + 1])[1][0].detach())
            assert log_det_row == pytest.approx(float(torch.linalg.slogdet(jacobian)[1]), abs=1e-9)
            assert log_det_row == pytest.approx(float(log_det[row].detach()), abs=1e-5)
        back, inverse_log_det = coupling.inverse(coupling(z)[0])
        torch.testing.assert_close(back, z)
        torch.testing.assert_close(inverse_log_det, -log_det)


def test_a_float32_conditioner_stays_float32_through_casts_and_the_flow_stays_float64():
    flow = random_flow(3, True, 0.01, 0.05, bound=6.0, conditioner="attention", float32_conditioner=True).double()
    assert {p.dtype for c in flow.couplings for p in c.net.parameters()} == {torch.float32}
    assert flow.mean.dtype == torch.float64
    with torch.no_grad():
        states, log_q = flow.sample_and_log_prob(10, torch.Generator().manual_seed(3))
    assert states.dtype == log_q.dtype == torch.float64


@pytest.mark.parametrize("translation_invariant", [False, True])
def test_density_integrates_to_one_over_positions_and_orientations(translation_invariant):
    # one molecule: its position relative to a site (or, translation-invariant, uniform over the box) and its
    # orientation; importance sampling from uniform orientations and wrapped normal (or uniform) positions, whose
    # densities are written here independently of the chart
    flow = random_flow(1, translation_invariant, 0.08, 0.8, bound=1.9, seed=5, coupling_scale=0.1)
    generator = torch.Generator().manual_seed(6)
    n, box, spread = 400_000, flow.chart.box, 0.08
    if translation_invariant:
        positions = torch.rand(n, 1, 3, generator=generator, dtype=torch.float64) * box
        log_p = -torch.log(box).sum().expand(n)
    else:
        centre = flow.chart.sites[0] + flow.mean[:3]
        offsets = spread * torch.randn(n, 1, 3, generator=generator, dtype=torch.float64)
        positions = centre + offsets
        images = torch.arange(-2, 3, dtype=torch.float64)[:, None] * box  # [5, 3]
        folded = offsets - box * torch.round(offsets / box)
        log_normal = -0.5 * ((folded[:, 0, None, :] + images) / spread) ** 2 - math.log(spread * (2 * math.pi) ** 0.5)
        log_p = torch.logsumexp(log_normal, 1).sum(-1)
    orientations = unit_quaternions(n, generator)[:, None, :]
    log_p = log_p - math.log(8 * math.pi**2)
    with torch.no_grad():
        ratio = torch.exp(flow.log_prob(torch.cat([positions, orientations], -1)) - log_p)
    estimate, error = float(ratio.mean()), float(ratio.std()) / n**0.5
    assert error < 0.03
    assert estimate == pytest.approx(1.0, abs=4 * error)


def test_chart_is_a_bijection_of_all_local_coordinates():
    flow = random_flow(3, True, 0.01, 0.05, bound=5.0)
    y = 0.4 * torch.randn(200, flow.chart.dim, generator=torch.Generator().manual_seed(7), dtype=torch.float64)
    states, log_jacobian = flow.chart.state(y, shift=torch.zeros(200, 3, dtype=torch.float64))
    back, back_log_jacobian = flow.chart.local(states)
    torch.testing.assert_close(back, y)
    torch.testing.assert_close(back_log_jacobian, log_jacobian)


def test_a_covariance_that_is_not_positive_definite_is_a_clear_error():
    chart = LatticeChart(torch.zeros(1, 3), torch.tensor([[1.0, 0, 0, 0]]), torch.ones(3), False)
    with pytest.raises(InputError, match="positive definite"):
        CrystalFlow(chart, torch.zeros(6), torch.zeros(6, 6))
    with pytest.raises(InputError, match="6 local coordinates"):
        CrystalFlow(chart, torch.zeros(5), torch.eye(5))


def test_the_attention_conditioner_moves_whole_molecules_and_does_not_grow_with_the_crystal():
    small, large = (random_flow(m, True, 0.01, 0.05, bound=6.0, conditioner="attention") for m in (4, 32))
    sizes = [sum(p.numel() for name, p in flow.named_parameters() if "molecule_embedding" not in name)
             for flow in (small, large)]
    assert sizes[0] == sizes[1]
    attention = large.couplings[0].net  # each molecule's coordinates move together, half of the molecules per coupling
    moving_molecules = set((attention.wanted // 6).tolist())
    assert moving_molecules.isdisjoint((attention.given // 6).tolist()) and len(moving_molecules) == 16
    with pytest.raises(InputError, match="unknown conditioner"):
        random_flow(2, True, 0.01, 0.05, bound=6.0, conditioner="transformer")


def test_attention_couplings_split_by_coordinates_condition_a_molecule_on_its_own_coordinates():
    flow = random_flow(32, True, 0.01, 0.05, bound=6.0, conditioner="attention", split="coordinates")
    attention = flow.couplings[0].net
    assert len(attention.wanted) == flow.chart.dim - flow.chart.dim // 2
    assert set((attention.wanted // 6).tolist()) & set((attention.given // 6).tolist())  # molecules on both sides
    with pytest.raises(InputError, match="unknown split"):
        random_flow(2, True, 0.01, 0.05, bound=6.0, conditioner="attention", split="atoms")


def test_a_supercell_has_its_cells_translations_and_the_prior_uses_them():
    # a cell of 2 molecules doubled along x: the translation by one cell swaps the copies
    cell = torch.tensor([[0.1, 0.2, 0.3], [0.4, 0.5, 0.1]], dtype=torch.float64)
    q = unit_quaternions(2, torch.Generator().manual_seed(8))
    chart = LatticeChart(torch.cat([cell, cell + torch.tensor([0.6, 0.0, 0.0])]), torch.cat([q, q]),
                         torch.tensor([1.2, 0.7, 0.8]))
    assert chart.translations().tolist() == [[0, 1, 2, 3], [2, 3, 0, 1]]
    states, _ = chart.state(0.05 * torch.randn(3, chart.dim, generator=torch.Generator().manual_seed(9),
                                               dtype=torch.float64))
    symmetric = CrystalFlow.fit(chart, states, layers=0)
    both = CrystalFlow.fit(chart, torch.cat([states, states[:, [2, 3, 0, 1]]]), layers=0, symmetric=False)
    torch.testing.assert_close(symmetric.mean, both.mean)
    torch.testing.assert_close(symmetric.cholesky, both.cholesky)


def test_the_prior_mixes_the_md_covariance_with_the_harmonic_one():
    chart = LatticeChart(torch.tensor([[0.1, 0.2, 0.3], [0.4, 0.5, 0.1]]),
                         unit_quaternions(2, torch.Generator().manual_seed(3)), torch.tensor([1.2, 0.7, 0.8]))
    states, _ = chart.state(0.05 * torch.randn(50, chart.dim, generator=torch.Generator().manual_seed(4),
                                               dtype=torch.float64))
    md = CrystalFlow.fit(chart, states, layers=0, shrinkage=0.0)
    harmonic = 0.01 * torch.eye(chart.dim, dtype=torch.float64)
    for weight in (0.0, 0.5, 1.0):
        mixed = CrystalFlow.fit(chart, states, layers=0, harmonic=harmonic, harmonic_weight=weight)
        torch.testing.assert_close(mixed.mean, md.mean)
        torch.testing.assert_close(mixed.cholesky @ mixed.cholesky.T,
                                   (1 - weight) * md.cholesky @ md.cholesky.T + weight * harmonic)
    with pytest.raises(InputError, match="harmonic_weight"):
        CrystalFlow.fit(chart, states, layers=0, harmonic=harmonic, harmonic_weight=1.5)
