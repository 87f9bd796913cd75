"""Conformer generation is exact: importance weights and the MH chain reproduce a known torsional density from a
deliberately wrong proposal; ``generate`` returns an RDKit ensemble whose energies are OpenMM's, and SDF files."""

import math
import re

import numpy as np
import pytest
import torch
from rdkit import Chem

from molsamp.analysis import js_divergence, kish_ess, time_series_ess, torsion_histogram
from molsamp.conformers import (MODES, TORSION_MODES, TorsionalTarget, generate, read_smiles, sample_torsions,
                                write_sdf)
from molsamp.conformers.md_jumps import FRAMES_PER_CHAIN
from molsamp.conformers.model import TorsionMixture, TorsionMixtureNet
from molsamp.errors import InputError
from molsamp.stereo import StereoWarning, stereoisomers
from molsamp.systems import from_smiles
from molsamp.testing import exact_bin_masses

BINS = 36


class CosineTorsionTarget(TorsionalTarget):
    """Butane's torsional target with the OpenMM energy replaced by u(theta) = a cos(theta) + b cos(3 theta) (kT):
    three wells (trans at pi, gauche at +-pi/3) whose exact density is known."""

    def __init__(self, system, a=1.0, b=1.5):
        super().__init__(system, minimise_steps=0, n_workers=0)
        self.a, self.b = a, b

    def energy(self, angles):
        theta = torch.as_tensor(angles, dtype=torch.float64)[:, 0]
        return self.a * torch.cos(theta) + self.b * torch.cos(3 * theta)


def bin_masses(log_density):
    """Probability of each of :data:`BINS` bins over (-pi, pi] of the density exp(log_density) (any constant) of
    torsion angles ``[B, 1]``."""
    return exact_bin_masses(lambda theta: log_density(theta[:, None]), np.linspace(-math.pi, math.pi, BINS + 1))


# A proposal that misplaces the wells: its histogram is far from the target's (JS ~ 0.2).
WRONG = TorsionMixture(torch.tensor([[0.0, 0.5]]), torch.tensor([[0.6, 2.2]]), torch.tensor([[2.0, 1.5]]))
# A proposal centred on the target's highest barrier: large weights near trans, slow MH mixing (JS ~ 0.37).
VERY_WRONG = TorsionMixture(torch.tensor([[0.0]]), torch.tensor([[0.0]]), torch.tensor([[2.0]]))


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    """One parameter cache for the whole session (each test module asks for the same folder)."""
    return tmp_path_factory.getbasetemp() / "molsamp-cache"


@pytest.fixture(scope="module")
def butane(cache):
    return CosineTorsionTarget(from_smiles("CCCC", cache_dir=cache))


@pytest.fixture(scope="module")
def exact(butane):
    return bin_masses(lambda theta: -butane.energy(theta))


def test_the_proposal_alone_is_far_from_the_target(exact):
    assert js_divergence(bin_masses(WRONG.log_prob), exact) > 0.1
    assert js_divergence(bin_masses(VERY_WRONG.log_prob), exact) > 0.3


@pytest.mark.parametrize("mode", TORSION_MODES)
def test_every_mode_reproduces_the_exact_density_from_a_wrong_proposal(butane, exact, mode):
    samples = sample_torsions(WRONG, butane, 20000, mode=mode, seed=1)
    assert samples.x.shape == (20000, 1) and samples.log_weights.shape == (20000,)
    assert torch.logsumexp(samples.log_weights, 0).item() == pytest.approx(0.0, abs=1e-9)
    torch.testing.assert_close(samples.u, butane.energy(samples.x))
    histogram = torsion_histogram(samples.x[:, 0], BINS, log_weights=samples.log_weights)
    # 20000 draws: sampling noise alone gives JS ~ 1e-3 (MH, correlated) or less; the proposal is at 0.2.
    assert js_divergence(histogram, exact).item() < 0.01
    if mode in ("mh", "smc"):  # the chain / the SMC moves report their acceptance rate
        assert 0.1 < samples.info["acceptance"] < 1
    else:
        assert samples.info["acceptance"] is None
    if mode in ("mh", "unweighted"):  # equal weights
        assert torch.allclose(samples.log_weights, torch.full((20000,), -math.log(20000), dtype=torch.float64))
    assert samples.info["draws"] >= (4 * 20000 if mode == "unweighted" else 20000)


def test_mh_is_exact_even_with_a_badly_mismatched_proposal(butane, exact):
    samples = sample_torsions(VERY_WRONG, butane, 60000, mode="mh", seed=2)
    assert samples.info["acceptance"] < 0.25  # it mixes slowly ...
    histogram = torsion_histogram(samples.x[:, 0], BINS)
    assert js_divergence(histogram, exact).item() < 0.01  # ... but converges to the right answer


