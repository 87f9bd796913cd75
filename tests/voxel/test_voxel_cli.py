"""`molsamp train voxel` and `molsamp generate`: a checkpoint and a training log; an SDF and a quality report;
one-line errors."""

import json

import torch

from rdkit import Chem

from molsamp.voxel import MoleculeSet

from test_cli import assert_one_line_error, molsamp

ONE_THREAD = {"OMP_NUM_THREADS": "1"}


def test_train_then_generate(tmp_path, embed):
    table = Chem.GetPeriodicTable()
    pairs = [embed(smiles) for smiles in ("CO", "CC#N")]
    MoleculeSet.from_molecules([([table.GetAtomicNumber(e) for e in elements], x) for elements, x in pairs],
                               ["CO", "CC#N"]).save(tmp_path / "set.npz")
    model = tmp_path / "voxel.pt"
    trained = molsamp("train", "voxel", "--data", tmp_path / "set.npz", "--steps", 2, "--batch-size", 2,
                      "--widths", "4,8", "-o", model, env=ONE_THREAD)
    assert trained.returncode == 0, trained.stderr
    assert [json.loads(line)["step"] for line in model.with_suffix(".log.jsonl").read_text().splitlines()] == [2]
    more = molsamp("train", "voxel", "--data", tmp_path / "set.npz", "--steps", 1, "--batch-size", 2,
                   "--widths", "4,8", "--init", model, "-o", tmp_path / "more.pt", env=ONE_THREAD)
    assert more.returncode == 0, more.stderr
    card = torch.load(tmp_path / "more.pt", weights_only=True)["metadata"]
    assert card["total_steps"] == 3 and card["command"].count("; then molsamp train voxel") == 1
    wrong = molsamp("train", "voxel", "--data", tmp_path / "set.npz", "--steps", 1, "--init", model,
                    "-o", tmp_path / "wrong.pt", env=ONE_THREAD)
    assert_one_line_error(wrong, "configuration")
    output = tmp_path / "gen.sdf"
    made = molsamp("generate", "-n", 3, "--walk-steps", 2, "--chains", 3, "--model", model, "-o", output, "-q",
                   env=ONE_THREAD)
    assert made.returncode == 0, made.stderr
    report = json.loads(made.stdout.splitlines()[-1])
    assert report["n"] == 3 and "validity" in made.stdout.splitlines()[0]
    assert output.read_text().count("$$$$") == 3 - report["unreadable"]
    again = molsamp("generate", "-n", 3, "--model", model, "-o", output)
    assert_one_line_error(again, "exists")
    too_many = molsamp("generate", "--measurements", 9, "--model", model, "-o", tmp_path / "x.sdf")
    assert_one_line_error(too_many, "measurements must be between 1 and 4")


def test_train_voxel_with_a_file_that_is_not_a_molecule_set(tmp_path):
    (tmp_path / "bad.npz").write_bytes(b"not numpy")
    result = molsamp("train", "voxel", "--data", tmp_path / "bad.npz", "-o", tmp_path / "m.pt")
    assert_one_line_error(result, "is not a molecule set")


def test_generate_names_a_device_this_machine_lacks(tmp_path):
    result = molsamp("generate", "-n", 2, "--device", "tpu:0", "-o", tmp_path / "gen.sdf")
    assert_one_line_error(result, "'tpu:0' is not a torch device")
    assert not (tmp_path / "gen.sdf").exists()
