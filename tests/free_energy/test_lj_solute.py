"""The Lennard-Jones solute system: its energy, its symmetries (used to pair end states) and the boundary values of
the learned interpolating potential."""

import math

import pytest
import torch

from molsamp.free_energy.lj_solute import LennardJonesInterpolant, LennardJonesSolute
from molsamp.free_energy.neural_ti import centred
from molsamp.free_energy.solvent_gnn import SolventMessagePassing
from molsamp.kernels import energy_and_gradient

SYSTEM = LennardJonesSolute(n_solvent=30, cutoff=1.7)


@pytest.fixture(scope="module")
def samples():
    generator = torch.Generator().manual_seed(0)
    return {c: SYSTEM.sample(c, n_chains=2, n_samples=3, steps_between=10, equilibration_steps=200,
                             generator=generator).x for c in (0.0, 1.0)}


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
    shuffled_distance = ((a0 - centred(x1, SYSTEM.box)) ** 2).sum()
    assert ((a0 - a1) ** 2).sum() <= shuffled_distance  # the assignment never increases the distance to travel


def test_interpolation_runs_from_one_end_to_the_other(samples):
    x0, x1 = samples[0.0], samples[1.0]
    t = torch.zeros(6, dtype=torch.float64)
    assert torch.allclose(SYSTEM.interpolate(x0, x1, t), x0)
    periods = (SYSTEM.interpolate(x0, x1, t + 1) - x1) / SYSTEM.box  # x1 up to whole box lengths
    assert torch.allclose(periods, torch.round(periods), atol=1e-9)


@pytest.mark.parametrize("network", [None, "gnn"])
def test_interpolant_potential_holds_both_end_states_exactly(samples, network):
    torch.manual_seed(0)
    gnn = SolventMessagePassing(SYSTEM.box, cutoff=1.0, solute_cutoff=1.5, scalars=8, vectors=4, hidden=(8,))
    potential = LennardJonesInterpolant(SYSTEM, gnn if network else None).double()
    for parameter in potential.parameters():  # not the initialisation: any parameters must keep the ends
        parameter.data.normal_()
    x = torch.cat([samples[0.0], samples[1.0]])
    zeros, ones = torch.zeros(len(x), dtype=torch.float64), torch.ones(len(x), dtype=torch.float64)
    torch.testing.assert_close(potential(x, zeros), SYSTEM.coupled_energy(x, 0.0))
    torch.testing.assert_close(potential(x, ones), SYSTEM.coupled_energy(x, 1.0))
    middle = potential(x, torch.full((len(x),), 0.5, dtype=torch.float64))
    assert bool(torch.isfinite(middle).all()) and not torch.allclose(middle, SYSTEM.coupled_energy(x, 0.5))


def test_the_schedules_decouple_at_zero_couple_at_one_and_soften_the_solvent_only_between():
    torch.manual_seed(0)
    potential = LennardJonesInterpolant(SYSTEM).double()
    for parameter in potential.parameters():
        parameter.data.normal_()
    t = torch.tensor([0.0, 0.5, 1.0], dtype=torch.float64)
    a = potential.alchemical_parameters(t)
    assert a["solute_scale"][0] == 0 and a["solute_softness"][0] == 1  # as coupled_energy(x, 0): softness alpha
    assert a["solute_scale"][2] == 1 and a["solute_softness"][2] == 0
    for end in (0, 2):
        assert a["solvent_scale"][end] == 1 and a["solvent_softness"][end] == 0
    assert a["solvent_softness"][1] > 0 and a["solvent_scale"][1] != 1


def test_a_permuted_and_shifted_copy_pairs_to_itself(samples):
    x0 = samples[1.0][:2]
    generator = torch.Generator().manual_seed(1)
    order = torch.cat([torch.zeros(1, dtype=torch.long), 1 + torch.randperm(SYSTEM.n_solvent, generator=generator)])
    x1 = (x0[:, order] + torch.tensor([0.7, -1.3, 2.1], dtype=torch.float64)).remainder(SYSTEM.box)
    a0, _, a1, _ = SYSTEM.align(x0, x0, x1, x1)
    torch.testing.assert_close(a1, a0)