def test_weighted_samples_estimate_the_mean_energy(butane, exact):
    samples = sample_torsions(WRONG, butane, 20000, mode="weighted", seed=3)
    estimate = (samples.log_weights.exp() * samples.u).sum().item()
    width = 2 * math.pi / 20000
    theta = -math.pi + width * (torch.arange(20000, dtype=torch.float64) + 0.5)
    u = butane.energy(theta[:, None])
    expected = ((-u).exp() * u).sum().item() / (-u).exp().sum().item()
    assert estimate == pytest.approx(expected, abs=0.05)
    assert 1000 < samples.info["ess"] < 20000


def test_forbidden_torsions_are_never_sampled(butane):
    class Forbidden(CosineTorsionTarget):
        """u = +inf for |theta| < 1, like a steric clash."""

        def energy(self, angles):
            u = super().energy(angles)
            return torch.where(torch.as_tensor(angles)[:, 0].abs() < 1, math.inf, u)

    target = Forbidden(butane.system)
    for mode in TORSION_MODES:
        samples = sample_torsions(WRONG, target, 2000, mode=mode, seed=0)
        assert (samples.x.abs() >= 1).all() and torch.isfinite(samples.u).all()


def test_a_proposal_that_only_clashes_is_an_input_error(butane):
    class AlwaysClashes(CosineTorsionTarget):
        def energy(self, angles):
            return torch.full((len(angles),), math.inf, dtype=torch.float64)

    with pytest.raises(InputError, match="molecule 'CCCC': fewer than 1 in 50 model samples is free of steric"):
        sample_torsions(WRONG, AlwaysClashes(butane.system), 2)


@pytest.mark.parametrize("options, message", [({"mode": "exact"}, "mode must be one of"),
                                              ({"n": 0}, "number of conformers must be positive")])
def test_bad_sampling_options(butane, options, message):
    with pytest.raises(InputError, match=message):
        sample_torsions(WRONG, butane, **{"n": 10, **options})


# ---- generate: SMILES in, RDKit ensemble out -------------------------------------------------------------------


@pytest.fixture(scope="module")
def network():
    """A small untrained network: the ensemble is still exact, only less efficient."""
    torch.manual_seed(0)
    return TorsionMixtureNet(hidden=16, layers=1, components=2).eval()


@pytest.fixture(scope="module")
def ensemble(network, cache):
    return generate("CCCO", n=20, mode="weighted", model=network, seed=5, cache_dir=cache)


def conformer_props(molecule, key):
    return np.array([c.GetDoubleProp(key) for c in molecule.GetConformers()])


def test_generate_returns_a_weighted_ensemble(ensemble):
    assert ensemble.GetNumConformers() == 20
    assert ensemble.GetNumAtoms() == 12  # explicit hydrogens
    assert ensemble.GetProp("_Name") == "CCCO"
    energies = conformer_props(ensemble, "molsamp_energy_kJ_mol")
    log_weights = conformer_props(ensemble, "molsamp_log_weight")
    assert np.isfinite(energies).all() and np.isfinite(log_weights).all()
    assert np.logaddexp.reduce(log_weights) == pytest.approx(0.0, abs=1e-9)
    assert ensemble.GetDoubleProp("molsamp_ess") == pytest.approx(kish_ess(torch.as_tensor(log_weights)), rel=1e-6)
    assert ensemble.GetProp("molsamp_mode") == "weighted"
    assert ensemble.GetIntProp("molsamp_torsions") == 2 and ensemble.GetIntProp("molsamp_seed") == 5
    assert not ensemble.HasProp("molsamp_acceptance")


def test_conformer_energies_are_the_openmm_energies(ensemble, cache):
    system = from_smiles("CCCO", cache_dir=cache)
    assert [a.GetSymbol() for a in ensemble.GetAtoms()] == [a.element.symbol for a in system.topology.atoms]
    x = torch.as_tensor(np.stack([c.GetPositions() for c in ensemble.GetConformers()]) / 10.0)  # Å -> nm
    with system.target(n_workers=0, platform="Reference") as target:
        expected = target.energy(x).numpy() * target.kT
    energies = conformer_props(ensemble, "molsamp_energy_kJ_mol")
    np.testing.assert_allclose(energies, expected, rtol=1e-3, atol=1e-3 * np.abs(expected).max())


def test_the_same_seed_gives_the_same_ensemble(ensemble, network, cache):
    again = generate("CCCO", n=20, mode="weighted", model=network, seed=5, cache_dir=cache)
    other = generate("CCCO", n=20, mode="weighted", model=network, seed=6, cache_dir=cache)
    positions = [np.stack([c.GetPositions() for c in m.GetConformers()]) for m in (ensemble, again, other)]
    np.testing.assert_array_equal(positions[0], positions[1])
    assert not np.allclose(positions[0], positions[2])


