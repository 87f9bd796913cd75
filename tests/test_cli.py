"""The molsamp command: light start-up, help everywhere, one-line errors with exit status 2, MD then analysis."""

import json
import math
import os
import signal
import subprocess
import sys
import time
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
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.sdf", "out.sdf.json"]
    assert any((Path(env["MOLSAMP_CACHE"]) / "forcefields").iterdir())  # the parameters went to MOLSAMP_CACHE


def test_conformers_of_a_file_with_a_bad_molecule(tmp_path, conformer_setup):
    env, model = conformer_setup
    (tmp_path / "mols.smi").write_text("CCO ethanol\nC[Si](C)(C)C tetramethylsilane\n")
    result = molsamp("conformers", "mols.smi", "-n", "10", "--mh", "-q", "--model", model, "-o", "out.sdf",
                     cwd=tmp_path, env=env)
    assert result.returncode == 3, result.stderr  # PARTIAL_FAILURE
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
    assert result.returncode == 3, result.stderr  # PARTIAL_FAILURE: one of the two failed
    assert "failed tetramethylsilane:" in result.stderr and "element 'Si'" in result.stderr
    assert "methane: dG_hyd = " in result.stdout and "kcal/mol (mbar, GAFF/AM1-BCC, TIP3P, 298.15 K)" in result.stdout
    records = json.loads((tmp_path / "dg.json").read_text())
    assert [r["name"] for r in records] == ["methane", "tetramethylsilane"]
    assert [r["smiles"] for r in records] == ["C", "C[Si](C)(C)C"] and records[0]["isomeric_smiles"] == "C"
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
    assert_one_line_error(result, "broken.pt: not a readable torch checkpoint")


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


# ---- conformers: batches that keep their work, stereo, molecules without torsions ---------------------------------


