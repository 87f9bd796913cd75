"""Samples: positions with their log importance weights and energies, from any sampler."""

from __future__ import annotations

__all__ = ["Samples", "systematic_resample"]

import dataclasses
from typing import TYPE_CHECKING, Any

import torch

if TYPE_CHECKING:
    import mdtraj


def systematic_resample(log_weights: torch.Tensor, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """Indices ``[n]`` drawn in proportion to ``exp(log_weights)`` by systematic resampling (low variance)."""
    weights = torch.softmax(log_weights.double(), dim=0).cpu()
    points = (torch.rand((), generator=generator, dtype=torch.float64) + torch.arange(n, dtype=torch.float64)) / n
    cumulative = torch.cumsum(weights, 0)
    cumulative[-1] = 1.0
    return torch.searchsorted(cumulative, points).clamp(max=len(weights) - 1)


@dataclasses.dataclass(frozen=True)
class Samples:
    """Weighted samples of a Boltzmann distribution.

    Attributes:
        positions: ``[B, N, 3]`` (nm).
        log_weights: ``[B]`` self-normalisable log importance weights; zeros for exact samplers (MD, MH).
        energies: ``[B]`` potential energies (kJ/mol).
        provenance: how they were made (sampler, seed, settings), kept with the files they are written to.
    """

    positions: torch.Tensor
    log_weights: torch.Tensor
    energies: torch.Tensor
    provenance: dict[str, Any] = dataclasses.field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.positions)

    def ess(self) -> float:
        """Kish effective sample size of the weights."""
        from molsamp.analysis import kish_ess

        return kish_ess(self.log_weights)

    def resample(self, n: int | None = None, seed: int = 0) -> Samples:
        """``n`` (default: as many) equally weighted samples drawn by systematic resampling."""
        generator = torch.Generator().manual_seed(seed)
        index = systematic_resample(self.log_weights, n or len(self), generator)
        return Samples(self.positions[index], torch.zeros(len(index), dtype=self.log_weights.dtype),
                       self.energies[index], {**self.provenance, "resampled_from": len(self)})

    def to_mdtraj(self, topology: mdtraj.Topology) -> mdtraj.Trajectory:
        """The positions as an mdtraj Trajectory (weights are not carried: resample first if they matter)."""
        import mdtraj

        return mdtraj.Trajectory(self.positions.detach().cpu().numpy().astype("float32"), topology)
