"""The molsamp command: light start-up, help everywhere, one-line errors with exit status 2, MD then analysis."""

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest


def molsamp(*args, cwd=None, env=None):
    """Run the command; ``env`` adds variables to this process's environment."""
    return subprocess.run([sys.executable, "-m", "molsamp.cli", *map(str, args)], capture_output=True, text=True,
                          cwd=cwd, timeout=600, env=None if env is None else {**os.environ, **env})


def assert_one_line_error(result, *fragments):
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
    for fragment in fragments:
        assert fragment in lines[0]


def test_cli_import_is_light():
    code = "import sys, molsamp.cli; print(sorted({'torch', 'openmm', 'mdtraj', 'matplotlib', 'pymbar', 'distributed'} & set(sys.modules)))"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"


@pytest.mark.parametrize("command", [[], ["systems"], ["md"], ["analyze"]])
def test_help_on_every_subcommand(command):
    result = molsamp(*command, "--help")
    assert result.returncode == 0 and "Usage:" in result.stdout


def test_systems_lists_the_builtins():
    names = [line.split()[0] for line in molsamp("systems").stdout.splitlines()]
    assert {"ala2", "ala2-vacuum", "dw4", "lj13", "lj55"} <= set(names)


def test_unknown_system(tmp_path):
    assert_one_line_error(molsamp("md", "ala3", "-o", tmp_path / "x.h5"), "unknown system 'ala3'", "ala2")


def test_malformed_yaml(tmp_path):
    (tmp_path / "bad.yaml").write_text("analytic: lennard-jones\nfriction: [1]\n")
    assert_one_line_error(molsamp("md", tmp_path / "bad.yaml", "-o", tmp_path / "x.h5"), "bad.yaml", "'friction'")


def test_unwritable_output_fails_before_md(tmp_path):
    output = tmp_path / "missing-folder" / "x.h5"
    assert_one_line_error(molsamp("md", "ala2", "--ps", "1", "-o", output), "missing-folder")
    assert not output.parent.exists()


def test_conflicting_durations(tmp_path):
    assert_one_line_error(molsamp("md", "ala2", "--ns", "1", "--ps", "1", "-o", tmp_path / "x.h5"), "--ns")


