"""Crystal flows on systems: the toy with a known free energy is reproduced before and after reverse-KL training;
ice's chart, target and checkpoints; clear errors for the wrong system or temperature."""

import math

import numpy as np
import pytest
import torch

from molsamp.errors import InputError
from molsamp.flows.crystal import CrystalFlow, LatticeChart
from molsamp.flows.crystals import (crystal_md_states, crystal_target, harmonic_covariance, initial_flow, is_crystal,
                                    lattice_chart, load_crystal_flow, load_md_ladder, save_crystal_flow,
                                    train_crystal_flow)
from molsamp.flows.generator import importance_samples
from molsamp.flows.rigid_bodies import HarmonicWells
from molsamp.systems import load


def toy(molecules=4, stiffness=400.0, concentration=50.0):
    generator = torch.Generator().manual_seed(0)
    q = torch.randn(molecules, 4, generator=generator, dtype=torch.float64)
    sites = torch.rand(molecules, 3, generator=generator, dtype=torch.float64)
    return HarmonicWells(sites, q / q.norm(dim=-1, keepdim=True), torch.tensor([1.0, 0.9, 1.1]), stiffness,
                         concentration)


def harmonic_flow(wells, position_scale=1.0, **options):
    """A flow around the wells' minima whose prior is their harmonic approximation (widened for positions)."""
    chart = LatticeChart(wells.sites, wells.orientations, wells.box, translation_invariant=False)
    n_positions = 3 * chart.n_displaced
    variances = torch.cat([torch.full((n_positions,), position_scale**2 / wells.stiffness),
                           torch.full((chart.dim - n_positions,), 2 / wells.concentration)]).double()
    return CrystalFlow(chart, torch.zeros(chart.dim), torch.diag(variances), **options)


def test_the_toy_free_energy_is_reproduced_by_importance_sampling():
    wells = toy()
    flow = harmonic_flow(wells, position_scale=1.3, layers=0)
    with torch.no_grad():
        draws = importance_samples(flow, wells, 20_000, torch.Generator().manual_seed(1), progress=False)
    error = draws.info["log_Z_error"]
    assert 0 < error < 0.05
    assert draws.info["log_Z"] == pytest.approx(wells.log_partition_function(), abs=4 * error)


def test_reverse_kl_training_raises_the_ess_and_keeps_the_free_energy_exact():
    wells = toy()
    flow = harmonic_flow(wells, position_scale=1.6, layers=2, hidden=32)
    generator = torch.Generator().manual_seed(2)
    with torch.no_grad():
        before = importance_samples(flow, wells, 4000, generator, progress=False)
    records = []
    train_crystal_flow(flow, wells, steps=300, batch_size=128, learning_rate=3e-3, final_learning_rate=3e-4,
                       progress=False, log=records.append, log_every=100)
    assert [r["step"] for r in records] == [100, 200, 300] and records[-1]["dropped"] == 0
    with torch.no_grad():
        after = importance_samples(flow, wells, 4000, generator, progress=False)
    assert after.info["ess_percent"] > before.info["ess_percent"] + 10
    assert after.info["log_Z"] == pytest.approx(wells.log_partition_function(), abs=4 * after.info["log_Z_error"])


def test_the_harmonic_covariance_of_the_wells_is_their_inverse_hessian():
    wells = toy(stiffness=4000.0, concentration=500.0)
    chart = LatticeChart(wells.sites, wells.orientations, wells.box, translation_invariant=False)
    covariance = harmonic_covariance(wells, chart, step=1e-4)

    def negative_log_density(y):
        state, log_jacobian = chart.state(y[None])
        return (wells.energy(state) - log_jacobian)[0]

    minimum = torch.full((chart.dim,), 1e-5, dtype=torch.float64)  # y = 0 by symmetry; autograd is exact off it
    hessian = torch.autograd.functional.hessian(negative_log_density, minimum)
    torch.testing.assert_close(covariance, torch.linalg.inv(hessian), rtol=1e-5, atol=1e-9)
    positions = 3 * chart.n_displaced  # to leading order kT / k per position, 2 kT / kappa per rotation vector
    torch.testing.assert_close(torch.diagonal(covariance)[:positions],
                               torch.full((positions,), 1 / wells.stiffness, dtype=torch.float64), rtol=0.01, atol=0)
    torch.testing.assert_close(torch.diagonal(covariance)[positions:],
                               torch.full((chart.dim - positions,), 2 / wells.concentration, dtype=torch.float64),
                               rtol=0.01, atol=0)