def start_molsamp(*args, cwd, env):
    """Start the command in the background; ``env`` adds variables to this process's environment."""
    return subprocess.Popen([sys.executable, "-m", "molsamp.cli", *map(str, args)], cwd=cwd, text=True,
                            env={**os.environ, **env}, stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def wait_until(condition, process, timeout=300):
    """Wait until ``condition()`` holds (or the process has ended)."""
    deadline = time.monotonic() + timeout
    while not condition() and process.poll() is None:
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


def finished_molecules(progress):
    """The molecules a conformer batch's progress file records as finished."""
    return [r["name"] for r in json.loads(progress.read_text())["records"]] if progress.exists() else []


def record_names(path):
    return [record.GetProp("_Name") for record in sdf_records(path)]


def test_conformers_of_a_batch_with_a_molecule_without_torsions(tmp_path, conformer_setup):
    env, model = conformer_setup
    (tmp_path / "three.smi").write_text("CCO ethanol\nc1ccccc1 benzene\nCCCO propanol\n")
    result = molsamp("conformers", "three.smi", "-n", "10", "--model", model, "-o", "three.sdf", cwd=tmp_path, env=env)
    assert result.returncode == 0, result.stderr
    assert "benzene: 10 conformers, 0 torsions, ESS" in result.stdout and "(MD alone)" in result.stdout
    records = sdf_records(tmp_path / "three.sdf")
    assert [r.GetProp("_Name") for r in records] == ["ethanol"] * 10 + ["benzene"] * 10 + ["propanol"] * 10
    assert {(r.GetProp("molsamp_input_smiles"), r.GetProp("molsamp_isomeric_smiles")) for r in records} == {
        ("CCO", "CCO"), ("c1ccccc1", "c1ccccc1"), ("CCCO", "CCCO")}
    summary = json.loads((tmp_path / "three.sdf.json").read_text())
    fields = ("name", "smiles", "isomeric_smiles", "n", "mode", "torsions")
    assert [tuple(s[f] for f in fields) for s in summary] == [
        ("ethanol", "CCO", "CCO", 10, "md-jumps", 1), ("benzene", "c1ccccc1", "c1ccccc1", 10, "md-jumps", 0),
        ("propanol", "CCCO", "CCCO", 10, "md-jumps", 2)]
    assert all(1 <= s["ess"] <= 10 and "error" not in s for s in summary) and summary[1]["acceptance"] is None
    assert sorted(p.name for p in tmp_path.iterdir()) == ["three.sdf", "three.sdf.json", "three.smi"]


def test_conformers_of_a_molecule_without_torsions_in_a_torsion_mode(tmp_path, conformer_setup):
    env, model = conformer_setup
    result = molsamp("conformers", "C[NH3+]", "-n", "5", "--smc", "--model", model, "-o", "out.sdf", cwd=tmp_path,
                     env=env)
    assert result.returncode == 0, result.stderr
    assert ("note C[NH3+]: no rotatable torsion, so --smc keeps one rigid geometry: its 5 conformers are identical"
            in result.stderr)
    positions = [r.GetConformer().GetPositions() for r in sdf_records(tmp_path / "out.sdf")]
    assert len(positions) == 5 and all((x == positions[0]).all() for x in positions)


def test_conformers_killed_then_resumed_lose_and_repeat_nothing(tmp_path, conformer_setup):
    env, model = conformer_setup
    (tmp_path / "three.smi").write_text("CCO ethanol\nc1ccccc1 benzene\nCCCO propanol\n")
    args = ["conformers", "three.smi", "-n", "5", "--model", model, "-q", "-o", "three.sdf"]
    process = start_molsamp(*args, cwd=tmp_path, env=env)
    partial = tmp_path / "three.sdf.partial"
    wait_until(lambda: partial.exists() and partial.stat().st_size > 0, process)  # the first molecule's records
    process.kill()
    process.communicate()
    assert process.returncode == -signal.SIGKILL  # killed in the middle of the batch
    assert not (tmp_path / "three.sdf").exists()
    finished = finished_molecules(tmp_path / "three.sdf.partial.json")
    assert_one_line_error(molsamp(*args[:3], "6", *args[4:], cwd=tmp_path, env=env),
                          "three.sdf.partial' holds an unfinished run with other settings (changed: n)", "--overwrite")
    resumed = molsamp(*args, cwd=tmp_path, env=env)
    assert resumed.returncode == 0, resumed.stderr
    assert not any(f"{name}:" in resumed.stdout for name in finished)  # not sampled again
    # what an uninterrupted run writes (test_conformers_of_a_batch_with_a_molecule_without_torsions)
    assert record_names(tmp_path / "three.sdf") == ["ethanol"] * 5 + ["benzene"] * 5 + ["propanol"] * 5
    assert [s["name"] for s in json.loads((tmp_path / "three.sdf.json").read_text())] == [
        "ethanol", "benzene", "propanol"]
    assert sorted(p.name for p in tmp_path.iterdir() if not p.name.startswith(".")) == [
        "three.sdf", "three.sdf.json", "three.smi"]


def test_conformers_interrupted_by_ctrl_c_say_how_to_resume(tmp_path, conformer_setup):
    env, model = conformer_setup
    (tmp_path / "mols.smi").write_text("CCO ethanol\nc1ccccc1 benzene\nCCCO propanol\n")
    args = ["conformers", "mols.smi", "-n", "5", "--model", model, "-q", "-o", "out.sdf"]
    process = start_molsamp(*args, cwd=tmp_path, env=env)
    wait_until(lambda: finished_molecules(tmp_path / "out.sdf.partial.json"), process)
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == 130, stderr
    kept = len(finished_molecules(tmp_path / "out.sdf.partial.json"))
    assert stderr.strip().splitlines()[-1] == (f"interrupted: {kept} of 3 molecules are kept in out.sdf.partial; "
                                               "run the same command again to resume")
    assert "Traceback" not in stderr and 1 <= kept < 3
    resumed = molsamp(*args, cwd=tmp_path, env=env)
    assert resumed.returncode == 0, resumed.stderr
    assert record_names(tmp_path / "out.sdf") == ["ethanol"] * 5 + ["benzene"] * 5 + ["propanol"] * 5


def test_conformers_refuse_an_existing_output_without_overwrite(tmp_path, conformer_setup):
    env, model = conformer_setup
    (tmp_path / "out.sdf").write_text("keep\n")
    assert_one_line_error(molsamp("conformers", "CCO", "-n", "5", "--model", model, "-o", "out.sdf", cwd=tmp_path,
                                  env=env), "output 'out.sdf' exists; pass --overwrite")
    assert (tmp_path / "out.sdf").read_text() == "keep\n"
    result = molsamp("conformers", "CCO", "-n", "5", "--overwrite", "--model", model, "-o", "out.sdf", cwd=tmp_path,
                     env=env)
    assert result.returncode == 0, result.stderr
    assert record_names(tmp_path / "out.sdf") == ["CCO"] * 5


@pytest.mark.skipif(os.geteuid() == 0, reason="root may write into any folder")
def test_conformers_into_an_unwritable_folder_fail_before_any_work(tmp_path, conformer_setup):
    _, model = conformer_setup
    (tmp_path / "locked").mkdir(mode=0o555)
    result = molsamp("conformers", "CCO", "-n", "5", "--model", model, "-o", "locked/out.sdf", cwd=tmp_path,
                     env={"MOLSAMP_CACHE": str(tmp_path / "cache")})
    assert_one_line_error(result, "cannot write 'locked/out.sdf': folder 'locked' is not writable")
    assert not (tmp_path / "cache").exists()  # nothing was parametrised


@pytest.mark.parametrize("option, message", [(["-n", "0"], "the number of conformers must be at least 1, got 0"),
                                             (["--temperature", "-10"], "temperature must be positive (K), got -10.0")])
def test_conformers_with_bad_options(tmp_path, conformer_setup, option, message):
    env, model = conformer_setup
    assert_one_line_error(molsamp("conformers", "CCO", *option, "--model", model, "-o", "out.sdf", cwd=tmp_path,
                                  env=env), message)
    assert list(tmp_path.iterdir()) == []


def test_conformers_of_a_batch_in_which_every_molecule_fails(tmp_path, conformer_setup):
    env, model = conformer_setup
    (tmp_path / "mols.smi").write_text("C1CC ring\nC[Si](C)(C)C tetramethylsilane\n")
    result = molsamp("conformers", "mols.smi", "-n", "5", "--model", model, "-o", "out.sdf", cwd=tmp_path, env=env)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 3 and lines[0].startswith("failed ring: invalid SMILES 'C1CC'")
    assert lines[1].startswith("failed tetramethylsilane:") and "element 'Si'" in lines[1]
    assert lines[2] == "Error: none of the 2 molecules of 'mols.smi' could be sampled"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mols.smi"]
    assert "3 when some failed" in " ".join(molsamp("conformers", "--help").stdout.split())


def test_conformer_outputs_have_the_usual_permissions(tmp_path, conformer_setup):
    env, model = conformer_setup
    previous = os.umask(0o022)
    try:
        result = molsamp("conformers", "CCO", "-n", "5", "--model", model, "-o", "out.sdf", cwd=tmp_path, env=env)
    finally:
        os.umask(previous)
    assert result.returncode == 0, result.stderr
    assert {p.name: p.stat().st_mode & 0o777 for p in tmp_path.iterdir()} == {"out.sdf": 0o644,
                                                                              "out.sdf.json": 0o644}


def test_conformers_state_or_enumerate_the_stereoisomers(tmp_path, conformer_setup):
    from molsamp.stereo import stereoisomers

    env, model = conformer_setup
    first, second = stereoisomers("CC(O)CC", "all")
    result = molsamp("conformers", "CC(O)CC", "-n", "5", "--model", model, "-o", "first.sdf", cwd=tmp_path, env=env)
    assert result.returncode == 0, result.stderr
    assert result.stderr.strip() == (f"stereo CC(O)CC: CC(O)CC leaves stereo unassigned; sampled {first}, the first "
                                     "of its 2 stereoisomers (--stereo all enumerates them)")
    assert {(r.GetProp("molsamp_input_smiles"), r.GetProp("molsamp_isomeric_smiles"))
            for r in sdf_records(tmp_path / "first.sdf")} == {("CC(O)CC", first)}
    result = molsamp("conformers", "CC(O)CC", "-n", "5", "--stereo", "all", "--model", model, "-o", "all.sdf",
                     cwd=tmp_path, env=env)
    assert result.returncode == 0, result.stderr
    assert "stereo" not in result.stderr
    assert [(r.GetProp("_Name"), r.GetProp("molsamp_isomeric_smiles")) for r in sdf_records(tmp_path / "all.sdf")] == (
        [("CC(O)CC [isomer 1/2]", first)] * 5 + [("CC(O)CC [isomer 2/2]", second)] * 5)
    summary = json.loads((tmp_path / "all.sdf.json").read_text())
    assert [(s["smiles"], s["isomeric_smiles"]) for s in summary] == [("CC(O)CC", first), ("CC(O)CC", second)]


def test_ctrl_c_in_md_saves_a_checkpoint_and_the_same_command_resumes(tmp_path):
    import mdtraj

    from molsamp.md import run_md
    from molsamp.systems import load

    command = [sys.executable, "-m", "molsamp.cli", "md", "lj13", "--ps", "1", "--save-every", "0.005", "-q", "-o"]
    process = subprocess.Popen([*command, "lj13.h5"], cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               text=True)
    meta, deadline = tmp_path / "lj13.h5.partial" / "meta.json", time.monotonic() + 120
    while process.poll() is None and time.monotonic() < deadline:
        if meta.is_file() and json.loads(meta.read_text())["frames"] >= 10:  # its first regular checkpoint
            break
        time.sleep(0.01)
    assert process.poll() is None, "the run ended before it could be interrupted"
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=120)
    frames = json.loads(meta.read_text())["frames"]
    assert process.returncode == 130 and 10 <= frames < 200, stderr
    assert stderr == (f"interrupted after {frames} of 200 frames, saved in 'lj13.h5.partial'; run the same command "
                      "again to resume\n")

    resumed = molsamp(*command[3:], "lj13.h5", cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr
    reference = run_md(load("lj13"), tmp_path / "reference.h5", 1.0, save_every=0.005, seed=0)
    assert (mdtraj.load(str(tmp_path / "lj13.h5")).xyz == mdtraj.load(str(reference)).xyz).all()


def test_ctrl_c_in_accelerate_saves_a_checkpoint_and_the_same_command_resumes(tmp_path, monkeypatch):
    from click.testing import CliRunner

    from molsamp.cli import cli
    from molsamp.conformers.md_jumps import TorsionJumpChain

    calls, original = [], TorsionJumpChain.round

    def round(self):
        calls.append(1)
        if len(calls) == 2 * (10 + 2):  # 10 burn-in rounds of each of the 2 chains, then Ctrl-C in round 2
            os.kill(os.getpid(), signal.SIGINT)
        return original(self)

    monkeypatch.setattr(TorsionJumpChain, "round", round)
    arguments = ["accelerate", "ala2", "--steps", "6", "--chains", "2", "--md-steps", "10", "-q", "-o",
                 str(tmp_path / "chain.h5")]
    interrupted = CliRunner().invoke(cli, arguments)
    assert interrupted.exit_code == 130, interrupted.output
    assert interrupted.stderr == (f"interrupted after 2 of 6 frames, saved in {str(tmp_path / 'chain.h5.partial')!r}; "
                                  "run the same command again to resume\n")
    assert interrupted.stdout == ""
    monkeypatch.undo()
    resumed = CliRunner().invoke(cli, arguments)
    assert resumed.exit_code == 0, resumed.output
    summary = json.loads(resumed.stdout)
    assert summary["n_steps"] == 6 and summary["plot"] == str(tmp_path / "chain.png")
    assert summary == {k: v for k, v in json.loads((tmp_path / "chain.h5.json").read_text()).items()
                       if k != "acceptance_per_chain"}


# ---- one-line errors for bad inputs: analyze, system files, solvation, train ------------------------------------


@pytest.fixture(scope="module")
def ala2_dcd(tmp_path_factory):
    """A short ala2 trajectory in DCD (with its energies beside it), text files posing as trajectories and a
    one-atom PDB file."""
    folder = tmp_path_factory.mktemp("trajectories")
    assert molsamp("md", "ala2", "--ps", "1", "--save-every", "0.5", "-q", "-o", "t.dcd", cwd=folder).returncode == 0
    (folder / "f.h5").write_text("hi\n")
    (folder / "f.dcd").write_text("hi\n")
    (folder / "water.pdb").write_text("HETATM    1  O   HOH A   1       0.000   0.000   0.000  1.00  0.00           O\n"
                                      "END\n")
    return folder


def test_analyze_of_a_dcd_prints_nothing_but_json(ala2_dcd):
    result = molsamp("analyze", "t.dcd", "--top", "ala2", cwd=ala2_dcd)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["frames"] == 2  # the whole of stdout is the JSON line


@pytest.mark.parametrize("arguments, message", [
    (["f.h5"], "trajectory 'f.h5' is not a readable .h5 trajectory"),
    (["f.dcd", "--top", "ala2"], "trajectory 'f.dcd' is not a readable .dcd trajectory"),
    (["t.dcd"], "trajectory 't.dcd': a DCD file needs a topology"),
    (["t.dcd", "--top", "water.pdb"], "trajectory 't.dcd' has 22 atoms but its topology has 1"),
    (["t.dcd", "--top", "missing.pdb"], "topology 'missing.pdb' cannot be read"),
    (["t.dcd", "--top", "f.h5"], "--top 'f.h5': give a system name, a system YAML file or a PDB file"),
    (["t.dcd", "--top", "ala2", "--bins", "0"], "Invalid value for '--bins': 0 is not in the range x>=1"),
])
def test_analyze_of_an_unreadable_trajectory(ala2_dcd, arguments, message):
    result = molsamp("analyze", *arguments, cwd=ala2_dcd)
    assert_one_line_error(result, message)
    assert result.stdout == ""


def test_analyze_refuses_to_replace_a_plot_without_overwrite(ala2_dcd, tmp_path):
    (tmp_path / "rama.png").write_text("mine")
    result = molsamp("analyze", ala2_dcd / "t.dcd", "--top", "ala2", "--ramachandran", "-o", "rama.png", cwd=tmp_path)
    assert_one_line_error(result, "output 'rama.png' exists; pass --overwrite")
    assert (tmp_path / "rama.png").read_text() == "mine"


@pytest.mark.parametrize("line, message", [
    ("timestep: 0", "key 'timestep' must be a positive number, got 0"),
    ("timestep: -1", "key 'timestep' must be a positive number, got -1"),
    ("temperature: -300", "key 'temperature' must be a positive number, got -300"),
    ("temperature: 0", "key 'temperature' must be a positive number, got 0"),
    ("friction: -1", "key 'friction' must be a non-negative number, got -1"),
])
def test_a_system_file_with_a_nonphysical_number(tmp_path, line, message):
    (tmp_path / "bad.yaml").write_text(f"analytic: lennard-jones\n{line}\n")
    result = molsamp("md", "bad.yaml", "--ps", "1", "-o", "x.h5", cwd=tmp_path)
    assert_one_line_error(result, "bad.yaml", message)
    assert not (tmp_path / "x.h5").exists()


@pytest.mark.parametrize("option, message", [
    (["--production-ps", "0"], "protocol production must be positive, got 0 ps"),
    (["--production-ps", "-5"], "protocol production must be positive, got -5 ps"),
    (["--equilibration-ps", "-1"], "protocol equilibration must be non-negative, got -1 ps"),
    (["--window-equilibration-ps", "-1"], "protocol window_equilibration must be non-negative, got -1 ps"),
    (["--temperature", "-10"], "protocol temperature must be positive, got -10 K"),
    (["--padding", "0"], "padding must be positive, got 0 nm"),
    (["--padding", "-1"], "padding must be positive, got -1 nm"),
    (["--workers", "0"], "the number of workers must be at least 1, got 0"),
    (["--stereo", "some"], "Invalid value for '--stereo'"),
    (["--box", "2"], "are for --method neural-ti"),
    (["--method", "neural-ti", "--workers", "2"], "--scheduler and --workers are for --method mbar"),
    (["--device", "cpu"], "are for --method neural-ti"),
    (["--method", "neural-ti", "--device", "gpu"], "'gpu' is not a torch device"),
    (["--method", "neural-ti", "--windows", "7"], "windows must be even, got 7"),
])
def test_solvation_with_a_bad_option_fails_before_any_work(tmp_path, option, message):
    start = time.perf_counter()
    result = molsamp("solvation", "CCO", *option, "--workdir", "runs", "-o", "dg.json", cwd=tmp_path,
                     env={"MOLSAMP_CACHE": str(tmp_path / "cache")})
    assert_one_line_error(result, message)
    assert time.perf_counter() - start < 30  # the start of Python and RDKit, not minutes of sampling
    assert list(tmp_path.iterdir()) == []  # nothing parametrised, no window, no output


def test_neural_ti_solvation_names_the_reason_a_molecule_is_out_of_its_scope(tmp_path):
    result = molsamp("solvation", "CCC", "--method", "neural-ti", "--workdir", tmp_path)
    assert_one_line_error(result, "every pair of its atoms within three bonds")


def test_solvation_refuses_to_replace_an_output_without_overwrite(tmp_path):
    (tmp_path / "dg.json").write_text("{}")
    result = molsamp("solvation", "CCO", "-o", "dg.json", cwd=tmp_path, env={"MOLSAMP_CACHE": str(tmp_path / "cache")})
    assert_one_line_error(result, "output 'dg.json' exists; pass --overwrite")
    assert (tmp_path / "dg.json").read_text() == "{}" and not (tmp_path / "cache").exists()


def test_solvation_help_gives_the_exit_statuses():
    text = " ".join(molsamp("solvation", "--help").stdout.split())
    assert "3 when some failed" in text and "2 when none could be computed" in text and "--stereo" in text


@pytest.fixture
def fake_hydration(monkeypatch):
    """``hydration_free_energies`` without the sampling: a record per SMILES, an error for those with Si."""
    import molsamp.free_energy

    calls = []

    def fake(smiles, **options):
        calls.append(list(smiles))
        return [{"smiles": s, "error": f"molecule {s!r}: element 'Si'"} if "Si" in s else
                {"smiles": s, "isomeric_smiles": s, "dG_kcal_mol": -1.0, "dG_err_kcal_mol": 0.1, "warnings": []}
                for s in smiles]

    monkeypatch.setattr(molsamp.free_energy, "hydration_free_energies", fake)
    return calls


def run_in_process(*args):
    """The command in this process, so that a test can stand in for the library."""
    from click.testing import CliRunner

    from molsamp.cli import cli

    return CliRunner().invoke(cli, list(args))


def test_solvation_of_a_batch_with_a_failure_exits_with_partial_failure(tmp_path, monkeypatch, fake_hydration):
    from molsamp.cli import PARTIAL_FAILURE

    monkeypatch.chdir(tmp_path)
    (tmp_path / "mols.smi").write_text("CCO ethanol\nC[Si](C)(C)C tetramethylsilane\n")
    result = run_in_process("solvation", "mols.smi", "-o", "dg.json")
    assert result.exit_code == PARTIAL_FAILURE == 3, result.output
    assert "failed tetramethylsilane: molecule 'C[Si](C)(C)C': element 'Si'" in result.stderr
    assert [r["name"] for r in json.loads((tmp_path / "dg.json").read_text())] == ["ethanol", "tetramethylsilane"]


def test_solvation_of_a_batch_in_which_every_molecule_fails(tmp_path, monkeypatch, fake_hydration):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "mols.smi").write_text("C[Si](C)(C)C tms\n[SiH4] silane\n")
    result = run_in_process("solvation", "mols.smi")
    assert result.exit_code == 2
    assert result.stderr.splitlines()[-1] == "Error: no hydration free energy of 'mols.smi' could be computed"