def test_md_then_analyze(tmp_path):
    result = molsamp("md", "ala2", "--ps", "2", "--save-every", "0.1", "--seed", "3", "-q", "-o", "ala2.h5",
                     cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    result = molsamp("analyze", "ala2.h5", "--ramachandran", "--reference", "ala2.h5", "-o", "rama.png",
                     cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    assert summary["frames"] == 20
    assert summary["ramachandran_js"] == pytest.approx(0.0, abs=1e-12)
    assert 0 < summary["ess_phi"] <= 20 and 0 < summary["ess_psi"] <= 20
    assert (tmp_path / "rama.png").read_bytes().startswith(b"\x89PNG")


def test_analyze_without_backbone(tmp_path):
    assert molsamp("md", "lj13", "--ps", "0.01", "--save-every", "0.001", "-q", "-o", "lj.h5",
                   cwd=tmp_path).returncode == 0
    assert_one_line_error(molsamp("analyze", "lj.h5", "--ramachandran", cwd=tmp_path), "phi/psi")


# ---- conformers ---------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def conformer_setup(tmp_path_factory):
    """A parameter cache of its own (``MOLSAMP_CACHE``) and a checkpoint of a small untrained torsion model."""
    import torch

    from molsamp.conformers.model import TorsionMixtureNet, save_model

    folder = tmp_path_factory.mktemp("conformers")
    torch.manual_seed(0)
    save_model(TorsionMixtureNet(hidden=16, layers=1, components=2), folder / "tiny.pt")
    return {"MOLSAMP_CACHE": str(folder / "cache")}, folder / "tiny.pt"


def sdf_records(path):
    from rdkit import Chem

    return [record for record in Chem.SDMolSupplier(str(path), removeHs=False)]


@pytest.mark.parametrize("command", [["conformers"], ["train"], ["train", "conformers"]])
def test_help_on_conformer_commands(command):
    result = molsamp(*command, "--help")
    assert result.returncode == 0 and "Usage:" in result.stdout


def test_conformers_of_one_smiles(tmp_path, conformer_setup):
    env, model = conformer_setup
    result = molsamp("conformers", "CCO", "-n", "10", "--model", model, "-o", "out.sdf", cwd=tmp_path, env=env)
    assert result.returncode == 0, result.stderr
    assert "CCO: 10 conformers, 1 torsions, ESS" in result.stdout and "wrote out.sdf" in result.stdout
    records = sdf_records(tmp_path / "out.sdf")
    assert len(records) == 10
    for record in records:
        assert record.GetNumAtoms() == 9
        assert math.isfinite(float(record.GetProp("molsamp_energy_kJ_mol")))
        assert float(record.GetProp("molsamp_log_weight")) <= 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.sdf"]
    assert any((Path(env["MOLSAMP_CACHE"]) / "forcefields").iterdir())  # the parameters went to MOLSAMP_CACHE


def test_conformers_of_a_file_with_a_bad_molecule(tmp_path, conformer_setup):
    env, model = conformer_setup
    (tmp_path / "mols.smi").write_text("CCO ethanol\nC[Si](C)(C)C tetramethylsilane\n")
    result = molsamp("conformers", "mols.smi", "-n", "10", "--mh", "-q", "--model", model, "-o", "out.sdf",
                     cwd=tmp_path, env=env)
    assert result.returncode == 0, result.stderr
    assert "failed tetramethylsilane:" in result.stderr and "element 'Si'" in result.stderr
    assert "MH acceptance" in result.stdout and "(1 of 2 molecules failed)" in result.stdout
    records = sdf_records(tmp_path / "out.sdf")
    assert len(records) == 10 and {r.GetProp("_Name") for r in records} == {"ethanol"}
    assert {round(float(r.GetProp("molsamp_log_weight")), 6) for r in records} == {round(-2.302585, 6)}  # log(1/10)


def test_conformers_by_md_with_torsion_jumps_by_default(tmp_path, conformer_setup):
    env, model = conformer_setup
    result = molsamp("conformers", "CCCO", "-n", "8", "--model", model, "-o", "out.sdf", cwd=tmp_path, env=env)
    assert result.returncode == 0, result.stderr
    assert "CCCO: 8 conformers, 2 torsions, ESS" in result.stdout and "MH acceptance" in result.stdout
    records = sdf_records(tmp_path / "out.sdf")
    assert len(records) == 8 and len({r.GetProp("molsamp_energy_kJ_mol") for r in records}) == 8  # flexible: all differ


def test_relax_steps_need_a_torsion_mode(tmp_path, conformer_setup):
    env, model = conformer_setup
    assert_one_line_error(molsamp("conformers", "CCO", "--relax-steps", "5", "--model", model, "-o", "out.sdf",
                                  cwd=tmp_path, env=env), "--relax-steps applies to the rigid torsion modes")


def test_conformers_of_an_empty_string(tmp_path, conformer_setup):
    env, model = conformer_setup
    assert_one_line_error(molsamp("conformers", "", "--model", model, "-o", "out.sdf", cwd=tmp_path, env=env),
                          "empty input")
    assert not (tmp_path / "out.sdf").exists()


def test_conformers_with_a_model_that_is_not_a_checkpoint(tmp_path, conformer_setup):
    env, _ = conformer_setup
    (tmp_path / "model.pt").write_bytes(os.urandom(512))
    assert_one_line_error(molsamp("conformers", "CCO", "--model", "model.pt", "-o", "out.sdf", cwd=tmp_path, env=env),
                          "model.pt", "not a readable torch checkpoint")


TINY_SOLVATION = ["--padding", "1.0", "--equilibration-ps", "0.2", "--window-equilibration-ps", "0.1",
                  "--production-ps", "0.4", "--workers", "1", "-q"]


def test_solvation_of_a_file_with_a_bad_molecule(tmp_path):
    (tmp_path / "mols.smi").write_text("C methane\nC[Si](C)(C)C tetramethylsilane\n")
    result = molsamp("solvation", "mols.smi", "--forcefield", "gaff", *TINY_SOLVATION, "--workdir", "runs",
                     "-o", "dg.json", cwd=tmp_path, env={"MOLSAMP_CACHE": str(tmp_path / "cache")})
    assert result.returncode == 0, result.stderr
    assert "failed tetramethylsilane:" in result.stderr and "element 'Si'" in result.stderr
    assert "methane: dG_hyd = " in result.stdout and "kcal/mol (mbar, GAFF/AM1-BCC, TIP3P, 298.15 K)" in result.stdout
    records = json.loads((tmp_path / "dg.json").read_text())
    assert [r["name"] for r in records] == ["methane", "tetramethylsilane"]
    assert math.isfinite(records[0]["dG_kcal_mol"]) and "error" in records[1]
    assert len(list((tmp_path / "runs").glob("*/solvent/window-*.npz"))) == 17


def test_solvation_with_an_unreachable_scheduler(tmp_path):
    result = molsamp("solvation", "C", "--scheduler", "tcp://127.0.0.1:9", *TINY_SOLVATION, cwd=tmp_path,
                     env={"MOLSAMP_CACHE": str(tmp_path / "cache")})
    assert_one_line_error(result, "cannot reach the Dask scheduler at 'tcp://127.0.0.1:9'")


def test_train_timewarp_then_accelerate(tmp_path):
    assert molsamp("md", "ala2", "--ps", "20", "-q", "-o", "md/ala2.h5", cwd=tmp_path).returncode == 2  # no folder
    (tmp_path / "md").mkdir()
    assert molsamp("md", "ala2", "--ps", "20", "-q", "-o", "md/ala2.h5", cwd=tmp_path).returncode == 0
    trained = molsamp("train", "timewarp", "--systems", "ala2", "--md-folder", "md", "--tau", "5ps", "--steps", "4",
                      "--hidden", "16",
                      "--couplings", "2", "-o", "tw.pt", cwd=tmp_path)
    assert trained.returncode == 0, trained.stderr
    assert "wrote tw.pt (15 pairs of 1 systems)" in trained.stdout and (tmp_path / "tw.log.jsonl").is_file()
    tuned = molsamp("train", "timewarp", "--systems", "ala2", "--md-folder", "md", "--tau", "5ps", "--steps", "2",
                    "--init", "tw.pt", "--acceptance-weight", "1", "-o", "tuned.pt", cwd=tmp_path)
    assert tuned.returncode == 0, tuned.stderr
    assert "train_acceptance" in json.loads((tmp_path / "tuned.log.jsonl").read_text().splitlines()[-1])
    result = molsamp("accelerate", "ala2", "--model", "tw.pt", "--steps", "5", "--chains", "2", "-q", "-o",
                     "chain.h5", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    assert summary["sampler"] == "timewarp MH" and len(summary["ess_phi_psi"]) == 2
    assert set(summary["populations"]) >= {"C7eq/beta", "alpha_R", "alpha_L"} or summary["populations"]
    assert (tmp_path / "chain.png").is_file() and (tmp_path / "chain.h5.json").is_file()


def test_accelerate_with_a_broken_checkpoint(tmp_path):
    (tmp_path / "broken.pt").write_bytes(b"\x00" * 10)
    result = molsamp("accelerate", "ala2", "--model", "broken.pt", "-o", "chain.h5", cwd=tmp_path)
    assert_one_line_error(result, "broken.pt: not a readable checkpoint")


def test_accelerate_with_torsion_jumps(tmp_path):
    result = molsamp("accelerate", "ala2", "--steps", "6", "--chains", "2", "--md-steps", "10", "-q", "-o",
                     "chain.h5", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    assert summary["sampler"] == "MD + torsion jumps (MH)" and summary["torsions"] == 2
    assert 0.0 <= summary["acceptance"] <= 1.0 and len(summary["ess_phi_psi"]) == 2
    assert (tmp_path / "chain.png").is_file() and (tmp_path / "chain.h5.json").is_file()
    wrong = molsamp("accelerate", "ala2", "--sampler", "torsion-jumps", "--explore", "5", "-o", "x.h5", cwd=tmp_path)
    assert_one_line_error(wrong, "--model, --explore and --workers belong to --sampler timewarp")
