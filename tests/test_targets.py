"""Energy targets: OpenMM bridge against OpenMM itself, analytic targets against known values."""

import gc

import numpy as np
import openmm
import pytest
import torch

from molsamp.analysis import compute_dihedrals
from molsamp.errors import InputError
from molsamp.systems import load
from molsamp.targets import DoubleWell, LennardJones, OpenMMTarget, Target
from molsamp.testing import assert_grad_matches_finite_differences, assert_grad_matches_force


@pytest.fixture(scope="module")
def ala2():
    return load("ala2")


@pytest.fixture(scope="module")
def ala2_target(ala2):
    with ala2.target(n_workers=2) as target:
        yield target


def perturbed(system, n, scale=0.01, seed=0):
    """``n`` copies of the system's positions with Gaussian noise of ``scale`` nm."""
    generator = torch.Generator().manual_seed(seed)
    x = torch.as_tensor(system.positions, dtype=torch.float64)
    return x + scale * torch.randn(n, *x.shape, generator=generator, dtype=torch.float64)


def openmm_reference(system, x):
    """Energies (kJ/mol) and forces from one plain OpenMM Context on the Reference platform."""
    context = openmm.Context(system.openmm_system, openmm.VerletIntegrator(0.001),
                             openmm.Platform.getPlatformByName("Reference"))
    energies, forces = [], []
    for xi in x.numpy():
        context.setPositions(xi)
        state = context.getState(getEnergy=True, getForces=True)
        energies.append(state.getPotentialEnergy()._value)
        forces.append(state.getForces(asNumpy=True)._value)
    return np.array(energies), np.array(forces)


def test_targets_follow_the_protocol(ala2_target):
    assert isinstance(ala2_target, Target)
    assert isinstance(LennardJones(), Target) and isinstance(DoubleWell(), Target)


def test_openmm_energy_equals_openmm_state(ala2, ala2_target):
    x = perturbed(ala2, 5)
    energies, _ = openmm_reference(ala2, x)
    u = ala2_target.energy(x)
    assert u.shape == (5,) and u.dtype == torch.float64
    np.testing.assert_allclose(u.numpy() * ala2_target.kT, energies, rtol=1e-4)
    assert ala2_target.kT == pytest.approx(0.0083144626 * 300, rel=1e-6)  # kJ/mol


def test_openmm_gradient_is_minus_force_over_kT(ala2, ala2_target):
    x = perturbed(ala2, 3)
    _, forces = openmm_reference(ala2, x)
    assert_grad_matches_force(ala2_target, x, forces, rtol=1e-3, atol=1e-2)


def test_openmm_gradient_matches_finite_differences(ala2, ala2_target):
    # The CPU platform computes in mixed precision: the step must stay well above its rounding.
    assert_grad_matches_finite_differences(ala2_target, perturbed(ala2, 1), step=1e-4, rtol=2e-2, atol=5e-2)


def test_batch_equals_loop(ala2, ala2_target):
    x = perturbed(ala2, 9, seed=1)
    batch = ala2_target.energy(x)
    loop = torch.cat([ala2_target.energy(xi[None]) for xi in x])
    np.testing.assert_allclose(batch.numpy(), loop.numpy(), rtol=1e-6)
    with OpenMMTarget(ala2.openmm_system, ala2.temperature, n_workers=0) as in_process:
        np.testing.assert_allclose(in_process.energy(x).numpy(), batch.numpy(), rtol=1e-6)


def test_non_finite_positions_raise(ala2, ala2_target):
    x = perturbed(ala2, 2)
    x[1, 3, 0] = float("nan")
    with pytest.raises(ValueError, match="NaN"):
        ala2_target.energy(x)
    with pytest.raises(InputError, match="shape"):
        ala2_target.energy(x[:, :5])


def test_overflow_gives_inf_and_zero_gradient(ala2, ala2_target):
    x = perturbed(ala2, 3).requires_grad_(True)
    with torch.no_grad():
        x[1, 1] = x[1, 0]  # two atoms on top of each other
    before = ala2_target.n_overflow
    u = ala2_target.energy(x)
    u[torch.isfinite(u)].sum().backward()
    assert torch.isinf(u[1]) and u[1] > 0 and torch.isfinite(u[[0, 2]]).all()
    assert ala2_target.n_overflow == before + 1
    assert torch.all(x.grad[1] == 0) and torch.isfinite(x.grad).all()


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().split()[2] != "Z"
    except FileNotFoundError:
        return False


