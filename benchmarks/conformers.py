"""Conformer benchmark: torsion distributions of molsamp, RDKit ETKDG and short MD against long MD references.

For each benchmark molecule with a reference in ``data/conformer_references/`` (made by
``benchmarks/conformer_references.py``; none of these molecules is in the torsion model's training set), in one run:
- molsamp in the ``smc`` (weighted), ``weighted`` (plain importance sampling), ``mh`` and ``md-jumps`` (Langevin MD
  of all coordinates with model torsion jumps) modes, ``--n`` conformers;
- the same MD with jumps drawn from a flat proposal instead of the model (``md-uniform-jumps``: what the learned
  model adds);
- RDKit ETKDG, the same number of conformers, raw and after MMFF94 minimisation;
- plain Langevin MD (same force field) run for the same wall time as molsamp's default ``md-jumps`` mode, a frame
  per ps.
Figure of merit: Jensen-Shannon divergence (nats, 36 bins) of each heavy-atom rotatable torsion against the
reference, averaged over torsions (``js``), and over the reference's converged torsions only (``js_converged``: the
two halves of the reference agree within JS 0.02). Torsions of symmetric rotors (a phenyl ring flip maps the
molecule onto itself) are compared modulo their symmetry turn (``Torsions.symmetry``,
``molsamp.analysis.fold_torsions``): plain MD rarely flips such a ring, but the flipped states are the same
conformers. Plain MD never leaves its starting state on some torsions (hindered N-alkyl rotors of amides, crowded
aryl rotors) while its halves agree, so where ``data/conformer_references/uniform_jumps/`` has a second reference
(MD with model-free uniform torsion jumps and Metropolis-Hastings, which crosses those barriers), the divergence
against it is reported too (``js_uniform_jumps``). Also wall time per conformer and per effective sample, against
the reference MD's wall time per effective sample (torsion ESS from autocorrelation, chains pooled as
Stan pools them, the reference MD split into halves as Stan splits a chain; the reference's MD steps timed at the
speed of the plain MD of this run, so both sides of the ratio come from the same machine and run). Where plain MD
never leaves one state of a torsion, its ESS counts the wiggle within that state, so the chain samplers also get
the ratio on the torsions that MD samples right (``ratio_on_torsions_md_samples_right``: those where the MD and
uniform-jump references agree within JS 0.02). One JSON line per molecule and method, then a summary line.
Usage: ``python benchmarks/conformers.py [--n 500]``.
"""

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch
from rdkit import Chem

from molsamp.analysis import compute_dihedrals, fold_torsions, torsion_ess, torsion_js
from molsamp.conformers import TorsionalTarget, read_smiles, sample_md_jumps, sample_torsions
from molsamp.conformers.features import molecule_graph
from molsamp.conformers.etkdg import etkdg_conformers
from molsamp.conformers.generate import DEFAULT_MODEL
from molsamp.conformers.model import TorsionMixture, load_model
from molsamp.forcefields import parametrize
from molsamp.md import OpenMMEngine
from molsamp.openmm_pool import select_platform
from molsamp.systems import from_smiles

ROOT = Path(__file__).resolve().parent.parent
REFERENCES = ROOT / "data" / "conformer_references"


def _recipe(reference: np.lib.npyio.NpzFile) -> str | None:
    """The parametrisation recipe a reference was made with (``Parameters.recipe``); None if it predates recipes: made
    with ``parmchk2 -s gaff2``, which fell back to GAFF 1 parameters in 8 of 40 runs here, so uncertain physics."""
    return str(reference["recipe"]) if "recipe" in reference.files else None


def js_per_torsion(angles: np.ndarray, reference: np.ndarray, log_weights=None) -> np.ndarray:
    """JS of each torsion against the reference (both with symmetric rotors folded, see ``fold_torsions``)."""
    return np.array([torsion_js(angles[:, [t]], reference[:, [t]], log_weights_a=log_weights)
                     for t in range(reference.shape[1])])


