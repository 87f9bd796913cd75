"""Output files: written whole through a temporary file, with the usual permissions, nothing left behind."""

import json
import os
import stat

import numpy as np
import pytest

from molsamp.analysis import plot_torsion_marginals
from molsamp.files import atomic_path, atomic_write
from molsamp.md import run_md
from molsamp.peptide_jumps import run_jump_chains
from molsamp.systems import load


@pytest.fixture
def umask():
    """Run under umask 002: a new file is then 0o664, unlike both tempfile's 0o600 and a hard-coded 0o644."""
    previous = os.umask(0o002)
    yield
    os.umask(previous)


def modes(folder):
    return {path.name: oct(stat.S_IMODE(path.stat().st_mode)) for path in folder.iterdir()}


def test_atomic_path_gives_the_usual_permissions_even_when_the_writer_replaces_the_file(tmp_path, umask):
    with atomic_path(tmp_path / "table.csv") as temporary:
        assert temporary.parent == tmp_path and temporary.suffix == ".csv" and temporary.name.startswith(".")
        temporary.unlink()  # a writer that removes and recreates its output (as some libraries do)
        with open(os.open(temporary, os.O_WRONLY | os.O_CREAT, 0o600), "w") as file:
            file.write("a,b\n")
    atomic_write(tmp_path / "summary.json", json.dumps({"a": 1}))
    assert modes(tmp_path) == {"table.csv": "0o664", "summary.json": "0o664"}
    assert (tmp_path / "table.csv").read_text() == "a,b\n"


def test_a_failed_write_keeps_the_old_file_and_leaves_no_temporary_file(tmp_path):
    path = tmp_path / "result.json"
    path.write_text("old")
    with pytest.raises(RuntimeError, match="writer failed"):
        with atomic_path(path) as temporary:
            temporary.write_text("half")
            raise RuntimeError("writer failed")
    assert path.read_text() == "old" and list(tmp_path.iterdir()) == [path]


def test_every_output_kind_gets_the_usual_permissions(tmp_path, umask):
    dw4 = load("dw4")
    run_md(dw4, tmp_path / "md.h5", 0.1, 0.01)
    run_md(dw4, tmp_path / "md.dcd", 0.1, 0.01)
    run_jump_chains(load("ala2"), tmp_path / "chain.h5", 2, n_chains=2, md_steps=5, burn_in=0, progress=False,
                    plot=True)
    plot_torsion_marginals(np.random.default_rng(0).uniform(-np.pi, np.pi, (100, 2)), tmp_path / "torsions.png")
    outputs = ["md.h5", "md.dcd", "md.energies.csv", "chain.h5", "chain.h5.json", "chain.png", "torsions.png"]
    assert modes(tmp_path) == dict.fromkeys(outputs, "0o664")  # and no temporary or partial files left
