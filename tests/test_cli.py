"""The molsamp command: light start-up, help everywhere, one-line errors with exit status 2, MD then analysis."""

import json
import subprocess
import sys

import pytest


def molsamp(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "molsamp.cli", *map(str, args)], capture_output=True, text=True,
                          cwd=cwd, timeout=600)


def assert_one_line_error(result, *fragments):
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
    for fragment in fragments:
        assert fragment in lines[0]


def test_cli_import_is_light():
    code = "import sys, molsamp.cli; print(sorted({'torch', 'openmm', 'mdtraj', 'matplotlib'} & set(sys.modules)))"
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
