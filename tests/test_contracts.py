"""Contract tests, like zuko's: one battery over every Distribution and one over every Kernel (molsamp.testing).

Every positive case has a broken twin below that the same battery rejects, so no check passes trivially.
"""

import dataclasses
import math
from collections.abc import Callable

import numpy as np
import pytest
import torch
from rdkit import Chem

from molsamp.conformers import rotatable_torsions
from molsamp.conformers import model as conformer_model
from molsamp.conformers.features import molecule_graph
from molsamp.conformers.model import TorsionMixture, TorsionMixtureNet
from molsamp.conformers.moves import TorsionStep
from molsamp.kernels import HMC, MALA, ChainState, Cycle, Kernel, Langevin, MetropolisHastings
from molsamp.md import OpenMMDynamics
from molsamp.systems import load
from molsamp.targets import EnergyFunction
from molsamp.testing import (ShiftedGaussianFlow, assert_distribution_contract, assert_kernel_contract,
                             assert_kernel_resumes, assert_kernel_stationary, exact_draws)
from molsamp.timewarp import model as timewarp_model
from molsamp.timewarp.features import N_FEATURES, atom_features
from molsamp.timewarp.sampler import Exploration, TimewarpDistribution, TimewarpProposal

TURN = (-math.pi, math.pi)


@pytest.fixture(scope="module")
def ala2():
    return load("ala2")


# ---------------------------------------------------------------------------------------------------- Distributions


def leaves(*values):
    """float64 leaf tensors that require grad."""
    return [torch.tensor(value, dtype=torch.float64, requires_grad=True) for value in values]


def one_torsion(tmp_path, ala2):
    parameters = leaves([[0.0, -1.0]], [[-2.0, 1.0]], [[4.0, 12.0]])
    return {"distribution": TorsionMixture(*parameters), "parameters": parameters, "normalised_on": TURN}


def two_torsion_parameters():
    """A lopsided bimodal torsion and a sharp unimodal one (plus a broad component)."""
    return leaves([[0.0, -1.0, -3.0], [2.0, -3.0, -3.0]], [[-2.0, 1.0, 0.0], [3.0, -1.5, 0.5]],
                  [[4.0, 12.0, 1.0], [25.0, 0.5, 2.0]])


def two_torsions(tmp_path, ala2):
    parameters = two_torsion_parameters()
    return {"distribution": TorsionMixture(*parameters), "parameters": parameters, "normalised_on": TURN}


def flat_torus(tmp_path, ala2):
    return {"distribution": TorsionMixture.uniform(2), "normalised_on": TURN}


def blended_with_flat(tmp_path, ala2):
    parameters = two_torsion_parameters()
    return {"distribution": TorsionMixture(*parameters).with_uniform(0.3), "parameters": parameters,
            "normalised_on": TURN}


def torsion_network(tmp_path, ala2):
    """The mixture a tiny (float32) TorsionMixtureNet predicts for propanol's two torsions."""
    molecule = Chem.AddHs(Chem.MolFromSmiles("CCCO"))
    graph = molecule_graph(molecule, rotatable_torsions(molecule))
    torch.manual_seed(0)
    net = TorsionMixtureNet(hidden=16, layers=1, components=2).eval()
    conformer_model.save_model(net, tmp_path / "net.pt")
    return {"distribution": net(graph)[0], "parameters": list(net.parameters()), "normalised_on": TURN,
            "save_load": lambda: conformer_model.load_model(tmp_path / "net.pt")(graph)[0],
            "rtol": 1e-5, "atol": 1e-5}


def perturbed_flow(dtype=torch.float32):
    """A tiny TimewarpFlow whose zero-initialised output layers are perturbed, so every parameter matters."""
    torch.manual_seed(0)
    flow = timewarp_model.TimewarpFlow(hidden=16, heads=2, layers=1, couplings=4).to(dtype)
    for parameter in flow.parameters():
        parameter.data += 0.1 * torch.randn_like(parameter)
    return flow


def timewarp_flow(tmp_path, ala2):
    """q(x', v' | x) of a tiny (float32) flow on alanine dipeptide, at four jiggled copies of its positions."""
    flow, features = perturbed_flow(), atom_features(ala2.topology).float()
    generator = torch.Generator().manual_seed(0)
    context = torch.as_tensor(ala2.positions, dtype=torch.float32) + 0.01 * torch.randn(4, 22, 3, generator=generator)
    timewarp_model.save_model(flow, tmp_path / "flow.pt")
    return {"distribution": TimewarpDistribution(flow, features), "n": 4, "context": context,
            "parameters": list(flow.parameters()),
            "save_load": lambda: TimewarpDistribution(timewarp_model.load_model(tmp_path / "flow.pt"), features),
            "rtol": 1e-4, "atol": 1e-3}


