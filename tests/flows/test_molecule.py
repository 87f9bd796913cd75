"""A flow for a molecule: identical atoms from the bond graph, the fold onto the molecule's own stereoisomer with
exact weights (known answer on a Gaussian), the physics the fold relies on (a force field's energy is invariant
under reflection and under exchanging identical atoms), and a flow trained on a few MD frames of alanine
dipeptide."""

import math

import mdtraj
import numpy as np
import pytest
import torch

from molsamp.errors import InputError
from molsamp.flows import EquivariantFlow
from molsamp.flows.diagnostics import backbone_angles, held_out_nll
from molsamp.flows.generator import (
    flow_target,
    handedness,
    importance_samples,
    load_flow,
    reference_samples,
    save_flow,
    train_flow,
    trajectory_samples,
)
from molsamp.flows.molecule import Handedness, StereoisomerTarget, atom_classes
from molsamp.md import run_md
from molsamp.systems import load, load_flexible
from molsamp.targets import EnergyFunction


@pytest.fixture(scope="module")
def ala2():
    return load("ala2-vacuum", constraints=None)


def halomethane() -> tuple[mdtraj.Topology, np.ndarray]:
    """CHFClBr: one stereocentre, four different neighbours (positions in nm, a tetrahedron)."""
    topology = mdtraj.Topology()
    residue = topology.add_residue("MOL", topology.add_chain())
    atoms = [topology.add_atom(name, mdtraj.element.get_by_symbol(name), residue) for name in ("C", "H", "F", "Cl",
                                                                                             "Br")]
    for atom in atoms[1:]:
        topology.add_bond(atoms[0], atom)
    positions = np.array([[0, 0, 0], [1, 1, 1], [1, -1, -1], [-1, 1, -1], [-1, -1, 1]], dtype=float) * 0.06
    return topology, positions


def test_atom_classes_make_the_hydrogens_of_a_methyl_group_identical(ala2):
    classes = atom_classes(ala2.topology)
    names = [f"{a.residue.name}:{a.name}" for a in ala2.topology.atoms]
    by_name = dict(zip(names, classes))
    assert by_name["ACE:H1"] == by_name["ACE:H2"] == by_name["ACE:H3"]
    assert by_name["ALA:HB1"] == by_name["ALA:HB2"] == by_name["ALA:HB3"]
    assert by_name["ALA:HB1"] != by_name["ACE:H1"] and by_name["ALA:CA"] != by_name["ALA:CB"]
    assert len(set(classes)) == 22 - 3 * 2  # three methyl groups, everything else distinct


def test_the_alpha_carbon_is_the_one_stereocentre_of_alanine_dipeptide(ala2):
    fold = handedness(ala2)
    assert [ala2.topology.atom(c).name for c, _ in fold.centres] == ["CA"]
    x = torch.as_tensor(ala2.positions)[None]
    assert fold.matches(torch.cat([x, -x])).tolist() == [True, False]


def test_the_force_field_energy_is_invariant_under_reflection_and_exchange_of_identical_atoms(ala2):
    target = ala2.target(n_workers=0)
    x = torch.as_tensor(ala2.positions, dtype=torch.float64)[None]
    classes = np.array(atom_classes(ala2.topology))
    permutation = np.arange(len(classes))
    for kind in np.unique(classes):
        members = np.flatnonzero(classes == kind)
        permutation[members] = np.roll(members, 1)
    assert (permutation != np.arange(len(classes))).sum() == 9  # the three methyl groups rotated
    u = target.energy(torch.cat([x, -x, x[:, permutation]]))
    assert torch.allclose(u, u[0].expand(3), rtol=0, atol=1e-6)


def test_the_stereoisomer_target_is_the_force_field_on_its_own_handedness_and_infinite_on_the_other(ala2):
    x = torch.as_tensor(ala2.positions, dtype=torch.float64)[None]
    u = flow_target(ala2).energy(torch.cat([x, -x]))
    assert float(u[0]) == pytest.approx(float(ala2.target(n_workers=0).energy(x)[0]), abs=1e-9)
    assert u[1] == math.inf


def test_folding_a_reflection_invariant_gaussian_onto_one_enantiomer_gives_exact_weights():
    """Flow = centred N(0, 1) (zero field), target = the same Gaussian restricted to one handedness: the folded
    density is exactly the normalised target, so every weight is equal and log Z = log(Z_gauss / 2)."""
    topology, positions = halomethane()
    fold = Handedness(topology, positions)
    flow = EquivariantFlow(5, 3, hidden=8, layers=1, prior_scale=1.0).double()
    with torch.no_grad():
        for parameter in flow.field.parameters():
            parameter.zero_()
    gaussian = EnergyFunction(lambda x: 0.5 * (x - x.mean(1, keepdim=True)).pow(2).sum((1, 2)), event_shape=(5, 3))
    target = StereoisomerTarget(gaussian, fold)
    samples = importance_samples(flow, target, 400, torch.Generator().manual_seed(0), fold=fold)
    assert fold.matches(samples.x).all()
    assert samples.info["ess_percent"] == pytest.approx(100.0)
    assert samples.info["log_Z"] == pytest.approx(0.5 * 12 * math.log(2 * math.pi) - math.log(2), abs=1e-9)
    unfolded = importance_samples(flow, target, 400, torch.Generator().manual_seed(0))
    assert unfolded.info["ess_percent"] == pytest.approx(100 * float(fold.matches(unfolded.x).double().mean()))


def test_a_molecule_takes_md_data_and_says_how_to_make_it(ala2, tmp_path):
    with pytest.raises(InputError, match="make_md.py"):
        reference_samples(ala2)
    with pytest.raises(InputError, match="particle system"):
        trajectory_samples(load("dw4"), tmp_path / "missing.h5")


def test_a_flow_trained_on_md_frames_of_alanine_dipeptide_samples_the_right_enantiomer(ala2, tmp_path):
    trajectory = run_md(load_flexible("ala2-vacuum"), tmp_path / "md.h5", duration=40.0, save_every=0.5, seed=0,
                        platform="CPU", progress=False)
    data = trajectory_samples(ala2, trajectory)
    assert len(data) == 80 and torch.isfinite(data.u).all()
    flow = train_flow(ala2, data, steps=5, batch_size=16, hidden=8, layers=1, progress=False)
    assert flow.config["atom_types"] == atom_classes(ala2.topology)
    path = save_flow(flow, tmp_path / "ala2.pt", ala2)
    flow = load_flow(path, ala2, dtype=torch.float32)
    samples = importance_samples(flow, flow_target(ala2), 6, torch.Generator().manual_seed(1), fold=handedness(ala2))
    assert samples.x.shape == (6 - samples.info["dropped"], 22, 3) and samples.x.dtype == torch.float64
    assert handedness(ala2).matches(samples.x).all()
    assert torch.isfinite(samples.log_q).all()
    phi, psi = backbone_angles(data.x, ala2.topology)
    assert phi.shape == psi.shape == (80,) and float(phi.abs().max()) <= math.pi
    assert math.isfinite(held_out_nll(flow, data.x[:8], fold=handedness(ala2)))
