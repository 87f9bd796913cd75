"""The Lennard-Jones solute system: its energy, its symmetries (used to pair end states) and the boundary values of
the learned interpolating potential."""

import math

import pytest
import torch

from molsamp.free_energy.lj_solute import LennardJonesInterpolant, LennardJonesSolute
from molsamp.kernels import energy_and_gradient

SYSTEM = LennardJonesSolute(n_solvent=30, cutoff=1.7)


@pytest.fixture(scope="module")
def samples():
    generator = torch.Generator().manual_seed(0)
    return {c: SYSTEM.sample(c, n_chains=2, n_samples=3, steps_between=10, equilibration_steps=200,
                             generator=generator) for c in (0.0, 1.0)}


def two_particles(r):
    """A solute-free pair: solvent particles 1 and 2 at distance r, everyone else far apart on a line."""
    x = torch.zeros(1, 3, 3, dtype=torch.float64)
    x[0, 0, 0], x[0, 2, 1] = SYSTEM.box / 2, r  # the solute across the box, out of range
    return LennardJonesSolute(n_solvent=2, density=2 / SYSTEM.box**3, cutoff=1.7), x


def test_pair_at_the_minimum_has_energy_minus_epsilon_minus_shift():
    system, x = two_particles(2 ** (1 / 6))
    shift = 4 * (1.7**-12 - 1.7**-6)
    assert system.energy(x).item() == pytest.approx(-1.0 - shift, abs=1e-10)


def test_the_decoupled_solute_is_invisible(samples):
    x = samples[1.0][:2]
    moved = x.clone()
    moved[:, 0] += torch.tensor([0.4, -0.3, 0.2], dtype=torch.float64)
    assert torch.allclose(SYSTEM.coupled_energy(moved, 0.0), SYSTEM.coupled_energy(x, 0.0))
    assert not torch.allclose(SYSTEM.coupled_energy(moved, 1.0), SYSTEM.coupled_energy(x, 1.0))


def test_samples_are_in_the_box_with_finite_energy(samples):
    for coupling, x in samples.items():
        assert x.shape == (6, 31, 3) and bool(((x >= 0) & (x < SYSTEM.box)).all())
        assert bool(torch.isfinite(SYSTEM.coupled_energy(x, coupling)).all())


def test_alignment_keeps_energies_and_carries_the_gradients(samples):
    x0, x1 = samples[0.0], samples[1.0]
    energy1 = lambda x: SYSTEM.coupled_energy(x, 1.0)  # noqa: E731
    grad0 = energy_and_gradient(lambda x: SYSTEM.coupled_energy(x, 0.0), x0)[1]
    grad1 = energy_and_gradient(energy1, x1)[1]
    a0, g0, a1, g1 = SYSTEM.align(x0, grad0, x1, grad1)
    assert torch.allclose(SYSTEM.coupled_energy(a0, 0.0), SYSTEM.coupled_energy(x0, 0.0))
    assert torch.allclose(energy1(a1), energy1(x1))
    assert torch.allclose(energy_and_gradient(energy1, a1)[1], g1, atol=1e-8)
    assert torch.equal(a0[:, 0], torch.zeros_like(a0[:, 0])) and torch.equal(g0, grad0)
    shuffled_distance = ((a0 - SYSTEM._centre(x1)) ** 2).sum()
    assert ((a0 - a1) ** 2).sum() <= shuffled_distance  # the assignment never increases the distance to travel


def test_interpolation_runs_from_one_end_to_the_other(samples):
    x0, x1 = samples[0.0], samples[1.0]
    t = torch.zeros(6, dtype=torch.float64)
    assert torch.allclose(SYSTEM.interpolate(x0, x1, t), x0)
    periods = (SYSTEM.interpolate(x0, x1, t + 1) - x1) / SYSTEM.box  # x1 up to whole box lengths
    assert torch.allclose(periods, torch.round(periods), atol=1e-9)


def test_interpolant_potential_holds_both_end_states_exactly(samples):
    torch.manual_seed(0)
    potential = LennardJonesInterpolant(SYSTEM)
    for parameter in potential.parameters():  # not the zero initialisation: any network must keep the ends
        parameter.data.normal_()
    x = torch.cat([samples[0.0], samples[1.0]])
    zeros, ones = torch.zeros(len(x), dtype=torch.float64), torch.ones(len(x), dtype=torch.float64)
    assert torch.allclose(potential(x, zeros), SYSTEM.coupled_energy(x, 0.0))
    assert torch.allclose(potential(x, ones), SYSTEM.coupled_energy(x, 1.0))
    middle = potential(x, torch.full((len(x),), 0.5, dtype=torch.float64))
    assert bool(torch.isfinite(middle).all()) and not torch.allclose(middle, SYSTEM.coupled_energy(x, 0.5))


def test_cutoff_beyond_half_the_box_is_refused():
    with pytest.raises(ValueError, match="exceeds half the box"):
        LennardJonesSolute(n_solvent=30, cutoff=2.5)
    assert math.isclose(LennardJonesSolute(n_solvent=100).box, (100 / 0.7) ** (1 / 3))


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_sampling_training_and_estimate_run_on_the_gpu():
    from molsamp.free_energy.neural_ti import EndStates, Interpolant, neural_ti_estimate, train_neural_ti

    generator = torch.Generator("cuda").manual_seed(0)
    x0, x1 = (SYSTEM.sample(c, n_chains=2, n_samples=3, steps_between=10, equilibration_steps=50,
                            generator=generator, device="cuda") for c in (0.0, 1.0))
    ends = EndStates.from_energies(x0, lambda x: SYSTEM.coupled_energy(x, 0.0), x1,
                                   lambda x: SYSTEM.coupled_energy(x, 1.0))
    potential = LennardJonesInterpolant(SYSTEM)
    t = torch.full((len(x0),), 0.3, dtype=torch.float64)
    on_cpu = potential(x0.cpu(), t)
    potential.cuda()
    assert torch.allclose(potential(x0, t.cuda()).cpu(), on_cpu)
    interpolant = Interpolant(path=SYSTEM.interpolate, align=SYSTEM.align)
    train_neural_ti(potential, ends, steps=3, batch_size=4, interpolant=interpolant, generator=generator)
    result = neural_ti_estimate(potential, ends, n_t=4, pairs_per_t=4, interpolant=interpolant, generator=generator)
    assert math.isfinite(result.delta_f)


def test_the_solute_system_is_a_target_in_reduced_units():
    from molsamp.targets import Target

    solute = LennardJonesSolute(temperature=1.5)
    assert isinstance(solute, Target)
    assert (solute.n_atoms, solute.dim, solute.kT) == (129, 3, 1.5)
    x = solute.lattice(2)
    torch.testing.assert_close(solute.energy(x) * solute.kT, LennardJonesSolute(temperature=1.0).energy(x))
