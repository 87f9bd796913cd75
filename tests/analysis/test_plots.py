import numpy as np
import pytest

from molsamp.analysis import plot_ramachandran, plot_torsion_marginals
from molsamp.errors import InputError

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def samples(size: int, seed: int) -> np.ndarray:
    """(phi, psi) pairs around the alpha-helix and beta basins, radians."""
    rng = np.random.default_rng(seed)
    centres = np.where(rng.random((size, 1)) < 0.6, [-1.1, -0.8], [-2.4, 2.4])
    return rng.vonmises(centres, 6.0)


def assert_png(path, folder):
    data = path.read_bytes()
    assert len(data) > 1000 and data.startswith(PNG_SIGNATURE)
    assert sorted(p.name for p in folder.iterdir()) == [path.name]  # no temporary file left behind


def test_ramachandran_png(tmp_path):
    phi, psi = samples(3000, seed=0).T
    ref_phi, ref_psi = samples(3000, seed=1).T
    path = plot_ramachandran(
        phi, psi, tmp_path / "rama.png", log_weights=np.zeros(3000), reference=(ref_phi, ref_psi), title="test"
    )
    assert path == tmp_path / "rama.png"
    assert_png(path, tmp_path)


def test_ramachandran_overwrites_existing_file(tmp_path):
    path = tmp_path / "rama.png"
    path.write_bytes(b"old")
    phi, psi = samples(500, seed=2).T
    plot_ramachandran(phi, psi, str(path), bins=36)
    assert_png(path, tmp_path)


def test_torsion_marginals_png(tmp_path):
    angles = samples(2000, seed=3)
    path = plot_torsion_marginals(
        np.concatenate([angles, angles[:, :1]], axis=1),
        tmp_path / "marginals.png",
        reference=np.concatenate([samples(2000, seed=4), np.zeros((2000, 1))], axis=1),
        labels=["phi", "psi", "phi again"],
    )
    assert_png(path, tmp_path)


def test_missing_folder_is_an_input_error(tmp_path):
    phi, psi = samples(100, seed=5).T
    with pytest.raises(InputError, match="does not exist"):
        plot_ramachandran(phi, psi, tmp_path / "missing" / "rama.png")
    with pytest.raises(InputError, match="labels has 1 entries"):
        plot_torsion_marginals(samples(100, seed=6), tmp_path / "m.png", labels=["phi"])