def test_workers_end_on_close_and_on_garbage_collection(ala2):
    target = ala2.target(n_workers=2)
    target.energy(perturbed(ala2, 4))
    pids = target._pool.pids
    assert len(pids) == 2 and all(_alive(p) for p in pids)
    target.close()
    assert not any(_alive(p) for p in pids)

    target = ala2.target(n_workers=2)
    target.energy(perturbed(ala2, 8))
    pids = target._pool.pids
    del target
    gc.collect()
    assert not any(_alive(p) for p in pids)


def test_lennard_jones_pair_at_minimum_and_icosahedron():
    pair = LennardJones(n_particles=2, oscillator_scale=0.0)
    assert pair.energy(torch.tensor([[[0.0, 0, 0], [1.0, 0, 0]]], dtype=torch.float64)).item() == pytest.approx(-1.0)
    # Global minimum of LJ13 is the Mackay icosahedron with U = -44.326801 epsilon (Wales and Doye 1997).
    lj13 = LennardJones(n_particles=13, oscillator_scale=0.0)
    x = torch.tensor(icosahedron(), dtype=torch.float64, requires_grad=True)
    optimizer = torch.optim.LBFGS([x], max_iter=500, tolerance_grad=1e-10, line_search_fn="strong_wolfe")

    def closure():
        optimizer.zero_grad()
        u = lj13.energy(x[None]).sum()
        u.backward()
        return u

    optimizer.step(closure)
    assert lj13.energy(x[None]).item() == pytest.approx(-44.326801, abs=1e-5)


def icosahedron(radius: float = 1.1) -> np.ndarray:
    """Centre plus the 12 vertices of an icosahedron at ``radius``: ``[13, 3]``."""
    g = (1 + 5**0.5) / 2
    vertices = [(0, s1, s2 * g) for s1 in (-1, 1) for s2 in (-1, 1)]
    vertices = vertices + [v[1:] + v[:1] for v in vertices] + [v[2:] + v[:2] for v in vertices]
    vertices = np.array(vertices, dtype=float)
    return np.vstack([np.zeros(3), radius * vertices / np.linalg.norm(vertices[0])])


def test_lennard_jones_oscillator_term_is_invariant_to_translation():
    lj = LennardJones(n_particles=13)
    x = torch.tensor(icosahedron(), dtype=torch.float64)[None]
    assert lj.energy(x + 3.0).item() == pytest.approx(lj.energy(x).item())
    oscillator_only = LennardJones(n_particles=13, epsilon=0.0)
    expected = 0.5 * (x - x.mean(1, keepdim=True)).pow(2).sum().item()
    assert oscillator_only.energy(x).item() == pytest.approx(expected)