DISTRIBUTIONS = [one_torsion, two_torsions, flat_torus, blended_with_flat, torsion_network, timewarp_flow]


@pytest.mark.parametrize("make_case", DISTRIBUTIONS, ids=lambda make_case: make_case.__name__)
def test_distribution_contract(make_case, tmp_path, ala2):
    assert_distribution_contract(**make_case(tmp_path, ala2))


class OffsetLogProb(TorsionMixture):
    """Unnormalised: log_prob is 0.1 too high (consistently, also in sample_and_log_prob)."""

    def log_prob(self, angles, context=None):
        return super().log_prob(angles, context) + 0.1


class GlobalRandomness(TorsionMixture):
    """Ignores the generator: draws from torch's global random state."""

    def sample(self, n, generator=None, context=None):
        return super().sample(n, None, context)


class StaleLogProb(TorsionMixture):
    """sample_and_log_prob returns the density of other angles than those it returns."""

    def sample_and_log_prob(self, n, generator=None, context=None):
        angles = self.sample(n, generator, context)
        return angles, self.log_prob(angles.flip(0))


def broken_distribution(name):
    parameters = two_torsion_parameters()
    logits, means, concentrations = parameters
    if name == "unnormalised":
        return {"distribution": OffsetLogProb(*parameters), "normalised_on": TURN}
    if name == "global randomness":
        return {"distribution": GlobalRandomness(*parameters)}
    if name == "stale log-density":
        return {"distribution": StaleLogProb(*parameters)}
    if name == "detached parameter":
        return {"distribution": TorsionMixture(logits, means, concentrations.detach()), "parameters": parameters}
    moved = TorsionMixture(logits, means + 1e-6, concentrations)  # "lossy save": a reload that moves the means
    return {"distribution": TorsionMixture(*parameters), "save_load": lambda: moved}


@pytest.mark.parametrize("name, message", [
    ("unnormalised", "integrates to"),
    ("global randomness", "same seed gave other samples"),
    ("stale log-density", "disagrees with log_prob"),
    ("detached parameter", "does not reach parameter 2"),
    ("lossy save", "save/load"),
])
def test_the_distribution_battery_rejects_a_broken_distribution(name, message):
    with pytest.raises(AssertionError, match=message):
        assert_distribution_contract(**broken_distribution(name))


def test_a_float64_flow_survives_save_and_load(tmp_path, ala2):
    flow, features = perturbed_flow(torch.float64), atom_features(ala2.topology).double()
    timewarp_model.save_model(flow, tmp_path / "flow.pt")
    reloaded = TimewarpDistribution(timewarp_model.load_model(tmp_path / "flow.pt").double(), features)
    assert_distribution_contract(TimewarpDistribution(flow, features), n=2,
                                 context=torch.as_tensor(ala2.positions)[None].repeat(2, 1, 1),
                                 save_load=lambda: reloaded)


# ---------------------------------------------------------------------------------------------------------- Kernels

CHAINS = 4000


def double_well_log_density(x):
    """Marginal along x of the double well: two wells at +-1, 4 kT barrier."""
    return -((x**2 - 1) ** 2) / 0.25


def double_well_energy(x):
    """u of positions ``[C, 1, 3]``: the double well along x, a standard Gaussian along y and z (kT)."""
    return -double_well_log_density(x[:, 0, 0]) + 0.5 * (x[:, 0, 1:] ** 2).sum(-1)


def draw_double_well(n, generator):
    along = exact_draws(double_well_log_density, -2.5, 2.5, n, generator)
    return torch.cat([along[:, None], torch.randn(n, 2, generator=generator, dtype=torch.float64)], 1)[:, None]


def torsion_log_density(theta):
    """Three equal wells at 0 and +-2 pi / 3."""
    return 2 * torch.cos(3 * theta)


def draw_torsion(n, generator):
    return exact_draws(torsion_log_density, *TURN, n, generator)[:, None]