def test_ice_chart_target_and_checkpoint(tmp_path):
    ice = load("ice-xi-16")
    assert is_crystal(ice) and not is_crystal(load("ala2"))
    chart = lattice_chart(ice)
    assert chart.n_molecules == 16 and chart.translation_invariant and chart.dim == 3 * 15 + 3 * 16
    lattice = torch.cat([chart.sites, chart.orientations], -1)[None]
    states = crystal_md_states(ice, 100.0, picoseconds=2.0, every=0.1, equilibration=1.0)
    assert states.shape == (20, 16, 7)
    with crystal_target(ice, n_workers=0, platform="Reference") as target, \
            crystal_target(ice, temperature=50.0, n_workers=0, platform="Reference") as cold:
        u_lattice = float(target.energy(lattice)[0])
        assert float(cold.energy(lattice)[0]) == pytest.approx(2 * u_lattice)
        assert bool((target.energy(states) > u_lattice).all())  # the minimised crystal is the lowest
    flow = initial_flow(ice, states, 100.0, layers=2, hidden=16)
    path = save_crystal_flow(flow, tmp_path / "ice.pt", ice, 100.0, command="test")
    loaded = load_crystal_flow(path, ice, 100.0)
    with torch.no_grad():
        torch.testing.assert_close(loaded.log_prob(states), flow.log_prob(states))
        assert math.isfinite(float(loaded.log_prob(states).sum()))
    fast = initial_flow(ice, states, 100.0, "md", layers=2, hidden=16, conditioner="attention",
                        float32_conditioner=True)
    fast_loaded = load_crystal_flow(save_crystal_flow(fast, tmp_path / "fast.pt", ice, 100.0), ice)
    assert fast_loaded.config["float32_conditioner"] and fast_loaded.mean.dtype == torch.float64
    assert {p.dtype for c in fast_loaded.couplings for p in c.net.parameters()} == {torch.float32}
    with pytest.raises(InputError, match="not 50"):
        load_crystal_flow(path, ice, 50.0)
    with pytest.raises(InputError, match="not for 'ice-xi-128'"):
        load_crystal_flow(path, load("ice-xi-128"))
    with pytest.raises(InputError, match="not a periodic crystal"):
        lattice_chart(load("ala2"))
    with pytest.raises(InputError, match="unknown crystal prior"):
        initial_flow(ice, states, 100.0, "quasi-harmonic")


def test_an_md_ladder_reads_runs_of_each_temperature(tmp_path):
    state = np.zeros((3, 2, 7), np.float32)
    state[..., 3] = 1.0001  # float32-rounded quaternions come back unit
    for temperature, seed, frames in ((100.0, 1, 5), (100.0, 2, 5), (250.0, 1, 4)):
        extra = {"state": state} if temperature == 100.0 else {}
        np.savez(tmp_path / f"{temperature:.2f}K-seed{seed}.npz", temperature=temperature, seed=seed,
                 energies=np.arange(frames, dtype=float), **extra)
    ladder = load_md_ladder(tmp_path)
    assert ladder.temperatures.tolist() == [250.0, 100.0]
    assert [e.shape for e in ladder.energies] == [(1, 4), (2, 5)]
    assert ladder.states_at(100).shape == (6, 2, 7)
    assert torch.allclose(ladder.states_at(100)[..., 3], torch.ones(6, 2, dtype=torch.float64))
    with pytest.raises(InputError, match="no states at 250 K"):
        ladder.states_at(250)
    np.savez(tmp_path / "100.00K-seed3.npz", temperature=100.0, seed=3, energies=np.zeros(7))
    with pytest.raises(InputError, match="different lengths"):
        load_md_ladder(tmp_path)
    with pytest.raises(InputError, match="no MD runs"):
        load_md_ladder(tmp_path / "ladder")


@pytest.mark.parametrize("name, temperature", [("ice-xi-16", 50.0), ("ice-xi-16", 100.0), ("ice-xi-16", 250.0),
                                               ("ice-xi-128", 100.0), ("ice-xi-128", 250.0)])
def test_the_shipped_ice_flows_load_and_give_their_samples_their_log_q(name, temperature):
    from molsamp.flows.crystals import default_crystal_model

    ice = load(name)
    flow = load_crystal_flow(default_crystal_model(ice, temperature), ice, temperature)
    with torch.no_grad():
        states, log_q = flow.sample_and_log_prob(8, torch.Generator().manual_seed(0))
        torch.testing.assert_close(flow.log_prob(states), log_q, atol=1e-6, rtol=0)
