"""Figures of torsion statistics: Ramachandran free-energy maps and 1D torsion marginals, as PNG files."""

from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np
import torch

from molsamp.analysis._tensor import as_tensor
from molsamp.analysis.histograms import free_energy_surface, ramachandran_histogram, torsion_histogram
from molsamp.errors import InputError
from molsamp.files import atomic_path

__all__ = ["plot_ramachandran", "plot_torsion_marginals"]


def _save_png(figure, path: str | os.PathLike) -> Path:
    """Write ``figure`` to ``path`` as PNG through :func:`~molsamp.files.atomic_path`."""
    path = Path(path)
    if not path.parent.is_dir():
        raise InputError(f"path {str(path)!r}: folder {str(path.parent)!r} does not exist")
    with atomic_path(path) as temporary:
        figure.savefig(temporary, format="png", dpi=120)
    return path


def plot_ramachandran(
    phi,
    psi,
    path: str | os.PathLike,
    log_weights=None,
    reference: tuple | None = None,
    bins: int = 72,
    title: str | None = None,
    device: torch.device | str | None = None,
) -> Path:
    """Draw the Ramachandran free-energy surface -ln p(phi, psi) in kT and write it as a PNG.

    Parameters
    ----------
    phi, psi : array or Tensor, shape=(B,)
        Radians.
    path : str or Path
        PNG file to write (atomically); its folder must exist.
    log_weights : array or Tensor, shape=(B,), optional
        Log importance weights of the samples; default: equal weights.
    reference : tuple (phi_ref, psi_ref), optional
        A second sample (radians, equal weights) drawn in a second panel on the same colour scale.
    bins : int
        Bins along each axis.
    title : str, optional
        Figure title.
    device : torch.device, optional
        Where to compute the histograms.

    Returns
    -------
    path : Path
        The file written. Axes are in degrees, -180..180; empty bins are left blank.
    """
    from matplotlib.figure import Figure

    panels = [("sample", phi, psi, log_weights)]
    if reference is not None:
        panels.append(("reference", reference[0], reference[1], None))
    surfaces = [
        free_energy_surface(ramachandran_histogram(a, b, bins, lw, device)).cpu().numpy()
        for _, a, b, lw in panels
    ]
    vmax = max(float(s[np.isfinite(s)].max()) for s in surfaces) or 1.0

    figure = Figure(figsize=(4.8 * len(panels) + 0.8, 4.4), layout="constrained")
    axes = figure.subplots(1, len(panels), squeeze=False)[0]
    for ax, (name, *_), surface in zip(axes, panels, surfaces):
        image = ax.imshow(
            np.ma.masked_invalid(surface.T),
            origin="lower",
            extent=(-180, 180, -180, 180),
            cmap="viridis",
            vmin=0.0,
            vmax=vmax,
            interpolation="nearest",
        )
        ax.set(xlabel="phi / degree", ylabel="psi / degree", xticks=range(-180, 181, 90), yticks=range(-180, 181, 90))
        if reference is not None:
            ax.set_title(name)
    figure.colorbar(image, ax=list(axes), label="free energy / kT")
    if title is not None:
        figure.suptitle(title)
    return _save_png(figure, path)


def plot_torsion_marginals(
    angles,
    path: str | os.PathLike,
    reference=None,
    labels: list[str] | None = None,
    log_weights=None,
    bins: int = 36,
    device: torch.device | str | None = None,
    legend: tuple[str, str] = ("sample", "reference"),
) -> Path:
    """Draw the 1D marginal density of each torsion as small multiples and write them as a PNG.

    Parameters
    ----------
    angles : array or Tensor, shape=(B, M) or (B,)
        Radians, a sample of M torsions.
    path : str or Path
        PNG file to write (atomically); its folder must exist.
    reference : array or Tensor, shape=(B', M) or (B',), optional
        A second sample of the same torsions (equal weights), drawn dashed over each panel.
    labels : list of str, optional
        One panel title per torsion; default: "torsion 0", "torsion 1", ...
    log_weights : array or Tensor, shape=(B,), optional
        Log importance weights of ``angles``; default: equal weights.
    bins : int
        Bins per histogram.
    device : torch.device, optional
        Where to compute the histograms.
    legend : (str, str)
        Legend entries of ``angles`` and ``reference``.

    Returns
    -------
    path : Path
        The file written. Densities are per degree, over -180..180 degrees.
    """
    from matplotlib.figure import Figure

    angles = as_tensor(angles, device, "angles")
    hist = torsion_histogram(angles, bins, log_weights).reshape(-1, bins).cpu().numpy()
    m = hist.shape[0]
    ref = None
    if reference is not None:
        ref = torsion_histogram(reference, bins, device=angles.device).reshape(-1, bins).cpu().numpy()
        if ref.shape != hist.shape:
            raise InputError(f"reference holds {ref.shape[0]} torsions but angles hold {m}")
    labels = [f"torsion {k}" for k in range(m)] if labels is None else list(labels)
    if len(labels) != m:
        raise InputError(f"labels has {len(labels)} entries; expected one per torsion ({m})")

    width = 360.0 / bins
    centres = np.linspace(-180.0 + width / 2, 180.0 - width / 2, bins)
    columns = min(m, 4)
    rows = math.ceil(m / columns)
    figure = Figure(figsize=(3.0 * columns, 2.4 * rows), layout="constrained")
    axes = figure.subplots(rows, columns, squeeze=False).reshape(-1)
    for k, ax in enumerate(axes):
        if k >= m:
            ax.set_visible(False)
            continue
        ax.step(centres, hist[k] / width, where="mid", label=legend[0])
        if ref is not None:
            ax.step(centres, ref[k] / width, where="mid", linestyle="--", label=legend[1])
        ax.set(title=labels[k], xlim=(-180, 180), xticks=range(-180, 181, 90), xlabel="degree", ylabel="density")
    if ref is not None:
        axes[0].legend(fontsize="small")
    return _save_png(figure, path)
