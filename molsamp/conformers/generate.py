"""Conformer ensembles from SMILES: torsions drawn from the model, made exact by importance weights or MH."""

from __future__ import annotations

__all__ = ["TORSION_MODES", "MODES", "DEFAULT_MODEL", "sample_torsions", "check_options", "generate"]

import dataclasses
import math
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from molsamp.analysis import kish_ess
from molsamp.conformers.md_jumps import sample_md_jumps
from molsamp.conformers.moves import TorsionStep
from molsamp.conformers.target import TorsionalTarget
from molsamp.conformers.torsions import rotatable_torsions
from molsamp.errors import InputError
from molsamp.kernels import MetropolisHastings
from molsamp.openmm_pool import MOLAR_GAS_CONSTANT
from molsamp.samplers import GeometricPath, annealed_smc, independence_metropolis
from molsamp.samples import Samples, systematic_resample
from molsamp.shipped import MODELS_DIR

if TYPE_CHECKING:
    from rdkit import Chem

    from molsamp.conformers.model import TorsionMixture, TorsionMixtureNet
    from molsamp.systems import System

TORSION_MODES = ("smc", "weighted", "mh", "unweighted")
"""Samplers of the torsional density on one base geometry. ``smc``: model samples annealed to the Boltzmann density
by sequential Monte Carlo with torsion moves (weighted, the most accurate); ``weighted``: importance-weighted model
samples; ``mh``: an independence Metropolis-Hastings chain with the model as proposal (equal weights);
``unweighted``: weighted samples resampled to equal weights. A molecule without rotatable torsions (benzene,
methane, acetate) has a single geometry in these modes, so its ``n`` conformers are copies of that one geometry
(equal weights, ESS ``n``, no acceptance rate); the ``md-jumps`` mode samples it by MD."""
MODES = ("md-jumps", *TORSION_MODES)
"""``md-jumps`` (the default of :func:`generate`): Langevin MD of all coordinates with model torsion jumps accepted by
Metropolis-Hastings (equal weights; bonds, angles and rings flexible; see :mod:`molsamp.conformers.md_jumps`); and
the :data:`TORSION_MODES`."""
DEFAULT_MODEL = MODELS_DIR / "torsion-mixture.pt"
"""The shipped pretrained torsion model."""
SMC_STEPS = 8
"""Annealing steps of the ``smc`` mode (beta_k = (k / SMC_STEPS)^2), each with two moves per torsion and particle."""
_OVERSAMPLE = 4  # weighted draws per output conformer in "unweighted" mode
_MAX_DRAWS_PER_SAMPLE = 50  # give up when clashes leave fewer clash-free draws than this allows


def _clash_free_draws(mixture: TorsionMixture, target: TorsionalTarget, n: int, generator: torch.Generator,
                      batch_size: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, int]:
    """``n`` clash-free draws from the model: angles, u and log q, and the number of attempts."""
    angles, energies, attempts = [], [], 0
    while sum(len(a) for a in angles) < n:
        if attempts >= _MAX_DRAWS_PER_SAMPLE * n:
            raise InputError(f"molecule {target.system.name!r}: fewer than 1 in {_MAX_DRAWS_PER_SAMPLE} model "
                             "samples is free of steric clashes; the model does not fit this molecule")
        batch = mixture.sample(batch_size, generator)
        u = target.energy(batch)
        keep = torch.isfinite(u)
        angles.append(batch[keep])
        energies.append(u[keep])
        attempts += batch_size
    angles, u = torch.cat(angles)[:n], torch.cat(energies)[:n]
    with torch.no_grad():
        log_q = mixture.log_prob(angles).double()
    return angles, u, log_q, attempts