def test_solvation_of_one_failing_molecule_is_one_line(tmp_path, monkeypatch, fake_hydration):
    monkeypatch.chdir(tmp_path)
    result = run_in_process("solvation", "C[Si](C)(C)C")
    assert result.exit_code == 2
    assert result.stderr == "Error: molecule 'C[Si](C)(C)C': element 'Si'\n"


def test_solvation_states_the_stereoisomer_it_computes(tmp_path, monkeypatch, fake_hydration):
    monkeypatch.chdir(tmp_path)
    result = run_in_process("solvation", "CC(O)CC", "-o", "dg.json")
    assert result.exit_code == 0, result.output
    assert fake_hydration == [["CC[C@@H](C)O"]]
    assert result.stderr == ("stereo CC(O)CC: CC(O)CC leaves stereo unassigned; computing CC[C@@H](C)O, the first "
                             "of its 2 stereoisomers (--stereo all enumerates them)\n")
    record = json.loads((tmp_path / "dg.json").read_text())
    assert (record["smiles"], record["isomeric_smiles"]) == ("CC(O)CC", "CC[C@@H](C)O")


def test_solvation_of_every_stereoisomer(tmp_path, monkeypatch, fake_hydration):
    monkeypatch.chdir(tmp_path)
    result = run_in_process("solvation", "CC(O)CC", "--stereo", "all", "-o", "dg.json")
    assert result.exit_code == 0, result.output
    assert fake_hydration == [["CC[C@@H](C)O", "CC[C@H](C)O"]] and result.stderr == ""
    records = json.loads((tmp_path / "dg.json").read_text())
    assert [r["name"] for r in records] == ["CC(O)CC [isomer 1/2]", "CC(O)CC [isomer 2/2]"]
    assert [(r["smiles"], r["isomeric_smiles"]) for r in records] == [("CC(O)CC", "CC[C@@H](C)O"),
                                                                     ("CC(O)CC", "CC[C@H](C)O")]