def etkdg_angles(molecule: Chem.Mol, quads: np.ndarray, n: int, seed: int, minimise: bool) -> tuple[np.ndarray, float]:
    start = time.perf_counter()
    xyz = etkdg_conformers(molecule, n, seed, minimise) / 10.0
    seconds = time.perf_counter() - start
    return compute_dihedrals(xyz, quads).numpy(), seconds


def md_angles(system, quads: np.ndarray, seconds: float, seed: int) -> tuple[np.ndarray, float]:
    """Torsions every ps of Langevin MD run for ``seconds`` of wall time (minimisation and set-up included), on the
    platform molsamp picks for the molecule, and the wall time per MD step (s, set-up excluded)."""
    start = time.perf_counter()
    engine = OpenMMEngine(system, seed, select_platform(None, system.openmm_system), state=None)
    steps_per_frame = round(1.0 / system.timestep)
    frames, md_start = [], time.perf_counter()
    while time.perf_counter() - start < seconds or len(frames) < 2:
        engine.step(steps_per_frame)
        frames.append(engine.observe()[0])
    seconds_per_step = (time.perf_counter() - md_start) / (len(frames) * steps_per_frame)
    return compute_dihedrals(np.array(frames), quads).numpy(), seconds_per_step


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=500)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--model", type=Path, default=DEFAULT_MODEL)
    parser.add_argument("--only", help="Comma-separated molecule names to run (default: all with a reference).")
    args = parser.parse_args()
    model = load_model(args.model)
    rows = []
    for name, smiles in read_smiles(ROOT / "data" / "drugs" / "benchmark.smi"):
        if not (REFERENCES / f"{name}.npz").is_file() or (args.only and name not in args.only.split(",")):
            continue
        ref = np.load(REFERENCES / f"{name}.npz")
        reference, quads = ref["angles"], ref["torsions"]
        system = from_smiles(smiles, name=name)
        target = TorsionalTarget(system)
        heavy = np.flatnonzero(target.torsions.heavy)
        assert np.array_equal(target.torsions.atoms[heavy], quads), "reference torsions differ from the sampler's"
        symmetry = target.torsions.symmetry[heavy]
        reference = fold_torsions(reference, symmetry)
        jumps_file = REFERENCES / "uniform_jumps" / f"{name}.npz"
        jumps = np.load(jumps_file) if jumps_file.is_file() else None
        jumps_reference = fold_torsions(jumps["angles"], symmetry) if jumps is not None else None
        recipes = {"recipe": parametrize(system.smiles).recipe, "reference_recipe": _recipe(ref),
                   "uniform_jumps_reference_recipe": None if jumps is None else _recipe(jumps)}
        half = len(reference) // 2
        converged = js_per_torsion(reference[:half], reference[half:]) <= 0.02

        molecule_rows = []

        def record(method: str, angles: np.ndarray, seconds: float, ess: float | None, extra: dict | None = None,
                   log_weights=None) -> None:
            angles = fold_torsions(angles, symmetry)
            js = js_per_torsion(angles, reference, log_weights)
            row = {"benchmark": "conformers", "name": name, "method": method, **recipes, "torsions": len(quads),
                   "js": round(float(js.mean()), 4),
                   "js_converged": round(float(js[converged].mean()), 4) if converged.any() else None,
                   "js_per_torsion": [round(float(v), 4) for v in js]}
            if jumps_reference is not None:
                js = js_per_torsion(angles, jumps_reference, log_weights)
                row.update({"js_uniform_jumps": round(float(js.mean()), 4),
                            "js_uniform_jumps_per_torsion": [round(float(v), 4) for v in js]})
            row.update({"seconds": round(seconds, 2), "seconds_per_conformer": round(seconds / args.n, 5),
                        "seconds_per_effective_sample": None if not ess else round(seconds / ess, 5),
                        **(extra or {})})
            molecule_rows.append(row)

        with torch.no_grad():
            mixture = model(molecule_graph(target.molecule, target.torsions))[0]
        for mode in ("smc", "weighted", "mh"):
            start = time.perf_counter()
            samples = sample_torsions(mixture, target, args.n, mode=mode, seed=args.seed)
            seconds = time.perf_counter() - start
            info = samples.info
            record(f"molsamp-{mode}", samples.x[:, heavy].numpy(), seconds, info["ess"],
                   {"ess": round(info["ess"], 1), "energy_evaluations": info["evaluations"],
                    "acceptance": info["acceptance"]}, samples.log_weights if mode != "mh" else None)
        start = time.perf_counter()
        chains = sample_md_jumps(system, target.torsions, mixture, args.n, seed=args.seed)
        md_jumps_seconds = time.perf_counter() - start
        info = chains.info
        record("molsamp-md-jumps", chains.observables["torsions"][:, heavy].numpy(), md_jumps_seconds, info["ess"],
               {"ess": round(info["ess"], 1), "energy_evaluations": info["evaluations"],
                "acceptance": round(info["acceptance"], 3)})
        start = time.perf_counter()
        flat = sample_md_jumps(system, target.torsions, TorsionMixture.uniform(len(target.torsions)), args.n,
                               seed=args.seed)
        record("md-uniform-jumps", flat.observables["torsions"][:, heavy].numpy(), time.perf_counter() - start,
               flat.info["ess"], {"ess": round(flat.info["ess"], 1), "acceptance": round(flat.info["acceptance"], 3)})
        chain_torsion_ess = {"molsamp-md-jumps": chains.info["torsion_ess"][heavy].numpy(),
                             "md-uniform-jumps": flat.info["torsion_ess"][heavy].numpy()}
        for minimise in (False, True):
            angles, seconds = etkdg_angles(target.molecule, quads, args.n, args.seed, minimise)
            record("etkdg-mmff" if minimise else "etkdg", angles, seconds, None)
        md, md_seconds_per_step = md_angles(system, quads, md_jumps_seconds, args.seed)
        record("md-same-wall-time", md, md_jumps_seconds, None, {"frames": len(md)})
        target.close()
        reference_steps = float(ref["ns"]) * 1000.0 / system.timestep
        halves = torch.as_tensor(ref["angles"][: 2 * half]).reshape(2, half, -1)  # Stan's split chains
        md_ess = torsion_ess(halves).numpy()

        def md_seconds_per_ess(torsions: np.ndarray | slice = slice(None)) -> float:
            """The reference MD's wall time per effective sample of the slowest of ``torsions`` (default: all)."""
            return reference_steps * md_seconds_per_step / float(md_ess[torsions].min())

        # Torsions that plain MD samples right (its reference agrees with the barrier-crossing one): there its ESS
        # counts samples of the right distribution, elsewhere only the wiggle within one state.
        md_right = (js_per_torsion(jumps_reference, reference) <= 0.02 if jumps_reference is not None
                    else np.zeros(len(quads), dtype=bool))
        for row in molecule_rows:
            seconds_per_ess = row["seconds_per_effective_sample"]
            row["ratio_to_reference_md_per_effective_sample"] = (
                None if seconds_per_ess is None else round(seconds_per_ess / md_seconds_per_ess(), 5))
            if row["method"] in chain_torsion_ess:
                ess_right = chain_torsion_ess[row["method"]][md_right]
                row["torsions_md_samples_right"] = int(md_right.sum())
                row["ratio_on_torsions_md_samples_right"] = None if not md_right.any() else round(
                    row["seconds"] / float(ess_right.min()) / md_seconds_per_ess(md_right), 5)
            print(json.dumps(row), flush=True)
        rows.extend(molecule_rows)
    methods = sorted({r["method"] for r in rows})

    def mean(key: str) -> dict:
        return {m: round(float(np.mean([r[key] for r in rows if r["method"] == m and key in r])), 4)
                for m in methods if any(key in r for r in rows if r["method"] == m)}

    print(json.dumps({"benchmark": "conformers-summary", "molecules": len({r["name"] for r in rows}),
                      "mean_js": mean("js"), "mean_js_uniform_jumps": mean("js_uniform_jumps"),
                      "molecules_with_uniform_jumps_reference": len({r["name"] for r in rows
                                                                     if "js_uniform_jumps" in r})}))


if __name__ == "__main__":
    main()
