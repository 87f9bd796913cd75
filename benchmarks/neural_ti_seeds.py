"""How much neural TI's estimate on the Lennard-Jones solute depends on the training run (batch, width, seed), with
training on a GPU for a fixed wall time. Compare with MBAR from ``benchmarks/neural_ti_lj.py`` (same system and
end states: 100 solvent particles, density 0.7, T* = 1, solute sigma = epsilon = 2).

Per-step Hungarian pairing on the CPU would starve a GPU, so a pool of solute-centred, Hungarian-paired end-state
pairs is made once on all cores; training draws pairs from it (target score matching, Adam, learning rate decayed
100-fold over ``--seconds``). Every ``--every`` seconds, and at the end, dF is estimated as in the benchmark
(Gauss-Legendre nodes over freshly paired end states); ``--refine`` adds estimates after that many Langevin steps on
U_theta at each node. Prints one JSON line per evaluation.

    python benchmarks/neural_ti_seeds.py pool --path pool.pt
    python benchmarks/neural_ti_seeds.py train NAME --pool pool.pt --batch 256 --hidden 128 --seed 1
"""

import argparse
import json
import math
import os
import time
from multiprocessing import Pool
from pathlib import Path

import torch

from molsamp.free_energy.lj_solute import LennardJonesInterpolant, LennardJonesSolute
from molsamp.free_energy.neural_ti import EndStates, Interpolant, neural_ti_estimate, score_matching_loss

SYSTEM = LennardJonesSolute(n_solvent=100)
SAMPLING = dict(n_chains=8, n_samples=100, steps_between=40, equilibration_steps=1000)
"""The end-state sampling of ``benchmarks/neural_ti_lj.py`` (its neural-TI generator is seeded with 1)."""


def end_states(cache: Path, device: str) -> EndStates:
    if not cache.exists():
        generator = torch.Generator().manual_seed(1)
        torch.save(tuple(SYSTEM.sample(c, generator=generator, **SAMPLING) for c in (0.0, 1.0)), cache)
    x0, x1 = torch.load(cache)
    return EndStates.from_energies(x0.to(device), lambda x: SYSTEM.coupled_energy(x, 0.0), x1.to(device),
                                   lambda x: SYSTEM.coupled_energy(x, 1.0))


def _paired_chunk(task: tuple[Path, int, int]) -> list[torch.Tensor]:
    cache, seed, n = task
    torch.set_num_threads(1)
    ends, generator = end_states(cache, "cpu"), torch.Generator().manual_seed(seed)
    chunks = [Interpolant(align=SYSTEM.align).pairs(ends, 256, generator) for _ in range(0, n, 256)]
    return [torch.cat(part)[:n] for part in zip(*chunks)]


def make_pool(cache: Path, n: int, path: Path) -> None:
    """``n`` paired (x0, grad0, x1, grad1), made on all cores but two."""
    end_states(cache, "cpu")
    workers = max((os.cpu_count() or 1) - 2, 1)
    with Pool(workers) as pool:
        parts = pool.map(_paired_chunk, [(cache, seed, math.ceil(n / workers)) for seed in range(workers)])
    torch.save([torch.cat(part)[:n] for part in zip(*parts)], path)


def train(args: argparse.Namespace) -> None:
    device = "cuda" if torch.cuda.is_available() else "cpu"
    torch.manual_seed(args.seed)
    pairs = [p.to(device) for p in torch.load(args.pool)]
    ends = end_states(args.ends, device)
    potential = LennardJonesInterpolant(SYSTEM, hidden=args.hidden).to(device)
    path_only, paired = Interpolant(path=SYSTEM.interpolate), Interpolant(path=SYSTEM.interpolate, align=SYSTEM.align)
    optimiser = torch.optim.Adam(potential.parameters(), lr=args.lr)
    generator = torch.Generator(device).manual_seed(args.seed)

    def emit(record: dict) -> None:
        print(json.dumps({"name": args.name, **record}), flush=True)

    def estimate(seed: int, **kwargs) -> dict:
        result = neural_ti_estimate(potential, ends, interpolant=paired,
                                    generator=torch.Generator(device).manual_seed(seed), **kwargs)
        return {"dF_kT": result.delta_f, "dF_err_kT": result.error}

    emit({"config": {k: str(v) for k, v in vars(args).items()}, "device": device, "pairs": len(pairs[0])})
    start = last = time.perf_counter()
    step, window = 0, []
    while (elapsed := time.perf_counter() - start) < args.seconds:
        for group in optimiser.param_groups:
            group["lr"] = args.lr * 0.01 ** (elapsed / args.seconds)
        index = torch.randint(len(pairs[0]), (args.batch,), generator=generator, device=device)
        t = torch.rand(args.batch, generator=generator, dtype=torch.float64, device=device)
        loss, du_dt = score_matching_loss(potential, *(p[index] for p in pairs), t, path_only, generator)
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        step += 1
        window.append(torch.stack([loss.detach(), du_dt.mean()]))
        if time.perf_counter() - last > args.every:
            losses, running = torch.stack(window).T.cpu()
            emit({"step": step, "s": round(time.perf_counter() - start, 1), "loss": losses.mean().item(),
                  "rolling_dF_kT": running.mean().item(), **estimate(7, n_t=24, pairs_per_t=64)})
            window, last = [], time.perf_counter()
    emit({"final": "plain", "steps": step, **estimate(8, n_t=24, pairs_per_t=256)})
    for steps in args.refine:
        emit({"final": f"refined {steps} steps", "energy_evaluations": 16 * 64 * steps,
              **estimate(9, n_t=16, pairs_per_t=64, refine_steps=steps)})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ends", type=Path, default=Path("neural_ti_ends.pt"), help="End-state samples (cache).")
    commands = parser.add_subparsers(dest="command", required=True)
    pool = commands.add_parser("pool")
    pool.add_argument("--n", type=int, default=100_000)
    pool.add_argument("--path", type=Path, required=True)
    run = commands.add_parser("train")
    run.add_argument("name")
    run.add_argument("--pool", type=Path, required=True)
    run.add_argument("--batch", type=int, default=24)
    run.add_argument("--hidden", type=int, default=32)
    run.add_argument("--lr", type=float, default=1e-3)
    run.add_argument("--seconds", type=float, default=300.0)
    run.add_argument("--every", type=float, default=50.0)
    run.add_argument("--seed", type=int, default=0)
    run.add_argument("--refine", type=int, nargs="*", default=[])
    args = parser.parse_args()
    if args.command == "pool":
        make_pool(args.ends, args.n, args.path)
    else:
        train(args)


if __name__ == "__main__":
    main()