@pytest.mark.parametrize("command, message", [
    (["train", "conformers", "--smiles", "mols.smi", "--steps", "0"], "'--steps': 0 is not in the range x>=1"),
    (["train", "conformers", "--smiles", "mols.smi", "--samples", "0"], "'--samples': 0 is not in the range x>=1"),
    (["train", "conformers", "--smiles", "mols.smi", "--molecules-per-step", "0"], "'--molecules-per-step': 0"),
    (["train", "conformers", "--smiles", "mols.smi", "--learning-rate", "0"], "'--learning-rate': 0.0 is not in"),
    (["train", "conformers", "--smiles", "mols.smi", "--learning-rate", "-1e-3"], "'--learning-rate': -0.001"),
    (["train", "conformers", "--smiles", "mols.smi", "--hidden", "0"], "'--hidden': 0 is not in the range x>=1"),
    (["train", "conformers", "--smiles", "mols.smi", "--components", "0"], "'--components': 0 is not in"),
    (["train", "conformers", "--smiles", "mols.smi", "--temperature", "-300"], "'--temperature': -300.0 is not"),
    (["train", "conformers", "--smiles", "mols.smi"], "output 'model.pt' exists; pass --overwrite"),
    (["train", "timewarp", "--systems", "ala2", "--steps", "0"], "'--steps': 0 is not in the range x>=1"),
    (["train", "timewarp", "--systems", "ala2", "--batch-size", "0"], "'--batch-size': 0 is not in the range x>=1"),
    (["train", "timewarp", "--systems", "ala2", "--learning-rate", "0"], "'--learning-rate': 0.0 is not in"),
    (["train", "timewarp", "--systems", "ala2", "--hidden", "0"], "'--hidden': 0 is not in the range x>=1"),
    (["train", "timewarp", "--systems", "ala2", "--couplings", "0"], "'--couplings': 0 is not in the range x>=1"),
    (["train", "timewarp", "--systems", "ala2", "--acceptance-weight", "-1"], "'--acceptance-weight': -1.0 is not"),
    (["train", "timewarp", "--systems", "ala2"], "output 'model.pt' exists; pass --overwrite"),
])
def test_train_with_a_bad_option(tmp_path, command, message):
    (tmp_path / "mols.smi").write_text("CCO ethanol\n")
    (tmp_path / "model.pt").write_text("an earlier model")
    assert_one_line_error(molsamp(*command, "-o", "model.pt", cwd=tmp_path), message)
    assert (tmp_path / "model.pt").read_text() == "an earlier model"
