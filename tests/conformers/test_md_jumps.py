"""MD with model torsion jumps samples the Boltzmann density of every coordinate: on butane with a force field whose
only torsion term is a chosen three-well potential, the chains reproduce that potential's exact torsion density
from a proposal that misplaces the wells, although MD alone rarely crosses its barriers."""

import dataclasses
import math

import numpy as np
import openmm
import pytest
import torch

from molsamp.analysis import compute_dihedrals, js_divergence, torsion_histogram
from molsamp.conformers import rotatable_torsions, sample_md_jumps
from molsamp.conformers.model import TorsionMixture
from molsamp.errors import InputError
from molsamp.openmm_pool import MOLAR_GAS_CONSTANT
from molsamp.systems import from_smiles
from molsamp.testing import exact_bin_masses

BINS = 36
A, B = 1.0, 4.0  # u(theta) = A cos(theta) + B cos(3 theta) in kT: trans and two gauche wells, 8 kT barriers
# Wells misplaced by 0.6-0.9 rad: its histogram is far from the target's.
WRONG = TorsionMixture(torch.tensor([[0.0, 0.5]]), torch.tensor([[0.6, 2.2]]), torch.tensor([[2.0, 1.5]]))


@pytest.fixture(scope="module")
def three_well_butane(tmp_path_factory):
    """Butane's carbons held by harmonic bonds and angles with the torsion potential u(theta), nothing else (the
    hydrogens are free particles); the dihedral's marginal is then exactly proportional to exp(-u)."""
    system = from_smiles("CCCC", cache_dir=tmp_path_factory.getbasetemp() / "molsamp-cache")
    torsions = rotatable_torsions(system.molecule)
    i, j, k, l = (int(a) for a in torsions.atoms[0])
    forces = openmm.System()
    for mass in system.masses:
        forces.addParticle(mass)
    bonds, angles, torsion = openmm.HarmonicBondForce(), openmm.HarmonicAngleForce(), openmm.PeriodicTorsionForce()
    for a, b in ((i, j), (j, k), (k, l)):
        bonds.addBond(a, b, 0.153, 2.5e5)
    for a, b, c in ((i, j, k), (j, k, l)):
        angles.addAngle(a, b, c, 1.94, 500.0)
    kT = MOLAR_GAS_CONSTANT * system.temperature
    torsion.addTorsion(i, j, k, l, 1, 0.0, A * kT)
    torsion.addTorsion(i, j, k, l, 3, 0.0, B * kT)
    for force in (bonds, angles, torsion):
        forces.addForce(force)
    return dataclasses.replace(system, openmm_system=forces), torsions


def exact_torsion_bins():
    """Probability of each of the :data:`BINS` torsion bins under exp(-u)."""
    return exact_bin_masses(lambda theta: -(A * torch.cos(theta) + B * torch.cos(3 * theta)),
                            np.linspace(-math.pi, math.pi, BINS + 1))


def test_chains_reproduce_the_exact_torsion_density(three_well_butane):
    system, torsions = three_well_butane
    exact = exact_torsion_bins()
    assert js_divergence(torsion_histogram(WRONG.sample(20000, torch.Generator().manual_seed(0))[:, 0], BINS),
                         exact).item() > 0.1
    chains = sample_md_jumps(system, torsions, WRONG, 6000, chains=4, md_steps=10, burn_in=20, seed=1,
                             platform="CPU", progress=False)
    angles = chains.observables["torsions"]
    assert angles.shape == (6000, 1) and chains.x.shape == (6000, system.n_atoms, 3)
    assert 0.05 < chains.info["acceptance"] < 0.9
    # The angles are those of the written positions, and sampling noise at this ESS is JS ~ 1e-3.
    theta = compute_dihedrals(chains.x, torsions.atoms).numpy()
    np.testing.assert_allclose(np.cos(theta - angles.numpy()), 1.0, atol=1e-6)
    assert 100 < chains.info["ess"] <= 6000
    assert js_divergence(torsion_histogram(angles[:, 0], BINS), exact).item() < 0.01


def test_the_flat_blend_reaches_a_well_the_model_misses(three_well_butane):
    """A model that knows only the trans well: its jumps alone never reach the gauche wells, a blend with
    the flat density (here uniform_weight=0.2) does, and the chains reproduce the exact density."""
    system, torsions = three_well_butane
    trans_only = TorsionMixture(torch.tensor([[0.0]]), torch.tensor([[math.pi]]), torch.tensor([[20.0]]))
    exact = exact_torsion_bins()
    runs = {weight: sample_md_jumps(system, torsions, trans_only, 4000, md_steps=10, uniform_weight=weight, seed=3,
                                    platform="CPU", progress=False) for weight in (0.0, 0.2)}
    js = {weight: js_divergence(torsion_histogram(run.observables["torsions"][:, 0], BINS), exact).item()
          for weight, run in runs.items()}
    assert js[0.0] > 0.05
    assert js[0.2] < 0.01


def test_md_alone_stays_in_its_well(three_well_butane):
    """Without jumps the barriers hold: the jumps, not the MD, are what crosses them."""
    system, torsions = three_well_butane
    never = TorsionMixture(torch.tensor([[0.0]]), torch.tensor([[0.0]]), torch.tensor([[50.0]]))  # top of a barrier
    chains = sample_md_jumps(system, torsions, never, 1000, chains=1, md_steps=10, burn_in=0, uniform_weight=0.0,
                             seed=2, platform="CPU", progress=False)
    assert chains.info["acceptance"] < 0.01
    angles = chains.observables["torsions"][:, 0]
    assert js_divergence(torsion_histogram(angles, BINS), exact_torsion_bins()) > 0.1


def test_bad_chain_options(three_well_butane):
    system, torsions = three_well_butane
    with pytest.raises(InputError, match="need n, chains, md_steps >= 1"):
        sample_md_jumps(system, torsions, WRONG, 0)