DOUBLE_WELL = EnergyFunction(double_well_energy, event_shape=(1, 3))
TORSIONAL = EnergyFunction(lambda angles: -torsion_log_density(angles[:, 0]), event_shape=(1,))
HOT_DOUBLE_WELL = EnergyFunction(lambda x: 0.5 * double_well_energy(x), event_shape=(1, 3))
DOUBLE_WELL_EDGES = np.linspace(-2.0, 2.0, 41)
TORSION_EDGES = np.linspace(*TURN, 37)
# A torsion proposal that misplaces the wells: MH must correct it, and without the Hastings ratio it cannot.
MISPLACED = TorsionMixture(*(torch.tensor(value, dtype=torch.float64) for value in ([[0.0, 0.5]], [[0.6, 2.2]],
                                                                                     [[2.0, 1.5]])))


class GaussianRandomWalk:
    """Symmetric proposal x' = x + scale * N(0, I)."""

    def __init__(self, scale, ignore_generator=False):
        self.scale, self.ignore_generator = scale, ignore_generator

    def propose(self, x, generator=None):
        noise = torch.randn(x.shape, generator=None if self.ignore_generator else generator, dtype=x.dtype)
        return x + self.scale * noise, torch.zeros(len(x), dtype=torch.float64)


class WithoutHastingsRatio:
    """WRONG: a proposal's moves with its q(x | x') / q(x' | x) dropped."""

    def __init__(self, proposal):
        self.proposal = proposal

    def propose(self, x, generator=None):
        return self.proposal.propose(x, generator)[0], torch.zeros(len(x), dtype=torch.float64)


def toy_timewarp():
    return TimewarpDistribution(ShiftedGaussianFlow(), torch.zeros(1, N_FEATURES, dtype=torch.float64))


@dataclasses.dataclass(frozen=True)
class KernelCase:
    """A kernel factory with its target (whose energies the chains carry) and the exact density it should leave
    invariant: ``draw(n, generator)`` samples it, ``log_density`` is its marginal along ``observable``."""

    make_kernel: Callable[[], Kernel]
    target: EnergyFunction
    draw: Callable
    observable: Callable
    log_density: Callable
    edges: np.ndarray
    steps: int = 10
    max_js: float = 0.005

    def start(self, n, seed=0):
        return ChainState.start(self.draw(n, torch.Generator().manual_seed(seed)), self.target)


def along_x(x):
    return x[:, 0, 0]


def the_angle(angles):
    return angles[:, 0]


def double_well_case(make_kernel, target=DOUBLE_WELL, **options):
    return KernelCase(make_kernel, target, draw_double_well, along_x, double_well_log_density, DOUBLE_WELL_EDGES,
                      **options)


EXACT_KERNELS = {
    "random-walk MH": double_well_case(lambda: MetropolisHastings(GaussianRandomWalk(0.5), DOUBLE_WELL)),
    "torsion-step MH": KernelCase(lambda: MetropolisHastings(TorsionStep(MISPLACED), TORSIONAL), TORSIONAL,
                                  draw_torsion, the_angle, torsion_log_density, TORSION_EDGES),
    "timewarp MH": double_well_case(lambda: MetropolisHastings(TimewarpProposal(toy_timewarp()), DOUBLE_WELL)),
    # BIASED by the time step (O(dt^2)), hence twice the exact kernels' tolerance. On this double well BAOAB's error
    # in x stays below the sampling noise up to its stability limit (dt ~ 0.2); dt = 0.02 is ten times smaller.
    "small-step Langevin": double_well_case(lambda: Langevin(DOUBLE_WELL, n_steps=10, timestep=0.02), max_js=0.01),
    "MALA": double_well_case(lambda: MetropolisHastings(MALA(DOUBLE_WELL, 0.5), DOUBLE_WELL)),
    "HMC": double_well_case(lambda: HMC(DOUBLE_WELL, 0.2, n_leapfrog=5)),
    "shuffled cycle of MH": double_well_case(lambda: Cycle([MetropolisHastings(GaussianRandomWalk(0.5), DOUBLE_WELL),
                                                            MetropolisHastings(TimewarpProposal(toy_timewarp()),
                                                                               DOUBLE_WELL)], shuffle=True)),
}

BIASED_KERNELS = {
    "exploration": double_well_case(lambda: Exploration(toy_timewarp(), DOUBLE_WELL)),
    "torsion step without its Hastings ratio": KernelCase(
        lambda: MetropolisHastings(WithoutHastingsRatio(TorsionStep(MISPLACED)), TORSIONAL), TORSIONAL, draw_torsion,
        the_angle, torsion_log_density, TORSION_EDGES),
    "random-walk MH at twice the temperature": double_well_case(
        lambda: MetropolisHastings(GaussianRandomWalk(0.5), HOT_DOUBLE_WELL), target=HOT_DOUBLE_WELL),
    "Langevin at twice the temperature": double_well_case(
        lambda: Langevin(HOT_DOUBLE_WELL, n_steps=10, timestep=0.02), target=HOT_DOUBLE_WELL, max_js=0.01),
    "MALA without its Hastings ratio": double_well_case(
        lambda: MetropolisHastings(WithoutHastingsRatio(MALA(DOUBLE_WELL, 0.8)), DOUBLE_WELL)),
}