def test_relaxed_ensemble_writes_relaxed_geometries_with_their_energies(network, cache):
    relaxed = generate("CCCO", n=10, mode="weighted", model=network, seed=5, cache_dir=cache, relax_steps=10)
    rigid = generate("CCCO", n=10, mode="weighted", model=network, seed=5, cache_dir=cache)
    system = from_smiles("CCCO", cache_dir=cache)
    x = torch.as_tensor(np.stack([c.GetPositions() for c in relaxed.GetConformers()]) / 10.0)  # Å -> nm
    with system.target(n_workers=0, platform="Reference") as target:
        expected = target.energy(x).numpy() * target.kT
    energies = conformer_props(relaxed, "molsamp_energy_kJ_mol")
    np.testing.assert_allclose(energies, expected, rtol=1e-3, atol=1e-3 * np.abs(expected).max())
    assert energies.mean() < conformer_props(rigid, "molsamp_energy_kJ_mol").mean()


@pytest.mark.parametrize("mode", MODES)
def test_every_mode_gives_normalised_weights(network, cache, mode):
    molecule = generate("CCCO", n=20, mode=mode, model=network, cache_dir=cache)
    assert molecule.GetNumConformers() == 20 and molecule.GetProp("molsamp_mode") == mode
    log_weights = conformer_props(molecule, "molsamp_log_weight")
    assert np.logaddexp.reduce(log_weights) == pytest.approx(0.0, abs=1e-9)
    assert np.isfinite(conformer_props(molecule, "molsamp_energy_kJ_mol")).all()
    if mode in ("mh", "unweighted", "md-jumps"):
        np.testing.assert_allclose(log_weights, -math.log(20), rtol=1e-12)
    assert molecule.HasProp("molsamp_acceptance") == (mode in ("mh", "smc", "md-jumps"))
    if molecule.HasProp("molsamp_acceptance"):
        assert 0.0 <= molecule.GetDoubleProp("molsamp_acceptance") <= 1.0


@pytest.mark.parametrize("smiles, fragments", [
    ("C1CC", ["invalid SMILES 'C1CC'"]),
    ("C[Si](C)(C)C", ["'C[Si](C)(C)C'", "element 'Si'"]),
    ("", ["SMILES must be a non-empty string", "''"]),
])
def test_bad_molecules_raise_input_errors_that_name_them(network, cache, smiles, fragments):
    with pytest.raises(InputError) as error:
        generate(smiles, n=5, model=network, cache_dir=cache)
    for fragment in fragments:
        assert fragment in str(error.value)


def test_write_sdf_writes_every_conformer_with_its_properties(ensemble, tmp_path):
    path = write_sdf([ensemble], tmp_path / "out.sdf")
    assert path == tmp_path / "out.sdf"
    assert [p.name for p in tmp_path.iterdir()] == ["out.sdf"]  # the temporary file was renamed
    records = list(Chem.SDMolSupplier(str(path), removeHs=False))
    assert len(records) == 20 and all(r is not None and r.GetNumAtoms() == 12 for r in records)
    for record, conformer in zip(records, ensemble.GetConformers()):
        for key in ("molsamp_energy_kJ_mol", "molsamp_log_weight"):
            assert float(record.GetProp(key)) == pytest.approx(conformer.GetDoubleProp(key), abs=1e-6)
        np.testing.assert_allclose(record.GetConformer().GetPositions(), conformer.GetPositions(), atol=1e-4)
        assert record.GetProp("_Name") == "CCCO" and float(record.GetProp("molsamp_ess")) >= 1


def test_write_sdf_into_a_missing_folder(ensemble, tmp_path):
    with pytest.raises(InputError, match="folder '.*missing' does not exist"):
        write_sdf([ensemble], tmp_path / "missing" / "out.sdf")


def test_read_smiles_from_files_and_strings(tmp_path):
    (tmp_path / "mols.smi").write_text("# a comment\nCCO ethanol\n\nCCCC\n")
    assert read_smiles(tmp_path / "mols.smi") == [("ethanol", "CCO"), ("CCCC", "CCCC")]
    (tmp_path / "mols.csv").write_text("name,smiles\nethanol,CCO\n,CCCC\n")
    assert read_smiles(str(tmp_path / "mols.csv")) == [("ethanol", "CCO"), ("CCCC", "CCCC")]
    assert read_smiles("CCO") == [("CCO", "CCO")]