@pytest.mark.parametrize("target", [LennardJones(n_particles=13), DoubleWell(), LennardJones(n_particles=5, dim=2)])
def test_analytic_gradients_match_finite_differences(target):
    x = torch.randn(1, target.n_atoms, target.dim, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    assert_grad_matches_finite_differences(target, 2.0 * x, step=1e-6, rtol=1e-5, atol=1e-6)


def test_double_well_pair_energy():
    dw = DoubleWell(n_particles=2, temperature=2.0)
    x = torch.tensor([[[0.0, 0.0], [5.0, 0.0]]], dtype=torch.float64)  # d - d0 = 1
    assert dw.energy(x).item() == pytest.approx((-4.0 + 0.9) / 2.0)


# --- OpenMMPool with torsion restraints (the relaxed torsional energy) ---

ALA2_PHI_PSI = np.array([[4, 6, 8, 14], [6, 8, 14, 16]])


def md_frames(system, n, steps=25, seed=0):
    """``[n, N, 3]`` frames (nm) of a short Langevin run at 300 K that satisfy the system's constraints."""
    integrator = openmm.LangevinMiddleIntegrator(300.0, 1.0, 0.002)
    integrator.setRandomNumberSeed(seed + 1)
    context = openmm.Context(system.openmm_system, integrator, openmm.Platform.getPlatformByName("Reference"))
    context.setPositions(system.positions)
    context.applyConstraints(1e-8)
    frames = []
    for _ in range(n):
        integrator.step(steps)
        frames.append(context.getState(getPositions=True).getPositions(asNumpy=True)._value)
    return np.array(frames)


@pytest.fixture(scope="module")
def restrained_pools(ala2):
    from molsamp.openmm_pool import OpenMMPool

    pools = [OpenMMPool(ala2.openmm_system, n_workers=n, platform="CPU", restrained_torsions=ALA2_PHI_PSI)
             for n in (0, 2)]
    yield pools
    for pool in pools:
        pool.close()


def test_restraints_never_leak_into_energies_and_leave_the_system_alone(ala2, restrained_pools):
    from molsamp.openmm_pool import OpenMMPool

    groups = [f.getForceGroup() for f in ala2.openmm_system.getForces()]
    plain = OpenMMPool(ala2.openmm_system, n_workers=0, platform="CPU")
    x = md_frames(ala2, 4)
    angles = compute_dihedrals(x, ALA2_PHI_PSI).numpy() + 1.0  # theta0 far from the torsions of x
    for pool in restrained_pools:
        pool.relax(x, angles, steps=0)  # leaves theta0 set in every Context
        (energies, forces), (plain_energies, plain_forces) = pool.evaluate(x), plain.evaluate(x)
        np.testing.assert_allclose(energies, plain_energies, rtol=1e-6)
        np.testing.assert_allclose(forces, plain_forces, rtol=1e-5, atol=1e-3)  # single-precision sums differ
        energies, _ = pool.relax(x, angles, steps=0)
        np.testing.assert_allclose(energies, plain.evaluate(x)[0], rtol=1e-6)
    assert [f.getForceGroup() for f in ala2.openmm_system.getForces()] == groups
    assert ala2.openmm_system.getNumForces() == len(groups)
    with pytest.raises(InputError, match="restrained_torsions"):
        plain.relax(x, angles, steps=0)


def test_relax_lowers_the_energy_and_holds_the_torsions(ala2, restrained_pools):
    x = md_frames(ala2, 6, seed=2)
    angles = compute_dihedrals(x, ALA2_PHI_PSI).numpy()
    rigid, _ = restrained_pools[0].evaluate(x)
    energies, relaxed = restrained_pools[0].relax(x, angles, steps=50)
    assert relaxed.shape == x.shape and np.isfinite(energies).all()
    assert np.all(energies <= rigid + 1e-6 * np.abs(rigid))
    assert np.mean(rigid - energies) > 2.0  # kJ/mol: MD frames are not minimised
    np.testing.assert_allclose(restrained_pools[0].evaluate(relaxed)[0], energies, rtol=1e-6)
    deviation = np.angle(np.exp(1j * (compute_dihedrals(relaxed, ALA2_PHI_PSI).numpy() - angles)))
    assert np.abs(deviation).max() < np.radians(2.0)
    bonds = np.array([[b.atom1.index, b.atom2.index] for b in ala2.topology.bonds])
    length = lambda y: np.linalg.norm(y[:, bonds[:, 0]] - y[:, bonds[:, 1]], axis=-1)  # noqa: E731
    assert np.abs(length(relaxed) - length(x)).max() < 0.01
    # Workers and the in-process Context (one thread each) give the same result, every time.
    worker_energies, worker_relaxed = restrained_pools[1].relax(x, angles, steps=50)
    np.testing.assert_allclose(worker_energies, energies, rtol=1e-10)
    np.testing.assert_allclose(worker_relaxed, relaxed, rtol=0, atol=1e-10)
    np.testing.assert_array_equal(restrained_pools[0].relax(x, angles, steps=50)[0], energies)
    assert len(restrained_pools[1].pids) == 2


def test_platform_is_the_one_named_else_reference_for_small_molecules_with_built_in_forces(ala2):
    from molsamp.openmm_pool import reference_is_faster, select_platform

    assert select_platform("Reference", ala2.openmm_system) == "Reference"
    with pytest.raises(InputError, match="not available"):
        select_platform("Abacus")
    small = openmm.System()
    nonbonded = openmm.NonbondedForce()
    for _ in range(3):
        small.addParticle(12.0)
        nonbonded.addParticle(0.1, 0.3, 0.5)
    small.addForce(nonbonded)
    assert reference_is_faster(small)
    assert not reference_is_faster(ala2.openmm_system)  # its implicit solvent is a CustomGBForce
    nonbonded.setNonbondedMethod(openmm.NonbondedForce.CutoffPeriodic)
    assert not reference_is_faster(small)  # Reference's cell lists and PME are slow
    if "CUDA" not in {openmm.Platform.getPlatform(i).getName() for i in range(openmm.Platform.getNumPlatforms())}:
        assert select_platform(None, small) == "CPU" and select_platform(None, ala2.openmm_system) == "CPU"