@pytest.mark.parametrize("case", EXACT_KERNELS.values(), ids=EXACT_KERNELS.keys())
def test_kernel_leaves_its_target_invariant(case):
    assert_kernel_stationary(case.make_kernel(), case.start(CHAINS), case.observable, case.log_density, case.edges,
                             case.steps, case.max_js)


@pytest.mark.parametrize("case", BIASED_KERNELS.values(), ids=BIASED_KERNELS.keys())
def test_a_biased_kernel_fails_the_stationarity_check(case):
    with pytest.raises(AssertionError, match="after .* steps, Jensen-Shannon"):
        assert_kernel_stationary(case.make_kernel(), case.start(CHAINS), case.observable, case.log_density,
                                 case.edges, case.steps, case.max_js)


class Frozen:
    """Leaves every chain where it is: invariant for any target, and useless."""

    def step(self, state, generator=None):
        return state


def test_a_kernel_that_does_not_move_fails_the_stationarity_check():
    case = EXACT_KERNELS["random-walk MH"]
    with pytest.raises(AssertionError, match="chains moved"):
        assert_kernel_stationary(Frozen(), case.start(CHAINS), case.observable, case.log_density, case.edges,
                                 case.steps, case.max_js)


def test_an_unstable_kernel_fails_the_stationarity_check():
    """Langevin beyond its stability limit sends chains to infinity; the histogram alone would drop them."""
    case = double_well_case(lambda: Langevin(DOUBLE_WELL, n_steps=10, timestep=0.25))
    with pytest.raises(AssertionError, match="non-finite positions"):
        assert_kernel_stationary(case.make_kernel(), case.start(CHAINS), case.observable, case.log_density,
                                 case.edges, case.steps, case.max_js)


ALL_KERNELS = {**EXACT_KERNELS, **BIASED_KERNELS}


@pytest.mark.parametrize("case", ALL_KERNELS.values(), ids=ALL_KERNELS.keys())
def test_kernel_contract(case):
    assert_kernel_contract(case.make_kernel(), case.start(16), case.target)


class StaleEnergies:
    """Moves the chains but keeps their old energies."""

    def step(self, state, generator=None):
        return ChainState(state.x + 0.1, state.u)


def test_the_kernel_contract_rejects_stale_energies():
    with pytest.raises(AssertionError, match="not the target's energies"):
        assert_kernel_contract(StaleEnergies(), EXACT_KERNELS["random-walk MH"].start(16), DOUBLE_WELL)


@pytest.mark.parametrize("case", ALL_KERNELS.values(), ids=ALL_KERNELS.keys())
def test_kernel_resumes_bitwise(case):
    assert_kernel_resumes(case.make_kernel, case.start(16), steps=3)


def test_a_kernel_that_ignores_the_generator_cannot_resume():
    def make_kernel():
        return MetropolisHastings(GaussianRandomWalk(0.5, ignore_generator=True), DOUBLE_WELL)

    with pytest.raises(AssertionError, match="resumed run"):
        assert_kernel_resumes(make_kernel, EXACT_KERNELS["random-walk MH"].start(16), steps=3)


def openmm_dynamics(system):
    """Five steps of OpenMM Langevin MD per kernel step, in a Context of its own (Reference platform)."""
    return OpenMMDynamics(system, seed=1, platform="Reference", n_steps=5)


def test_openmm_dynamics_contract(ala2):
    dynamics = openmm_dynamics(ala2)
    with ala2.target(n_workers=0, platform="Reference") as target:
        assert_kernel_contract(dynamics, dynamics.state(), target)


def test_openmm_dynamics_resumes_from_its_checkpoint(ala2):
    assert_kernel_resumes(lambda: openmm_dynamics(ala2), openmm_dynamics(ala2).state(), steps=2,
                          checkpoint=OpenMMDynamics.checkpoint, restore=OpenMMDynamics.restore)


def test_openmm_dynamics_without_its_checkpoint_cannot_resume(ala2):
    """Its velocities and random state live in the Context: the ChainState alone is not enough."""
    with pytest.raises(AssertionError, match="resumed run"):
        assert_kernel_resumes(lambda: openmm_dynamics(ala2), openmm_dynamics(ala2).state(), steps=2)
