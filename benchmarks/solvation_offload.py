"""Run the water-box windows of the solvation benchmark on another machine that has only OpenMM and numpy.

The solvent leg is where the benchmark spends its time; a GPU node runs it in minutes but may lack AmberTools,
RDKit, pymbar and Dask. This splits the work without changing it:

- ``prepare`` (here, full stack): parametrises and solvates the molecules that ``solvation.py`` chooses, and pickles
  each molecule's job (alchemical systems, seeds, folder name), schedule and protocol into ``BUNDLE``.
- ``run`` (there, OpenMM + numpy + this checkout): equilibrates each water box and samples every missing solvent
  window on ``--platform`` with ``--workers`` processes, writing ``equilibrated.npz`` and ``window-NNN.npz`` as they
  finish, in the benchmark's workdir layout under ``OUTPUT``.

Copy ``OUTPUT``'s folders into ``benchmarks/solvation_runs/`` and run ``solvation.py``: it finds the solvent windows,
samples only the vacuum leg and estimates with MBAR. Same protocol, seeds and files as a local run; the windows'
``wall_time`` is then the other machine's.
Usage: ``python benchmarks/solvation_offload.py prepare BUNDLE [--molecules 10] [--charges am1bcc] [--skip-done]`` and
``python benchmarks/solvation_offload.py run BUNDLE OUTPUT [--platform CUDA] [--workers 8] [--deadline-s 400]``.
"""

import argparse
import concurrent.futures
import json
import multiprocessing
import pickle
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def prepare(bundle: Path, n_molecules: int, charges: str, workdir: Path, skip_done: bool) -> None:
    from solvation import choose, freesolv

    from molsamp.free_energy import LambdaSchedule, Protocol
    from molsamp.free_energy.hydration import _prepare_all
    from molsamp.free_energy.legs import PADDING

    bundle.mkdir(parents=True, exist_ok=True)
    schedule, protocol = LambdaSchedule(), Protocol()
    for molecule in choose(freesolv(), n_molecules):
        (job,), _ = _prepare_all([molecule["smiles"]], "mbar", "gaff", charges, schedule, protocol, PADDING, 0,
                                 workdir, None, "raise")
        if skip_done and len(job.windows["solvent"]) == len(schedule):
            continue
        with open(bundle / f"{job.folder.name}.pkl", "wb") as handle:
            pickle.dump({"job": job, "schedule": schedule, "protocol": protocol}, handle)
        print(f"{molecule['name']}: {job.folder.name}, {len(job.windows['solvent'])} solvent windows done",
              flush=True)


def run(bundle: Path, output: Path, platform: str, workers: int, deadline: float) -> None:
    from molsamp.free_energy import sample_window
    from molsamp.free_energy.hydration import _save_equilibrated, _save_window, _timed_equilibrate

    start = time.perf_counter()
    jobs = []
    for path in sorted(bundle.glob("*.pkl")):
        with open(path, "rb") as handle:
            entry = pickle.load(handle)
        entry["job"].folder = output / entry["job"].folder.name
        (entry["job"].folder / "solvent").mkdir(parents=True, exist_ok=True)
        jobs.append(entry)
    queue = [("equilibrate", entry, None) for entry in jobs]
    in_flight, done, failed = {}, 0, 0
    with concurrent.futures.ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn")) as pool:
        while queue or in_flight:
            while queue and len(in_flight) < workers and time.perf_counter() - start < deadline:
                kind, entry, state = queue.pop(0)
                job, protocol = entry["job"], entry["protocol"]
                if kind == "equilibrate":
                    future = pool.submit(_timed_equilibrate, job.legs["solvent"], protocol, job.seed, platform)
                else:
                    future = pool.submit(sample_window, job.legs["solvent"], entry["schedule"], state, protocol,
                                         job.window_seed("solvent", state), platform)
                in_flight[future] = (kind, entry, state)
            if not in_flight:
                break
            finished, _ = concurrent.futures.wait(in_flight, return_when=concurrent.futures.FIRST_COMPLETED)
            for future in finished:
                kind, entry, state = in_flight.pop(future)
                job, protocol = entry["job"], entry["protocol"]
                if future.exception() is not None:
                    failed += 1
                    print(f"{job.smiles}: {kind} {state} failed: {future.exception()!r}", flush=True)
                    continue
                if kind == "window":
                    _save_window(job.window_path("solvent", state), future.result())
                    done += 1
                    continue
                leg, wall_time = future.result()
                _save_equilibrated(job.equilibrated_path, leg, wall_time, protocol.steps(protocol.equilibration))
                job.legs["solvent"] = leg
                print(f"{job.smiles}: equilibrated in {wall_time:.0f} s", flush=True)
                queue += [("window", entry, state) for state in range(len(entry["schedule"]))
                          if state not in job.windows["solvent"]]
    print(json.dumps({"platform": platform, "workers": workers, "molecules": len(jobs), "windows": done,
                      "failed": failed, "tasks_not_started": len(queue), "wall_time_s": round(time.perf_counter() - start, 1)}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    make = commands.add_parser("prepare")
    make.add_argument("bundle", type=Path)
    make.add_argument("--molecules", type=int, default=10)
    make.add_argument("--charges", choices=["am1bcc", "am1bcc-fast"], default="am1bcc")
    make.add_argument("--workdir", type=Path, default=ROOT / "benchmarks" / "solvation_runs")
    make.add_argument("--skip-done", action="store_true", help="Leave out molecules whose solvent leg is complete.")
    sample = commands.add_parser("run")
    sample.add_argument("bundle", type=Path)
    sample.add_argument("output", type=Path)
    sample.add_argument("--platform", default="CUDA")
    sample.add_argument("--workers", type=int, default=8)
    sample.add_argument("--deadline-s", type=float, default=float("inf"),
                        help="Start no task after this many seconds (finished ones are kept).")
    args = parser.parse_args()
    if args.command == "prepare":
        prepare(args.bundle, args.molecules, args.charges, args.workdir, args.skip_done)
    else:
        run(args.bundle, args.output, args.platform, args.workers, args.deadline_s)


if __name__ == "__main__":
    main()