def sample_torsions(mixture: TorsionMixture, target: TorsionalTarget, n: int, mode: str = "smc",
                    seed: int = 0, batch_size: int = 256) -> Samples:
    """``n`` torsion samples of ``target`` from the model ``mixture`` in one of :data:`TORSION_MODES`; without
    rotatable torsions, ``n`` copies of the target's one geometry (exact samples of a point mass).

    Returns :class:`~molsamp.samples.Samples` of torsion angles ``x: [n, T]`` (rad) with their reduced energies
    (kT), log model densities and normalised log importance weights, and in ``info``: ``ess`` (the Kish ESS of the
    model draws; for ``smc`` the smallest over the annealing steps, before resampling), ``acceptance`` (the MH
    acceptance rate of ``mh`` and ``smc``, else None), ``draws`` from the model (clashes included) and the OpenMM
    energy ``evaluations`` spent."""
    if mode not in TORSION_MODES:
        raise InputError(f"mode must be one of {TORSION_MODES}, got {mode!r}")
    if n < 1:
        raise InputError(f"the number of conformers must be positive, got {n}")
    generator = torch.Generator().manual_seed(seed)
    evaluations_before = target.n_evaluations
    if target.n_torsions == 0:
        angles = torch.zeros(n, 0, dtype=torch.float64)
        u = target.energy(angles[:1]).expand(n).clone()
        log_weights = torch.full((n,), -math.log(n), dtype=torch.float64)
        return Samples(angles, u, log_weights, torch.zeros(n, dtype=torch.float64),
                       info={"sampler": mode, "seed": seed, "ess": float(n), "acceptance": None, "draws": 0,
                             "evaluations": target.n_evaluations - evaluations_before})
    draws = n * _OVERSAMPLE if mode == "unweighted" else n
    angles, u, log_q, attempts = _clash_free_draws(mixture, target, draws, generator, batch_size)
    log_w = -u - log_q
    ess = kish_ess(log_w)
    acceptance = None
    if mode == "smc" and target.n_torsions > 0:
        def kernel(path: GeometricPath) -> MetropolisHastings:
            return MetropolisHastings(TorsionStep(mixture), path, n_steps=2 * target.n_torsions)

        betas = [(k / SMC_STEPS) ** 2 for k in range(1, SMC_STEPS + 1)]
        smc = annealed_smc(angles, mixture, target, kernel, betas, log_q=log_q, u=u, generator=generator)
        angles, log_q, u, log_weights, history = smc.x, smc.log_q, smc.u, smc.log_weights, smc.info["history"]
        index = torch.arange(n)
        ess = min(h["ess"] for h in history)  # conservative: resampling makes the final weights look perfect
        acceptance = sum(h["acceptance"] for h in history) / len(history)
    elif mode in ("weighted", "smc"):
        index, log_weights = torch.arange(n), log_w - torch.logsumexp(log_w, 0)
    else:
        if mode == "mh":
            index, acceptance = independence_metropolis(log_w, generator)
        else:
            index = systematic_resample(log_w, n, generator)
        log_weights = torch.full((n,), -math.log(n), dtype=torch.float64)
    return Samples(angles[index], u[index], log_weights, log_q[index],
                   info={"sampler": mode, "seed": seed, "ess": ess, "acceptance": acceptance, "draws": attempts,
                         "evaluations": target.n_evaluations - evaluations_before})


def _torsion_ensemble(system: System, model: TorsionMixtureNet, n: int, mode: str, seed: int,
                      relax_steps: int) -> Samples:
    from molsamp.conformers.features import molecule_graph

    target = TorsionalTarget(system, relax_steps=relax_steps)
    try:
        with torch.no_grad():
            mixture = model(molecule_graph(target.molecule, target.torsions))[0]
        samples = sample_torsions(mixture, target, n, mode=mode, seed=seed)
        angles = samples.x if target.n_torsions else samples.x[:1]  # no torsions: one geometry, n copies
        positions = target.relaxed_conformers(angles)[1] if relax_steps else target.conformers(angles)
    finally:
        target.close()
    return dataclasses.replace(samples, x=positions.expand(n, -1, -1), observables={"torsions": samples.x})


def _md_jump_ensemble(system: System, model: TorsionMixtureNet, n: int, seed: int) -> Samples:
    from molsamp.conformers.features import molecule_graph

    torsions = rotatable_torsions(system.molecule)
    with torch.no_grad():
        mixture = model(molecule_graph(system.molecule, torsions))[0]
    return sample_md_jumps(system, torsions, mixture, n, seed=seed)


def check_options(n: int, mode: str, temperature: float, relax_steps: int = 0) -> None:
    """Raise :class:`~molsamp.errors.InputError` unless ``n >= 1`` conformers, ``mode`` is one of :data:`MODES`,
    ``temperature > 0`` (K) and ``relax_steps >= 0`` (torsion modes only): the checks :func:`generate` makes before
    any work, for callers that want them before a batch."""
    if mode not in MODES:
        raise InputError(f"mode must be one of {MODES}, got {mode!r}")
    if n < 1:
        raise InputError(f"the number of conformers must be at least 1, got {n}")
    if not temperature > 0:
        raise InputError(f"temperature must be positive (K), got {temperature}")
    if relax_steps < 0:
        raise InputError(f"relax_steps must be >= 0, got {relax_steps}")
    if mode == "md-jumps" and relax_steps:
        raise InputError("relax_steps applies to the torsion modes; md-jumps relaxes every coordinate by MD")


