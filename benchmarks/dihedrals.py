"""Throughput of molsamp.analysis.compute_dihedrals against mdtraj.compute_dihedrals.

Prints one JSON line: frames per second of both on the same random frames of a 22-atom system
(alanine dipeptide's phi and psi quadruples), best of three repetitions, their ratio, and the
largest angle difference between the two (mdtraj computes in float32: expect ~1e-4 rad on the
near-collinear quadruples that random frames contain).

    python benchmarks/dihedrals.py [--frames 100000] [--device cpu|cuda]
"""

import argparse
import json
import platform
import time

import mdtraj as md
import numpy as np
import torch

from molsamp.analysis import compute_dihedrals

PHI_PSI = np.array([[4, 6, 8, 14], [6, 8, 14, 16]])  # ACE-ALA-NME, standard 22-atom order


def best_time(function, repeats: int = 3) -> float:
    """Shortest wall time of ``repeats`` calls, in seconds."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=100_000)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args()

    xyz = np.random.default_rng(0).normal(scale=0.3, size=(args.frames, 22, 3)).astype(np.float32)
    trajectory = md.Trajectory(xyz, None)
    x32 = torch.from_numpy(xyz).to(args.device)  # same float32 frames mdtraj sees
    x64 = x32.to(torch.float64)

    def molsamp(x):
        angles = compute_dihedrals(x, PHI_PSI)
        if angles.is_cuda:
            torch.cuda.synchronize()
        return angles

    molsamp(x32)  # warm-up (kernel launch, allocator)
    seconds = {
        "mdtraj": best_time(lambda: md.compute_dihedrals(trajectory, PHI_PSI)),
        "molsamp_float32": best_time(lambda: molsamp(x32)),
        "molsamp_float64": best_time(lambda: molsamp(x64)),
    }
    reference = md.compute_dihedrals(trajectory, PHI_PSI).astype(np.float64)
    difference = np.remainder(molsamp(x64).cpu().numpy() - reference + np.pi, 2 * np.pi) - np.pi
    fps = {name: args.frames / s for name, s in seconds.items()}
    print(
        json.dumps(
            {
                "benchmark": "dihedrals",
                "frames": args.frames,
                "atoms": 22,
                "dihedrals": len(PHI_PSI),
                "device": args.device,
                "cpu": platform.processor() or platform.machine(),
                "torch_threads": torch.get_num_threads(),
                "mdtraj_fps": round(fps["mdtraj"]),
                "molsamp_float32_fps": round(fps["molsamp_float32"]),
                "molsamp_float64_fps": round(fps["molsamp_float64"]),
                "ratio_float32": round(fps["molsamp_float32"] / fps["mdtraj"], 3),
                "ratio_float64": round(fps["molsamp_float64"] / fps["mdtraj"], 3),
                "max_abs_diff_rad": float(np.abs(difference).max()),
            }
        )
    )


if __name__ == "__main__":
    main()