@pytest.mark.parametrize("content, suffix, message", [
    (None, ".smi", "does not exist"),
    ("# nothing here\n", ".smi", "no molecules in the file"),
    ("name,structure\nethanol,CCO\n", ".csv", "needs a 'smiles' column"),
])
def test_read_smiles_errors(tmp_path, content, suffix, message):
    path = tmp_path / f"mols{suffix}"
    if content is not None:
        path.write_text(content)
    with pytest.raises(InputError, match=message):
        read_smiles(path)
    with pytest.raises(InputError, match="empty input"):
        read_smiles("  ")


# ---- molecules without rotatable torsions, options, stereo ---------------------------------------------------------

RIGID = {"benzene": "c1ccccc1", "methane": "C", "acetate": "CC(=O)[O-]", "methylammonium": "C[NH3+]"}


@pytest.mark.parametrize("smiles", RIGID.values(), ids=RIGID.keys())
def test_md_jumps_samples_a_molecule_without_rotatable_torsions_by_md_alone(network, cache, smiles):
    molecule = generate(smiles, n=10, model=network, cache_dir=cache, seed=1)
    assert molecule.GetNumConformers() == 10 and molecule.GetIntProp("molsamp_torsions") == 0
    positions = np.stack([c.GetPositions() for c in molecule.GetConformers()])
    assert len({x.tobytes() for x in positions}) == 10  # MD moves every coordinate
    assert np.isfinite(conformer_props(molecule, "molsamp_energy_kJ_mol")).all()
    np.testing.assert_allclose(conformer_props(molecule, "molsamp_log_weight"), -math.log(10), rtol=1e-12)
    assert not molecule.HasProp("molsamp_acceptance")  # no jump was offered
    assert 1.0 <= molecule.GetDoubleProp("molsamp_ess") <= 10.0


def test_without_torsions_the_md_jumps_ess_is_that_of_the_energy(network, cache):
    molecule = generate("c1ccccc1", n=64, model=network, cache_dir=cache, seed=2)
    energies = conformer_props(molecule, "molsamp_energy_kJ_mol")
    chains = 64 // FRAMES_PER_CHAIN  # 4 chains of 16 frames, pooled
    expected = time_series_ess(torch.as_tensor(energies).reshape(chains, -1, 1))[0].item()
    assert molecule.GetDoubleProp("molsamp_ess") == pytest.approx(min(expected, 64.0), rel=1e-9)


@pytest.mark.parametrize("mode", TORSION_MODES)
def test_torsion_modes_keep_the_one_geometry_of_a_molecule_without_rotatable_torsions(network, cache, mode):
    molecule = generate("c1ccccc1", n=5, mode=mode, model=network, cache_dir=cache)
    positions = np.stack([c.GetPositions() for c in molecule.GetConformers()])
    assert positions.shape == (5, 12, 3) and (positions == positions[0]).all()
    energies = conformer_props(molecule, "molsamp_energy_kJ_mol")
    assert np.isfinite(energies).all() and (energies == energies[0]).all()
    np.testing.assert_allclose(conformer_props(molecule, "molsamp_log_weight"), -math.log(5), rtol=1e-12)
    assert molecule.GetDoubleProp("molsamp_ess") == 5.0  # five exact samples of a single geometry
    assert not molecule.HasProp("molsamp_acceptance") and molecule.GetIntProp("molsamp_torsions") == 0


@pytest.mark.parametrize("options, message", [
    ({"n": 0}, "the number of conformers must be at least 1, got 0"),
    ({"temperature": 0.0}, "temperature must be positive (K), got 0.0"),
    ({"temperature": -300.0}, "temperature must be positive (K), got -300.0"),
    ({"mode": "exact"}, "mode must be one of"),
    ({"relax_steps": 5}, "relax_steps applies to the torsion modes"),
])
def test_bad_generate_options_are_input_errors_before_any_work(network, tmp_path, options, message):
    with pytest.raises(InputError, match=re.escape(message)):
        generate("CCO", model=network, cache_dir=tmp_path / "cache", **options)
    assert not (tmp_path / "cache").exists()  # nothing was parametrised


def test_the_stereoisomer_sampled_is_recorded(network, cache, tmp_path):
    with pytest.warns(StereoWarning, match=re.escape("'CC(O)CC'")):
        molecule = generate("CC(O)CC", n=5, mode="weighted", model=network, cache_dir=cache)
    assert molecule.GetProp("molsamp_input_smiles") == "CC(O)CC"
    assert molecule.GetProp("molsamp_isomeric_smiles") == stereoisomers("CC(O)CC")[0]
    records = list(Chem.SDMolSupplier(str(write_sdf([molecule], tmp_path / "out.sdf"))))
    assert {r.GetProp("molsamp_isomeric_smiles") for r in records} == {stereoisomers("CC(O)CC")[0]}
    assert "@" in records[0].GetProp("molsamp_isomeric_smiles")
