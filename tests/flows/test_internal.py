"""A flow in internal coordinates: the Z-matrix of alanine dipeptide and its exact Jacobian, log-densities that are
those of the samples and ignore rigid motions, importance sampling that recovers a known normalising constant, and
a flow trained, saved and sampled like the equivariant one."""

import math
from pathlib import Path

import numpy as np
import pytest
import torch

from molsamp.errors import InputError
from molsamp.flows.diagnostics import held_out_nll
from molsamp.flows.generator import (
    flow_target,
    importance_samples,
    load_flow,
    mirror_fold,
    refine_smc,
    save_flow,
    train_flow,
)
from molsamp.flows.internal import InternalCoordinateFlow, ZMatrix, standardisation, train_internal_flow
from molsamp.samples import Samples
from molsamp.systems import load

REPOSITORY = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def ala2():
    return load("ala2-vacuum", constraints=None)


@pytest.fixture(scope="module")
def frames() -> torch.Tensor:
    """1,000 frames (nm) of the project's reference MD of alanine dipeptide in vacuum."""
    return torch.as_tensor(np.load(REPOSITORY / "data" / "flows" / "ala2-vacuum.npz")["x"], dtype=torch.float64)


def random_rotation(generator: torch.Generator) -> torch.Tensor:
    q, _ = torch.linalg.qr(torch.randn(3, 3, generator=generator, dtype=torch.float64))
    return q * torch.sign(torch.det(q))


def test_internal_coordinates_give_back_the_configuration_up_to_a_rigid_motion(ala2, frames):
    zmatrix = ZMatrix.from_topology(ala2.topology)
    assert zmatrix.n_features == 3 * 22 - 6
    rebuilt = zmatrix.to_cartesian(*zmatrix.to_internal(frames[:20]))
    distances = lambda x: torch.cdist(x, x)  # noqa: E731
    assert torch.allclose(distances(rebuilt), distances(frames[:20]), atol=1e-12)
    # the same handedness, not the mirror image (which has the same distances)
    assert torch.allclose(torch.stack(zmatrix.to_internal(rebuilt)[2:]), torch.stack(zmatrix.to_internal(
        frames[:20])[2:]), atol=1e-10)


def test_the_jacobian_is_that_of_internal_coordinates_and_rigid_motions_together(ala2, frames):
    zmatrix = ZMatrix.from_topology(ala2.topology)
    bonds, angles, torsions = zmatrix.to_internal(frames[:1])
    n = zmatrix.n_atoms

    def cartesian(parameters: torch.Tensor) -> torch.Tensor:
        shift, axis = parameters[:3], parameters[3:6]
        b, a, t = parameters[6:n + 5], parameters[n + 5:2 * n + 3], parameters[2 * n + 3:]
        generator = torch.zeros(3, 3, dtype=parameters.dtype)
        generator[0, 1], generator[0, 2], generator[1, 2] = -axis[2], axis[1], -axis[0]
        rotation = torch.linalg.matrix_exp(generator - generator.T)
        return (zmatrix.to_cartesian(b[None], a[None], t[None])[0] @ rotation.T + shift).flatten()

    at = torch.cat([torch.zeros(6, dtype=torch.float64), bonds[0], angles[0], torsions[0]])
    jacobian = torch.autograd.functional.jacobian(cartesian, at)
    assert torch.linalg.slogdet(jacobian)[1].item() == pytest.approx(zmatrix.log_jacobian(bonds, angles).item(),
                                                                    abs=1e-9)


def test_a_sample_has_the_log_density_of_the_flow_whatever_its_position_and_orientation(ala2, frames):
    zmatrix = ZMatrix.from_topology(ala2.topology)
    flow = InternalCoordinateFlow(zmatrix, *standardisation(zmatrix, frames), layers=4, hidden=32).double()
    generator = torch.Generator().manual_seed(0)
    for coupling in flow.couplings:  # away from the identity
        torch.nn.init.normal_(coupling.net[-1].weight, std=0.1, generator=generator)
    x, log_q = flow.sample_and_log_prob(50, generator)
    moved = x @ random_rotation(generator).T + torch.tensor([0.3, -1.0, 2.0], dtype=torch.float64)
    assert torch.allclose(flow.log_prob(x), log_q, atol=1e-8)
    assert torch.allclose(flow.log_prob(moved), log_q, atol=1e-8)


class NormalInInternalCoordinates:
    """u = sum of ((log b - m) / s)^2 / 2 over bonds and ((logit(angle / pi) - m) / s)^2 / 2 over angles, torsions
    free: close to an untrained flow's density (which also has the Jacobian of those maps). Its normalising constant
    over configurations modulo rigid motions is a product of 1-D integrals with the Z-matrix's Jacobian
    b^2 sin(angle)."""

    kT = 1.0  # a Target in reduced units

    def __init__(self, zmatrix: ZMatrix, mean: torch.Tensor, std: torch.Tensor) -> None:
        self.zmatrix, self.mean, self.std = zmatrix, mean, std
        self.event_shape = (zmatrix.n_atoms, 3)

    def energy(self, x: torch.Tensor) -> torch.Tensor:
        bonds, angles, _ = self.zmatrix.to_internal(x)
        y = torch.cat([bonds.log(), torch.logit(angles / math.pi)], 1)
        return 0.5 * (((y - self.mean) / self.std) ** 2).sum(1)

    def log_z(self) -> float:
        n = self.zmatrix.n_atoms
        mean, std = self.mean.tolist(), self.std.tolist()
        # int exp(-(log b - m)^2 / 2 s^2) b^2 db = sqrt(2 pi) s exp(3 m + 9 s^2 / 2)
        bonds = sum(0.5 * math.log(2 * math.pi) + math.log(s) + 3 * m + 4.5 * s**2 for m, s in
                    zip(mean[: n - 1], std[: n - 1]))
        grid = torch.linspace(1e-7, math.pi - 1e-7, 400001, dtype=torch.float64)
        logit = torch.logit(grid / math.pi)
        angles = sum(math.log(torch.trapezoid(torch.exp(-0.5 * ((logit - m) / s) ** 2) * grid.sin(), grid))
                     for m, s in zip(mean[n - 1:], std[n - 1:]))
        return bonds + angles + (n - 3) * math.log(2 * math.pi)


