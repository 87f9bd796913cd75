"""How well a Boltzmann generator matches its target: reweighted expectations, the held-out negative
log-likelihood, the Wasserstein-1 distance between energy distributions, and energy and interatomic-distance
histograms against reference samples, and the Ramachandran surface of a peptide."""

from __future__ import annotations

__all__ = ["reweighted_mean", "held_out_nll", "energy_w1", "interatomic_distances", "plot_flow_samples",
           "backbone_angles", "plot_flow_ramachandran"]

import os
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch

from molsamp.samples import Samples

if TYPE_CHECKING:
    import mdtraj

    from molsamp.flows.molecule import Handedness


def reweighted_mean(values: torch.Tensor, log_weights: torch.Tensor) -> torch.Tensor:
    """The importance-weighted mean of ``values: [B, ...]`` over the first axis (``log_weights: [B]``, any
    additive constant; -inf for weight 0)."""
    weights = torch.softmax(log_weights.double(), 0).to(values.device)
    return torch.tensordot(weights.to(values.dtype), values, dims=([0], [0]))


def held_out_nll(flow, x: torch.Tensor, batch_size: int = 500, fold: Handedness | None = None) -> float:
    """Mean negative log-likelihood -log q(x) (nats, per configuration, density in the flow's length unit^-dof) of
    held-out samples ``x: [B, N, D]`` under ``flow`` (folded onto a molecule's stereoisomer by ``fold``)."""
    with torch.no_grad():
        log_q = torch.cat([flow.log_prob(batch.to(next(flow.parameters()))) for batch in x.split(batch_size)])
    if fold is not None:
        log_q = fold.fold(x.to(log_q), log_q)[1]
    return float(-log_q.double().mean())


def energy_w1(samples: Samples, reference_u: torch.Tensor, weighted: bool = True) -> float:
    """Wasserstein-1 distance (kT) between the reduced energies of ``samples`` (importance-weighted, or plain with
    ``weighted=False``) and the equally weighted reference energies ``reference_u: [M]``."""
    from scipy.stats import wasserstein_distance

    u = samples.u.double().cpu().numpy()
    weights = samples.log_weights.double().exp().cpu().numpy() if weighted else None
    finite = np.isfinite(u) & (weights > 0 if weights is not None else True)
    return float(wasserstein_distance(u[finite], reference_u.double().cpu().numpy(),
                                      None if weights is None else weights[finite]))


def interatomic_distances(x: torch.Tensor) -> torch.Tensor:
    """All distances ``[B, N(N-1)/2]`` between the particles of ``x: [B, N, D]``."""
    i, j = torch.triu_indices(x.shape[1], x.shape[1], offset=1, device=x.device)
    return (x[:, i] - x[:, j]).norm(dim=-1)


def plot_flow_samples(samples: Samples, path: str | os.PathLike, reference: Samples | None = None,
                      title: str | None = None, bins: int = 80) -> Path:
    """Energy and interatomic-distance histograms of flow ``samples``, unweighted and reweighted, over
    ``reference`` samples when given; written as a PNG. The energy axis spans the reference's energies (else the
    flow's), 0.1% to 99.9% quantiles widened by a fifth on each side; the legend gives the (weighted) fraction
    beyond it."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from molsamp.analysis.plots import _save_png

    weights = samples.log_weights.double().exp().numpy()
    figure, (energy_axis, distance_axis) = plt.subplots(1, 2, figsize=(10, 4))
    series = [("flow", samples.u, samples.x, None), ("flow, reweighted", samples.u, samples.x, weights)]
    if reference is not None:
        series.insert(0, ("reference", reference.u, reference.x, None))
    u_axis = (samples.u if reference is None else reference.u).double()
    low, high = np.quantile(u_axis[torch.isfinite(u_axis)].numpy(), [0.001, 0.999])
    u_range = (low - (high - low) / 5, high + (high - low) / 5)
    for label, u, x, w in series:
        u = u.double().numpy()
        shown = (u >= u_range[0]) & (u <= u_range[1])
        mass = np.full(len(u), 1 / len(u)) if w is None else w / w.sum()
        beyond = 1 - mass[shown].sum()
        energy_axis.hist(u[shown], bins=bins, range=u_range, weights=mass[shown] * bins / (u_range[1] - u_range[0]),
                         histtype="step", label=f"{label} ({beyond:.2%} beyond the axis)" if beyond > 0 else label)
        distances = interatomic_distances(x.double()).numpy()
        distance_axis.hist(distances.ravel(), bins=bins, density=True, histtype="step", label=label,
                           weights=None if w is None else np.repeat(w, distances.shape[1]))
    energy_axis.set_xlabel("reduced energy u (kT)")
    distance_axis.set_xlabel("interatomic distance (system's length unit)")
    energy_axis.set_ylabel("density")
    energy_axis.legend(fontsize=8)
    figure.suptitle(title or f"ESS {samples.ess() / len(samples):.1%} of {len(samples)} samples")
    figure.tight_layout()
    try:
        return _save_png(figure, path)
    finally:
        plt.close(figure)


def plot_flow_ramachandran(samples: Samples, topology: mdtraj.Topology, path: str | os.PathLike,
                           reference: Samples | None = None, title: str | None = None) -> Path:
    """The reweighted Ramachandran free-energy surface of a peptide's flow ``samples`` (beside that of
    ``reference`` samples when given), written as a PNG."""
    from molsamp.analysis.plots import plot_ramachandran

    phi, psi = backbone_angles(samples.x, topology)
    other = None if reference is None else backbone_angles(reference.x, topology)
    return plot_ramachandran(phi, psi, path, log_weights=samples.log_weights, reference=other, title=title)


def backbone_angles(x: torch.Tensor, topology: mdtraj.Topology) -> tuple[torch.Tensor, torch.Tensor]:
    """phi and psi ``[B]`` (rad) of the first residue with both, for positions ``x: [B, N, 3]`` (nm)."""
    from molsamp.analysis import backbone_dihedral_indices, compute_dihedrals

    indices = backbone_dihedral_indices(topology)
    if len(indices["phi"]) == 0 or len(indices["psi"]) == 0:
        raise ValueError("no backbone phi/psi in this topology: not a peptide")
    angles = compute_dihedrals(x.double(), np.stack([indices["phi"][0], indices["psi"][0]]))
    return angles[:, 0], angles[:, 1]
