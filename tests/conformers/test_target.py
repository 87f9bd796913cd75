"""The torsional target: rigid energies are the OpenMM energies of clash-free rigid conformers; relaxed energies
(restrained minimisation) are lower, keep the torsions, and still reject clashes."""

import math

import numpy as np
import pytest
import torch

from molsamp.analysis import compute_dihedrals
from molsamp.conformers import TorsionalTarget
from molsamp.errors import InputError
from molsamp.systems import from_smiles


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    """One parameter cache for the whole session (each test module asks for the same folder)."""
    return tmp_path_factory.getbasetemp() / "molsamp-cache"


@pytest.fixture(scope="module")
def pentane(cache):
    """Pentane: two C-C-C-C torsions; both near 0 (syn-pentane) put the end carbons on top of each other."""
    return from_smiles("CCCCC", cache_dir=cache)


@pytest.fixture(scope="module")
def rigid(pentane):
    target = TorsionalTarget(pentane, n_workers=0, platform="CPU")
    yield target
    target.close()


@pytest.fixture(scope="module")
def relaxed(pentane):
    target = TorsionalTarget(pentane, relax_steps=20, n_workers=0, platform="CPU")
    yield target
    target.close()


@pytest.fixture(scope="module")
def angles():
    """Random torsions (some clash) plus two that clash: (0, 0) and (0, 0.2)."""
    generator = torch.Generator().manual_seed(0)
    random = (2 * torch.rand(10, 2, generator=generator, dtype=torch.float64) - 1) * math.pi
    return torch.cat([random, torch.tensor([[0.0, 0.0], [0.0, 0.2]], dtype=torch.float64)])


def test_rigid_energy_is_the_openmm_energy_of_clash_free_rigid_conformers(rigid, angles):
    x = rigid.conformers(angles)
    clash = rigid.clashes(x)
    assert clash[-2:].all() and (~clash).sum() >= 6
    expected = torch.full((len(x),), math.inf, dtype=torch.float64)
    expected[~clash] = rigid.target.energy(x[~clash])
    before = rigid.n_evaluations
    assert torch.equal(rigid.energy(angles), expected)
    assert rigid.n_evaluations == before + int((~clash).sum())
    u, positions = rigid.relaxed_conformers(angles)  # relax_steps=0: the rigid conformers
    assert torch.equal(u, expected) and torch.equal(positions, x)


def test_relaxed_energy_is_lower_keeps_the_torsions_and_rejects_clashes(rigid, relaxed, angles):
    u_rigid = rigid.energy(angles)
    free = torch.isfinite(u_rigid)  # the rigid conformers that do not clash
    before = relaxed.n_evaluations
    u, x = relaxed.relaxed_conformers(angles)
    assert relaxed.n_evaluations == before + int(free.sum())
    assert torch.isinf(u[~free]).all() and (u[~free] > 0).all() and not free[-2:].any()
    assert torch.isfinite(u[free]).all()
    assert torch.all(u[free] <= u_rigid[free] + 1e-6 * u_rigid[free].abs())
    assert (u_rigid[free] - u[free]).mean() > 0.5  # kT: relaxing bond angles and methyl rotors gains something
    assert torch.equal(relaxed.energy(angles), u)  # deterministic (one CPU thread per Context)
    # The restrained torsions stay put, bonds keep their lengths, clashing conformers keep their rigid positions.
    deviation = torch.remainder(compute_dihedrals(x, relaxed.torsions.atoms) - angles + math.pi, 2 * math.pi) - math.pi
    assert deviation[free].abs().max() < math.radians(2.0)
    rigid_x = rigid.conformers(angles)
    i, j = np.array([(b.GetBeginAtomIdx(), b.GetEndAtomIdx()) for b in rigid.molecule.GetBonds()]).T
    length = lambda y: (y[:, i] - y[:, j]).norm(dim=-1)  # noqa: E731
    assert (length(x) - length(rigid_x)).abs().max() < 0.01
    assert torch.equal(x[~free], rigid_x[~free])


def test_relaxed_energy_of_the_base_geometry_barely_changes(rigid, relaxed):
    """The base geometry is already minimised: relaxing it at its own torsions changes little."""
    angles = compute_dihedrals(rigid.base[None], rigid.torsions.atoms)
    assert relaxed.energy(angles).item() == pytest.approx(rigid.energy(angles).item(), abs=0.1)


def test_negative_relax_steps_raise(pentane):
    with pytest.raises(InputError, match="relax_steps"):
        TorsionalTarget(pentane, relax_steps=-1, n_workers=0)