def test_importance_sampling_recovers_a_normalising_constant_known_from_one_dimensional_integrals(ala2, frames):
    zmatrix = ZMatrix.from_topology(ala2.topology)
    mean, std = standardisation(zmatrix, frames)
    target = NormalInInternalCoordinates(zmatrix, mean, std)
    flow = InternalCoordinateFlow(zmatrix, mean, std, layers=2, hidden=16).double()
    samples = importance_samples(flow, target, 4000, torch.Generator().manual_seed(1), progress=False)
    assert samples.info["ess_percent"] > 50
    assert samples.info["log_Z"] == pytest.approx(target.log_z(), abs=4 * samples.info["log_Z_error"])


def test_a_flow_trained_on_md_frames_is_saved_loaded_and_sampled_with_exact_weights(ala2, frames, tmp_path):
    target = flow_target(ala2)
    data = Samples.unweighted(frames[:800], target.energy(frames[:800]))
    log = []
    flow = train_flow(ala2, data, steps=60, batch_size=64, hidden=32, layers=4, architecture="internal",
                      log=log.append)
    assert isinstance(flow, InternalCoordinateFlow) and mirror_fold(flow, ala2) is None
    untrained = InternalCoordinateFlow(flow.zmatrix, flow.mean, flow.std, layers=4, hidden=32)
    held_out = frames[800:]
    assert held_out_nll(flow, held_out) < held_out_nll(untrained, held_out) - 5

    path = save_flow(flow, tmp_path / "ala2-internal.pt", ala2, command="test")
    loaded = load_flow(path, ala2)
    assert isinstance(loaded, InternalCoordinateFlow)
    assert torch.allclose(loaded.log_prob(held_out[:5]), flow.double().log_prob(held_out[:5]), atol=1e-6)
    samples = importance_samples(loaded, target, 200, torch.Generator().manual_seed(2), progress=False)
    assert torch.allclose(samples.log_q, loaded.log_prob(samples.x), atol=1e-8)
    assert 0 < samples.info["ess"] <= 200
    with pytest.raises(InputError, match="not for 'dw4'"):
        load_flow(path, load("dw4"))


def test_internal_coordinates_are_for_molecules():
    dw4 = load("dw4")
    data = Samples.unweighted(torch.zeros(10, 4, 2), torch.zeros(10))
    with pytest.raises(InputError, match="particle system"):
        train_flow(dw4, data, steps=1, batch_size=2, architecture="internal")
    with pytest.raises(InputError, match="unknown flow architecture"):
        train_flow(dw4, data, steps=1, batch_size=2, architecture="spline")


class SometimesOverflowing(NormalInInternalCoordinates):
    """The same energy, NaN (an overflow) for every fourth configuration of a batch."""

    def energy(self, x: torch.Tensor) -> torch.Tensor:
        u = super().energy(x)
        return torch.where(torch.arange(len(u)) % 4 == 0, torch.full_like(u, math.nan), u)


def test_the_energy_term_trains_on_the_target_and_drops_overflowing_draws(ala2, frames):
    zmatrix = ZMatrix.from_topology(ala2.topology)
    mean, std = standardisation(zmatrix, frames)
    shifted = mean + std  # not the data's density: the energy term must move q towards it
    flow = InternalCoordinateFlow(zmatrix, mean, std, layers=2, hidden=16)

    def reverse_kl() -> float:  # E_q[u + log q] = KL(q || p) - log Z
        with torch.no_grad():
            x, log_q = flow.double().sample_and_log_prob(1000, torch.Generator().manual_seed(1))
            return float((NormalInInternalCoordinates(zmatrix, shifted, std).energy(x) + log_q).mean())

    before = reverse_kl()
    losses = train_internal_flow(flow.float(), frames[:200], steps=1, batch_size=64, energy_steps=60,
                                 target=SometimesOverflowing(zmatrix, shifted, std), energy_learning_rate=3e-3)
    assert len(losses) == 61 and all(math.isfinite(loss) for loss in losses)
    after = reverse_kl()
    assert after < before - 5


def test_smc_refinement_of_a_molecule_recovers_the_known_normalising_constant(ala2, frames):
    zmatrix = ZMatrix.from_topology(ala2.topology)
    mean, std = standardisation(zmatrix, frames)
    target = NormalInInternalCoordinates(zmatrix, mean + 0.2 * std, std)  # the flow is off by a fifth of a deviation
    flow = InternalCoordinateFlow(zmatrix, mean, std, layers=2, hidden=16).double()
    generator = torch.Generator().manual_seed(3)
    draws = importance_samples(flow, target, 1000, generator, progress=False)
    refined = refine_smc(flow, target, draws, n_betas=4, n_steps=2, generator=generator, progress=False)
    assert refined.info["ess_percent"] > draws.info["ess_percent"]
    assert refined.info["log_Z"] == pytest.approx(target.log_z(), abs=0.1)
