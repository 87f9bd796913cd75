"""Samples: the one result type of every sampler, configurations with their energies and log importance weights."""

from __future__ import annotations

__all__ = ["Samples", "systematic_resample"]

import dataclasses
import math
import os
from pathlib import Path
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
    """Weighted samples of a Boltzmann distribution exp(-u).

    Attributes:
        x: ``[B, *event]`` configurations in the target's coordinates (positions ``[B, N, 3]`` in nm, torsion angles
            ``[B, T]`` in rad, reduced lengths for analytic targets).
        u: ``[B]`` reduced energies (kT) under the target.
        log_weights: ``[B]`` normalised log importance weights (logsumexp 0); all ``-log B`` for exact samplers
            (MD, Metropolis-Hastings, resampled SMC).
        log_q: ``[B]`` the proposal's log-density of each sample, where a proposal made them.
        observables: per-sample arrays ``[B, ...]`` recorded along the way (e.g. ``"torsions"``).
        info: how they were made and what it cost (sampler, seed, settings, ESS, acceptance, energy evaluations).
    """

    x: torch.Tensor
    u: torch.Tensor
    log_weights: torch.Tensor
    log_q: torch.Tensor | None = None
    observables: dict[str, torch.Tensor] = dataclasses.field(default_factory=dict)
    info: dict[str, Any] = dataclasses.field(default_factory=dict)

    @classmethod
    def unweighted(cls, x: torch.Tensor, u: torch.Tensor, **fields: Any) -> Samples:
        """Equally weighted samples (from an exact sampler)."""
        return cls(x, u, torch.full((len(x),), -math.log(len(x)), dtype=torch.float64), **fields)

    def __len__(self) -> int:
        return len(self.x)

    def ess(self) -> float:
        """Kish effective sample size of the weights (the correlations of an MCMC chain are not in it)."""
        from molsamp.analysis import kish_ess

        return kish_ess(self.log_weights)

    def select(self, index: torch.Tensor) -> Samples:
        """The samples at ``index`` (weights renormalised), with the same ``info``."""
        log_weights = self.log_weights[index]
        return Samples(self.x[index], self.u[index], log_weights - torch.logsumexp(log_weights, 0),
                       None if self.log_q is None else self.log_q[index],
                       {name: value[index] for name, value in self.observables.items()}, self.info)

    def resample(self, n: int | None = None, seed: int = 0) -> Samples:
        """``n`` (default: as many) equally weighted samples drawn by systematic resampling."""
        index = systematic_resample(self.log_weights, n or len(self), torch.Generator().manual_seed(seed))
        resampled = self.select(index)
        return dataclasses.replace(resampled, log_weights=torch.full((len(index),), -math.log(len(index)),
                                                                     dtype=torch.float64),
                                   info={**self.info, "resampled_from": len(self)})

    def to_npz(self, path: str | os.PathLike) -> Path:
        """Write ``x``, ``energy_kT`` (u), ``log_w`` (normalised log-weights), ``log_q`` where present, the
        observables, the numbers of ``info`` (ESS, log_Z, ...) as 0-d arrays and its numpy arrays (e.g. a box) as
        they are, to one ``.npz`` file atomically."""
        import numpy as np

        from molsamp.files import atomic_path

        arrays = {"x": self.x, "energy_kT": self.u, "log_w": self.log_weights, **self.observables}
        if self.log_q is not None:
            arrays["log_q"] = self.log_q
        arrays = {name: value.detach().cpu().numpy() for name, value in arrays.items()}
        arrays.update({name: np.asarray(value) for name, value in self.info.items()
                       if isinstance(value, (int, float, np.ndarray)) and not isinstance(value, bool)})
        with atomic_path(path) as temporary:
            np.savez_compressed(temporary, **arrays)
        return Path(path)

    @classmethod
    def from_npz(cls, path: str | os.PathLike) -> Samples:
        """Samples read back from :meth:`to_npz`'s file (other arrays of the sample count become observables, the
        rest go to ``info``). :class:`~molsamp.errors.InputError` if it lacks ``x`` or ``energy_kT``."""
        import numpy as np

        from molsamp.errors import InputError

        try:
            with np.load(path) as data:
                arrays = {name: data[name] for name in data.files}
        except (OSError, ValueError) as error:
            raise InputError(f"{path}: not a readable .npz file ({error})") from None
        if "x" not in arrays or "energy_kT" not in arrays:
            raise InputError(f"{path}: samples need arrays 'x' and 'energy_kT', found {sorted(arrays)}")
        x, u = torch.as_tensor(arrays.pop("x")), torch.as_tensor(arrays.pop("energy_kT"))
        log_w = arrays.pop("log_w", None)
        log_q = arrays.pop("log_q", None)
        info = {name: value.item() if value.ndim == 0 else value for name, value in arrays.items()
                if value.ndim == 0 or len(value) != len(x)}
        observables = {name: torch.as_tensor(value) for name, value in arrays.items()
                       if value.ndim and len(value) == len(x)}
        log_weights = torch.full((len(x),), -math.log(len(x)), dtype=torch.float64) if log_w is None else \
            torch.as_tensor(log_w)
        return cls(x, u, log_weights, None if log_q is None else torch.as_tensor(log_q), observables, info)

    def to_mdtraj(self, topology: mdtraj.Topology) -> mdtraj.Trajectory:
        """Positions (nm) as an mdtraj Trajectory (weights are not carried: resample first if they matter)."""
        import mdtraj

        return mdtraj.Trajectory(self.x.detach().cpu().numpy().astype("float32"), topology)

    def to_sdf(self, molecule, path: str | os.PathLike) -> Path:
        """Positions ``[B, N, 3]`` (nm) as conformers of the RDKit ``molecule`` (same atom order) in one SDF file,
        each record with its reduced energy ``u_kT`` and normalised ``weight``."""
        from rdkit import Chem

        from molsamp.conformers.io import write_sdf

        ensemble = Chem.Mol(molecule)
        ensemble.RemoveAllConformers()
        positions = self.x.detach().cpu().double().numpy() * 10.0  # Å
        for xyz, u, weight in zip(positions, self.u.tolist(), self.log_weights.exp().tolist()):
            conformer = Chem.Conformer(ensemble.GetNumAtoms())
            conformer.SetPositions(xyz)
            conformer.SetDoubleProp("u_kT", u)
            conformer.SetDoubleProp("weight", weight)
            ensemble.AddConformer(conformer, assignId=True)
        return write_sdf([ensemble], path)