def test_cutoff_beyond_half_the_box_is_refused():
    with pytest.raises(ValueError, match="exceeds half the box"):
        LennardJonesSolute(n_solvent=30, cutoff=2.5)
    assert math.isclose(LennardJonesSolute(n_solvent=100).box, (100 / 0.7) ** (1 / 3))


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_sampling_training_and_estimate_run_on_the_gpu():
    from molsamp.free_energy.neural_ti import (EndStates, Interpolant, TrainingSettings, neural_ti_estimate,
                                              train_neural_ti)

    generator = torch.Generator("cuda").manual_seed(0)
    x0, x1 = (SYSTEM.sample(c, n_chains=2, n_samples=3, steps_between=10, equilibration_steps=50,
                            generator=generator, device="cuda").x for c in (0.0, 1.0))
    ends = EndStates.from_energies(x0, lambda x: SYSTEM.coupled_energy(x, 0.0), x1,
                                   lambda x: SYSTEM.coupled_energy(x, 1.0))
    gnn = SolventMessagePassing(SYSTEM.box, cutoff=1.0, solute_cutoff=1.5, scalars=8, vectors=4, hidden=(8,))
    potential = LennardJonesInterpolant(SYSTEM, gnn).double()
    t = torch.full((len(x0),), 0.3, dtype=torch.float64)
    on_cpu = potential(x0.cpu(), t)
    potential.cuda()
    assert torch.allclose(potential(x0, t.cuda()).cpu(), on_cpu)
    interpolant = Interpolant(path=SYSTEM.interpolate, align=SYSTEM.align)
    train_neural_ti(potential, ends, TrainingSettings(steps=3, batch_size=4), interpolant, generator)
    result = neural_ti_estimate(potential, ends, n_t=4, pairs_per_t=4, interpolant=interpolant, generator=generator)
    assert math.isfinite(result.delta_f)


def test_the_solute_system_is_a_target_in_reduced_units():
    from molsamp.targets import Target

    solute = LennardJonesSolute(n_solvent=128, temperature=1.5)
    assert isinstance(solute, Target)
    assert (solute.n_atoms, solute.dim, solute.kT) == (129, 3, 1.5)
    x = solute.lattice(2)
    torch.testing.assert_close(solute.energy(x) * solute.kT, LennardJonesSolute(n_solvent=128).energy(x))


def test_without_a_cutoff_every_pair_counts_at_its_minimum_image():
    system = LennardJonesSolute(n_solvent=2, density=2 / 27.0)  # box 3
    x = torch.tensor([[[0.0, 0.0, 0.0], [0.2, 0.0, 1.5], [2.3, 0.0, 1.5]]], dtype=torch.float64)
    r2 = {"solute-1": 0.2**2 + 1.5**2, "1-2": 0.9**2, "solute-2": 0.7**2 + 1.5**2}  # 2 is nearer both across x
    sigma, epsilon = system.pair_sigma_epsilon
    lj = lambda r2, s, e: 4 * e * ((s**2 / r2) ** 6 - (s**2 / r2) ** 3)  # noqa: E731
    expected = lj(r2["solute-1"], sigma, epsilon) + lj(r2["1-2"], 1.0, 1.0) + lj(r2["solute-2"], sigma, epsilon)
    assert system.energy(x).item() == pytest.approx(expected, rel=1e-12)


@pytest.mark.slow
def test_neural_ti_agrees_with_mbar_over_training_seeds_on_a_tiny_system():
    """Three training seeds of the authors' recipe (schedules only, shortened) against MBAR on the same
    Hamiltonian: each refined estimate within 0.3 kT (plus three standard errors) of MBAR, and the seeds'
    spread within what their reported errors allow."""
    import numpy as np

    from molsamp.free_energy import mbar
    from molsamp.free_energy.neural_ti import EndStates, Interpolant, TrainingSettings, neural_ti_estimate, \
        train_neural_ti

    system = LennardJonesSolute(n_solvent=30, solute_sigma=1.0, solute_epsilon=1.0)
    generator = torch.Generator().manual_seed(0)
    couplings = np.linspace(0, 1, 9)
    windows = [system.sample(float(c), n_chains=8, n_samples=100, steps_between=5, equilibration_steps=300,
                             generator=generator).x for c in couplings]
    x = torch.cat(windows)
    with torch.no_grad():
        u_kn = torch.stack([system.coupled_energy(x, float(c)) for c in couplings]).numpy()
    reference = mbar(u_kn, [len(w) for w in windows])
    ends = EndStates.from_energies(windows[0], lambda y: system.coupled_energy(y, 0.0),
                                   windows[-1], lambda y: system.coupled_energy(y, 1.0))
    interpolant = Interpolant(path=system.interpolate, align=system.align)
    settings = TrainingSettings(steps=2000, decay_every=1000, score_weight=1e-3 * system.box**2)
    estimates, errors = [], []
    for seed in (1, 2, 3):
        torch.manual_seed(seed)
        potential = LennardJonesInterpolant(system).double()
        seed_generator = torch.Generator().manual_seed(seed)
        train_neural_ti(potential, ends, settings, interpolant, seed_generator, progress=False)
        result = neural_ti_estimate(potential, ends, n_t=16, pairs_per_t=96, interpolant=interpolant,
                                    refine_steps=40, refine_step_size=0.01, generator=seed_generator)
        assert abs(result.delta_f - reference.delta_f) < 0.3 + 3 * math.hypot(result.error, reference.error)
        estimates.append(result.delta_f)
        errors.append(result.error)
    mean = np.average(estimates, weights=np.power(errors, -2.0))
    chi2 = np.sum(((np.array(estimates) - mean) / np.array(errors)) ** 2)
    assert chi2 < 13.8  # two degrees of freedom, p = 0.001
