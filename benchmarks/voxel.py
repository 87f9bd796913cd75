"""Voxel walk-jump generation: quality of generated molecules, and walk-jump against plain Langevin on a toy with an
exact score. Prints one JSON line per figure.

- ``molecules``: ``--n`` molecules from the denoiser (default: the shipped models/voxel-qm9.pt) for each number of
  measurements in ``--measurements``: validity, uniqueness, novelty against the model's training set, atom and
  molecule stability (EDM's definitions), seconds per molecule. Beside them, the same metrics of held-out QM9
  molecules (data/qm9/test.npz) read back through the same voxel grid and read-out: the ceiling of the
  representation and the metrics (the data themselves give 99.4% atom and 95.9% molecule stability); and up to 100
  of them noised at the walk's sigma and denoised once, what a jump near a real molecule gives.
- ``toy``: 8 Gaussians (sigma 0.3) on a ring of radius 4 in 2D, whose smoothed densities and denoisers are exact:
  walk-jump (sigma 1, 1 and 4 measurements) against underdamped Langevin on p itself with the same number of score
  evaluations and the same start (every chain in one mode). W2 to p (exact, equal-size samples), W2 to the exact
  law of the jump, and mode coverage (modes holding at least half their share of the samples).

Usage: ``python benchmarks/voxel.py [molecules|toy|all] [--n 1000] [--measurements 1,4] [--walk-steps 100]``.
Timings are of this machine and its load; compare them as ratios.

Anchor (VoxMol, Pinheiro et al., NeurIPS 2023, Table 1, QM9 with hydrogens, as quoted in issue 23; 32^3 grid of
0.25 Å, 111M-parameter U-Net, 500 epochs on 2 GPUs): about 99% atom stability, 89% molecule stability, 99% validity,
92% uniqueness.
"""

import argparse
import json
import math
import time
from pathlib import Path

import torch

from molsamp.analysis import wasserstein2
from molsamp.kernels import ChainState
from molsamp.voxel import GaussianMixture, MoleculeSet, UnderdampedWalk, generate, load_denoiser, walk_jump
from molsamp.voxel.metrics import quality_report
from molsamp.voxel.readout import read_grid

ROOT = Path(__file__).resolve().parents[1]
ANCHOR = {"source": "VoxMol (Pinheiro et al. 2023) Table 1, QM9, as quoted in issue 23", "atom_stability": 0.99,
          "molecule_stability": 0.89, "validity": 0.99, "uniqueness": 0.92}


def read_report(densities, grid) -> dict:
    """Metrics of the molecules read out of ``densities`` (an iterable of grids)."""
    atoms, read = [], []
    for density in densities:
        elements, found, molecule = read_grid(density, grid)
        atoms.append((elements, found))
        read.append(molecule)
    return quality_report(atoms, read)


def held_out_grids(molecules: MoleculeSet, grid, n: int, generator: torch.Generator, start: int = 0) -> torch.Tensor:
    """Held-out molecules ``start`` to ``start + n`` voxelised in random orientations."""
    from molsamp.voxel.grids import augment

    types, positions = molecules.batch(range(start, start + n), grid)
    return grid.voxelize(types, augment(types, positions, 0.0, generator))


def noisy_held_out_grids(denoiser, molecules: MoleculeSet, n: int, seed: int) -> torch.Tensor:
    """``n`` held-out molecules voxelised and noised at the walk's sigma."""
    generator = torch.Generator().manual_seed(seed)
    clean = held_out_grids(molecules, denoiser.grid, n, generator)
    return clean + denoiser.sigma * torch.randn(clean.shape, generator=generator)


def read_back(molecules: MoleculeSet, grid, n: int) -> dict:
    """Metrics of ``n`` held-out molecules voxelised (random orientation) and read out again."""
    generator = torch.Generator().manual_seed(0)
    begin = time.perf_counter()
    report = read_report((density for start in range(0, n, 50)
                          for density in held_out_grids(molecules, grid, min(50, n - start), generator, start)), grid)
    report["seconds_per_molecule"] = (time.perf_counter() - begin) / n
    return report


def rotation_error(denoiser, molecules: MoleculeSet, n: int = 16) -> float:
    """Relative change of the denoiser's output under a 90-degree grid rotation of noisy test grids,
    |f(R y) - R f(y)| / |f(y)| (0 for an equivariant denoiser; this one is not built to be)."""
    noisy = noisy_held_out_grids(denoiser, molecules, n, seed=1)
    with torch.no_grad():
        output = denoiser(noisy, denoiser.sigma)
        turned = denoiser(noisy.rot90(1, (2, 3)), denoiser.sigma)
    return float((turned - output.rot90(1, (2, 3))).norm() / output.norm())


