"""Training a denoiser (resumable, deterministic), loading it for the right grid only, and generating molecules
from it: a barely trained model yields few molecules, and every grid is counted, none crashes."""

import json

import numpy as np
import pytest
import torch
from rdkit import Chem

from molsamp.errors import InputError
from molsamp.voxel import (DenoiserTraining, MoleculeSet, VoxelGrid, generate, load_denoiser, quality_report,
                           train_denoiser)
from molsamp.voxel.readout import molecule_from_atoms

TINY = VoxelGrid(size=16, resolution=0.6)
SETTINGS = DenoiserTraining(steps=4, batch_size=2, checkpoint_every=2)


@pytest.fixture(scope="module")
def molecules(embed):
    table = Chem.GetPeriodicTable()
    pairs = [embed(smiles) for smiles in ("CO", "CC#N", "OCCO", "FC=O")]
    return MoleculeSet.from_molecules([([table.GetAtomicNumber(e) for e in elements], x) for elements, x in pairs],
                                      ["CO", "CC#N", "OCCO", "O=CF"])


def train(molecules, path, steps):
    return train_denoiser(molecules, path, TINY, widths=(4, 8), settings=DenoiserTraining(
        steps=steps, batch_size=2, checkpoint_every=2), seed=3, progress=False, data="four molecules")


def test_molecule_sets_save_and_load(molecules, tmp_path):
    molecules.save(tmp_path / "set.npz")
    again = MoleculeSet.load(tmp_path / "set.npz")
    assert len(again) == 4 and again.molecule(2)[0] == molecules.molecule(2)[0]
    types, positions = again.batch([0, 2], TINY)
    assert types.shape == (2, 10) and int((types >= 0).sum()) == 6 + 10
    with pytest.raises(InputError, match="not a molecule set"):
        MoleculeSet.load(tmp_path / "missing.npz")


def test_training_resumes_to_the_same_model_and_loads_only_for_its_grid(molecules, tmp_path):
    whole = train(molecules, tmp_path / "whole.pt", 4)
    train(molecules, tmp_path / "resumed.pt", 2)
    (tmp_path / "resumed.pt").unlink()
    resumed = train(molecules, tmp_path / "resumed.pt", 4)
    for a, b in zip(whole.state_dict().values(), resumed.state_dict().values()):
        torch.testing.assert_close(a, b)
    loaded = load_denoiser(tmp_path / "whole.pt", TINY)
    assert loaded.metadata["data"] == "four molecules" and len(loaded.metadata["losses"]) == 2
    y = torch.randn(3, *TINY.shape)
    assert loaded(y, 0.9).shape == y.shape and loaded(y, torch.tensor([0.9, 0.6, 0.45])).shape == y.shape
    with pytest.raises(InputError, match="trained for a 16\\^3 grid"):
        load_denoiser(tmp_path / "whole.pt", VoxelGrid())
    with pytest.raises(InputError, match="has trained 4 steps, more than the 2"):
        train(molecules, tmp_path / "whole.pt", 2)


def test_continuing_from_a_denoiser_starts_at_its_weights(molecules, tmp_path):
    start = train(molecules, tmp_path / "start.pt", 2)
    warm = DenoiserTraining(steps=1, batch_size=2, learning_rate=1e-3, warmup_steps=1000)
    more = train_denoiser(molecules, tmp_path / "more.pt", TINY, widths=(4, 8), settings=warm, seed=4,
                          progress=False, init=start)
    # Adam's first step moves each weight by about the learning rate, here 1e-6 in the warm-up; the average
    # starts at the initial weights and takes (1 - ema) of that step, 2e-9 (plus float32 rounding); without the
    # warm-ups it would move by 1e-3 * (1 - ema) = 2e-6, or 0.9e-3 from a fresh average
    moved = max(float((a - b).abs().max()) for a, b in zip(start.parameters(), more.parameters()))
    assert 0 < moved < 1e-8


def test_generation_counts_every_grid_and_writes_what_it_reads(molecules, tmp_path):
    model = train(molecules, tmp_path / "model.pt", 2)
    made = generate(model, 5, measurements=2, walk_steps=3, chains=2, seed=0, progress=False)
    assert len(made.atoms) == len(made.molecules) == 5
    report = made.report(training_smiles=molecules.smiles)
    assert report["n"] == 5 and report["unreadable"] == sum(m is None for m in made.molecules)
    assert made.write_sdf(tmp_path / "out.sdf") == 5 - report["unreadable"]
    assert json.dumps(report)
    with pytest.raises(InputError, match="measurements must be between 1 and 4"):
        generate(model, 5, measurements=5)


def test_quality_of_known_molecules(molecules):
    atoms = [molecules.molecule(i) for i in range(len(molecules))]
    broken = (atoms[0][0][:-1], atoms[0][1][:-1])  # methanol without one hydrogen: C unstable, a radical
    atoms.append(broken)
    report = quality_report(atoms, [molecule_from_atoms(*a) for a in atoms], ["CO"])
    assert report["molecule_stability"] == pytest.approx(4 / 5) and report["validity"] == pytest.approx(4 / 5)
    assert report["uniqueness"] == 1.0 and report["novelty"] == pytest.approx(3 / 4)
    assert report["atom_stability"] == pytest.approx(1 - 1 / sum(len(a[0]) for a in atoms))
    assert np.isfinite(report["atom_stability"])
