"""The Boltzmann generator around the flow: importance weights and SMC refinement against a Gaussian-to-Gaussian
case with a known answer, dropped rows counted, checkpoints checked against their system."""

import math

import pytest
import torch

from molsamp.errors import InputError
from molsamp.flows import EquivariantFlow
from molsamp.flows.diagnostics import reweighted_mean
from molsamp.flows.generator import (
    default_model,
    importance_samples,
    load_flow,
    refine_smc,
    save_flow,
    train_flow,
)
from molsamp.samples import Samples
from molsamp.systems import load
from molsamp.targets import EnergyFunction

SCALE = 1.2  # the flow: a centred Gaussian of this standard deviation
DOF = (3 - 1) * 3  # 3 particles in 3 dimensions, centred


def gaussian_flow():
    """A flow over 3 particles in 3D whose field is zero: q is its centred N(0, 1.2^2) prior."""
    flow = EquivariantFlow(3, 3, hidden=8, layers=1, prior_scale=SCALE).double()
    with torch.no_grad():
        for parameter in flow.field.parameters():
            parameter.zero_()
    return flow


def standard_normal_energy(x):
    """u = |x - mean x|^2 / 2, translation invariant like a physical energy: exp(-u) integrates to (2 pi)^(DOF / 2)
    over the centred configurations."""
    return 0.5 * ((x - x.mean(1, keepdim=True)) ** 2).sum((1, 2))


TARGET = EnergyFunction(standard_normal_energy, event_shape=(3, 3))
LOG_Z = 0.5 * DOF * math.log(2 * math.pi)


def test_importance_weights_of_a_gaussian_flow_give_the_known_ess_mean_and_normalising_constant():
    samples = importance_samples(gaussian_flow(), TARGET, 4000, torch.Generator().manual_seed(0), batch_size=2000)
    # Kish ESS fraction: 1 / E_q[(p/q)^2] = (s^2 / sqrt(2 s^2 - 1))^-DOF for q = N(0, s^2), p = N(0, 1) per dimension.
    expected_fraction = (SCALE**2 / math.sqrt(2 * SCALE**2 - 1)) ** -DOF
    assert samples.info["ess_percent"] == pytest.approx(100 * expected_fraction, abs=2.0)
    squared = (samples.x**2).sum((1, 2))
    assert float(reweighted_mean(squared, samples.log_weights)) == pytest.approx(DOF, abs=0.1)
    assert float(squared.mean()) == pytest.approx(DOF * SCALE**2, abs=0.15)  # unweighted: the flow's own
    assert samples.info["log_Z"] == pytest.approx(LOG_Z, abs=0.02)
    assert samples.info["dropped"] == 0 and samples.info["energy_evaluations"] == 4000


def test_nan_energies_in_a_batch_are_dropped_and_counted():
    def energy_with_holes(x):
        u = standard_normal_energy(x)
        return torch.where(x[:, 0, 0] > 0.8, torch.nan, u)

    target = EnergyFunction(energy_with_holes, event_shape=(3, 3))
    samples = importance_samples(gaussian_flow(), target, 400, torch.Generator().manual_seed(1), batch_size=100)
    assert 0 < samples.info["dropped"] < 400 and len(samples) == 400 - samples.info["dropped"]
    assert torch.isfinite(samples.u).all() and torch.isfinite(samples.log_weights).all()
    assert samples.ess() > 0


def test_smc_refinement_of_a_gaussian_flow_reaches_the_target():
    generator = torch.Generator().manual_seed(2)
    flow = gaussian_flow()
    draws = importance_samples(flow, TARGET, 2000, generator, batch_size=1000)
    refined = refine_smc(flow, TARGET, draws, n_betas=4, n_steps=3, solver_steps=2, batch_size=1000,
                         generator=generator)
    assert refined.x.mean(1).abs().max() < 1e-12  # the moves stay within the centred configurations
    squared = (refined.x**2).sum((1, 2))
    assert float(reweighted_mean(squared, refined.log_weights)) == pytest.approx(DOF, abs=0.3)
    assert refined.info["log_Z"] == pytest.approx(LOG_Z, abs=0.05)
    assert 0.1 < refined.info["acceptance"] < 0.9 and refined.info["distinct"] > 500
    # the draws, one energy per proposal, and one per particle and beta
    assert refined.info["energy_evaluations"] == 2000 + 2000 * 4 * 3 + 2000 * 4


def reference_data(n, seed=0):
    """Centred Gaussian stand-ins for DW4 training data (the training code does not look at the energies' form)."""
    x = torch.randn(n, 4, 2, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    x = x - x.mean(1, keepdim=True)
    return Samples.unweighted(x, 0.5 * (x**2).sum((1, 2)))


def test_training_drops_and_counts_rows_with_nan_and_still_learns():
    data = reference_data(64)
    data.x[3, 1, 0] = math.nan
    data.u[10] = math.nan
    records = []
    flow = train_flow(load("dw4"), data, steps=3, batch_size=16, hidden=8, layers=1, progress=False,
                      log=records.append)
    assert {"data": 64, "dropped": 2} in records
    assert all(torch.isfinite(p).all() for p in flow.parameters())


def test_a_checkpoint_for_another_system_is_a_clear_error(tmp_path):
    dw4 = load("dw4")
    flow = train_flow(dw4, reference_data(32), steps=1, batch_size=16, hidden=8, layers=1, progress=False)
    path = save_flow(flow, tmp_path / "dw4-flow.pt", dw4)
    assert load_flow(path, dw4).event_shape == (4, 2)
    with pytest.raises(InputError, match="a flow for 'dw4'.*not for 'lj13'"):
        load_flow(path, load("lj13"))


def test_the_shipped_dw4_flow_loads_with_its_card():
    dw4 = load("dw4")
    flow = load_flow(default_model(dw4), dw4)
    card = flow.metadata
    assert flow.event_shape == (4, 2) and next(flow.parameters()).dtype == torch.float64
    assert card["data"]["samples"] > 0 and card["data"]["js_halves"] < 0.01
    assert card["training_seconds"] > 0 and card["command"].startswith("molsamp train flow dw4")
    assert 0 < card["ess_percent"] <= 100


def test_without_a_shipped_flow_the_error_says_how_to_train_one():
    lj55 = load("lj55")  # no flow ships for it yet
    with pytest.raises(InputError, match="molsamp train flow lj55"):
        load_flow(default_model(lj55), lj55)