def denoised_test_grids(denoiser, molecules: MoleculeSet, n: int = 100) -> dict:
    """Metrics of ``n`` held-out molecules voxelised, noised at the walk's sigma and read out of one denoiser call:
    what a jump from a walk that stayed near a real molecule gives."""
    with torch.no_grad():
        return read_report(denoiser(noisy_held_out_grids(denoiser, molecules, n, seed=2), denoiser.sigma),
                           denoiser.grid)


def molecules_benchmark(args) -> None:
    model = args.model or ROOT / "models" / "voxel-qm9.pt"
    denoiser = load_denoiser(model)
    card = denoiser.metadata
    test = MoleculeSet.load(ROOT / "data" / "qm9" / "test.npz")
    print(json.dumps({"figure": "test molecules read back", "n": min(args.n, len(test)),
                      **read_back(test, denoiser.grid, min(args.n, len(test)))}))
    print(json.dumps({"figure": "denoiser under 90-degree grid rotations", "relative_error":
                      rotation_error(denoiser, test)}))
    print(json.dumps({"figure": "held-out grids noised at sigma, denoised once", "n": min(args.n, 100),
                      **denoised_test_grids(denoiser, test, min(args.n, 100))}))
    for measurements in args.measurements:
        made = generate(denoiser, args.n, measurements, args.walk_steps, args.chains, seed=args.seed,
                        progress=False)
        print(json.dumps({"figure": "generated", "model": str(model), "measurements": measurements,
                          "walk_steps": args.walk_steps, "chains": args.chains, "training_steps": card.get("total_steps", card.get("steps")),
                          **made.report(card.get("training_smiles", ())), "anchor": ANCHOR}))


def coverage(x: torch.Tensor, mixture: GaussianMixture) -> float:
    counts = torch.bincount(torch.cdist(x, mixture.means).argmin(1), minlength=len(mixture.means))
    return float((counts >= 0.5 * len(x) * mixture.weights).double().mean())


def toy_benchmark(args) -> None:
    angles = torch.arange(8) * 2 * math.pi / 8
    ring = GaussianMixture(torch.stack([4 * angles.cos(), 4 * angles.sin()], 1), [0.3] * 8)
    generator = torch.Generator().manual_seed(args.seed)
    n, sigma, steps = 2000, 1.0, args.walk_steps
    target = ring.sample(n, 0.0, generator)
    start = ring.means[0] + 0.3 * torch.randn(n, 2, generator=generator, dtype=torch.float64)
    for measurements in (1, 4):
        effective = sigma / math.sqrt(measurements)
        exact = ring.denoise(ring.sample(n, effective, generator), effective)
        x = walk_jump(ring, start, sigma, measurements, steps, generator=generator, progress=False)[0]
        print(json.dumps({"figure": "toy walk-jump", "measurements": measurements, "score_evaluations":
                          steps * measurements, "w2_to_p": wasserstein2(x, target), "w2_to_exact_jump": wasserstein2(x, exact),
                          "exact_jump_w2_to_p": wasserstein2(exact, target), "mode_coverage": coverage(x, ring)}))
        clean = UnderdampedWalk(lambda y: (ring.denoise(y, 1e-4) - y) / 1e-8, steps * measurements,
                                step_size=0.1).step(ChainState(start, torch.zeros(n)), generator).x
        print(json.dumps({"figure": "toy plain Langevin", "score_evaluations": steps * measurements,
                          "step_size": 0.1, "w2_to_p": wasserstein2(clean, target), "mode_coverage": coverage(clean, ring)}))
    print(json.dumps({"figure": "toy two exact samples of p", "w2": wasserstein2(ring.sample(n, 0.0, generator), target)}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("what", nargs="?", choices=["molecules", "toy", "all"], default="all")
    parser.add_argument("--n", type=int, default=1000)
    parser.add_argument("--measurements", type=lambda text: [int(m) for m in text.split(",")], default=[1, 4])
    parser.add_argument("--walk-steps", type=int, default=100)
    parser.add_argument("--chains", type=int, default=25)
    parser.add_argument("--model", type=Path)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    torch.set_num_threads(2)
    if args.what in ("toy", "all"):
        toy_benchmark(args)
    if args.what in ("molecules", "all"):
        molecules_benchmark(args)


if __name__ == "__main__":
    main()