def generate(
    smiles: str,
    n: int = 300,
    mode: str = "md-jumps",
    model: TorsionMixtureNet | str | Path | None = None,
    temperature: float = 300.0,
    solvent: str = "obc2",
    forcefield: str = "gaff2",
    seed: int = 0,
    cache_dir: str | Path | None = None,
    name: str | None = None,
    relax_steps: int = 0,
    stereo: str = "first",
) -> Chem.Mol:
    """A conformer ensemble of ``smiles`` following its Boltzmann distribution at ``temperature`` (K).

    Returns an RDKit Mol (explicit hydrogens) with ``n`` conformers (Å). Each conformer carries
    ``molsamp_energy_kJ_mol`` and ``molsamp_log_weight`` (normalised log importance weight; equal weights in the
    ``mh``, ``unweighted`` and ``md-jumps`` modes); the molecule carries ``molsamp_ess`` (see
    :func:`sample_torsions`; for ``md-jumps`` from the chains' torsion autocorrelation, or their energy
    autocorrelation without rotatable torsions), ``molsamp_mode``, ``molsamp_acceptance`` (``mh``, ``smc``,
    ``md-jumps`` with torsions), ``molsamp_torsions``, ``molsamp_seed``, ``molsamp_input_smiles`` (``smiles``) and
    ``molsamp_isomeric_smiles`` (the stereoisomer sampled: an unassigned stereocentre is fixed as
    :func:`molsamp.systems.from_smiles` fixes it with ``stereo``, with a
    :class:`~molsamp.stereo.StereoWarning`). ``relax_steps > 0`` samples the relaxed torsional energy and writes the
    relaxed geometries (see :class:`~molsamp.conformers.target.TorsionalTarget`); 0 keeps one rigid base geometry.
    A molecule without rotatable torsions gets plain MD in the ``md-jumps`` mode and ``n`` copies of its one
    geometry in the :data:`TORSION_MODES`.
    """
    from rdkit import Chem

    from molsamp.conformers.model import load_model
    from molsamp.systems import from_smiles

    check_options(n, mode, temperature, relax_steps)
    if not isinstance(model, torch.nn.Module):
        model = load_model(model or DEFAULT_MODEL)
    system = from_smiles(smiles, forcefield=forcefield, solvent=solvent, temperature=temperature,
                         cache_dir=cache_dir, name=name, stereo=stereo)
    if mode == "md-jumps":
        ensemble = _md_jump_ensemble(system, model, n, seed)
    else:
        ensemble = _torsion_ensemble(system, model, n, mode, seed, relax_steps)
    kT = MOLAR_GAS_CONSTANT * system.temperature  # kJ/mol
    molecule = Chem.Mol(system.molecule)
    molecule.RemoveAllConformers()
    molecule.SetProp("_Name", name or smiles)
    for x, u, log_weight in zip(ensemble.x.double().numpy() * 10.0, ensemble.u.tolist(),
                                ensemble.log_weights.tolist()):
        conformer = Chem.Conformer(molecule.GetNumAtoms())
        conformer.SetPositions(x)
        conformer.SetDoubleProp("molsamp_energy_kJ_mol", u * kT)
        conformer.SetDoubleProp("molsamp_log_weight", log_weight)
        molecule.AddConformer(conformer, assignId=True)
    molecule.SetDoubleProp("molsamp_ess", ensemble.info["ess"])
    molecule.SetProp("molsamp_mode", mode)
    molecule.SetIntProp("molsamp_torsions", ensemble.observables["torsions"].shape[1])
    molecule.SetIntProp("molsamp_seed", seed)
    molecule.SetProp("molsamp_input_smiles", smiles)
    molecule.SetProp("molsamp_isomeric_smiles", system.smiles)
    if ensemble.info["acceptance"] is not None:
        molecule.SetDoubleProp("molsamp_acceptance", ensemble.info["acceptance"])
    return molecule
