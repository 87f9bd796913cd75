import math
import re

import torch

from molsamp.flows.diagnostics import energy_w1, plot_flow_samples
from molsamp.samples import Samples


def gaussian_samples(n: int, seed: int, outliers: int = 0) -> Samples:
    """``n`` samples of 2 particles in 2D with u = |x|^2 / 2 (kT), the last ``outliers`` of them moved out to
    u of about 10^4 kT, as a flow's clashing draws are."""
    x = torch.randn(n, 2, 2, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    x[n - outliers:] *= 100.0
    u = 0.5 * (x**2).sum((1, 2))
    return Samples(x, u, torch.full((n,), -math.log(n), dtype=torch.float64))


def test_energy_histogram_spans_the_reference_and_counts_what_lies_beyond(tmp_path, monkeypatch):
    shown = {}

    def keep_figure(figure, path):
        energy_axis = figure.axes[0]
        shown["range"] = energy_axis.get_xlim()
        shown["labels"] = [text.get_text() for text in energy_axis.get_legend().get_texts()]
        figure.savefig(path)
        return path

    monkeypatch.setattr("molsamp.analysis.plots._save_png", keep_figure)
    flow, reference = gaussian_samples(2000, 1, outliers=3), gaussian_samples(2000, 2)
    path = plot_flow_samples(flow, tmp_path / "flow.png", reference=reference)
    assert path.stat().st_size > 0
    assert shown["range"][1] < 50  # the reference's energies (chi-square with 4 degrees of freedom / 2), not 10^4
    fractions = [float(re.fullmatch(rf"{name} \((.+)% beyond the axis\)", label).group(1)) / 100
                 for name, label in zip(["flow", "flow, reweighted"], shown["labels"][1:])]
    assert fractions[0] == fractions[1]  # equal weights
    assert 3 / 2000 <= fractions[0] <= 23 / 2000  # the outliers, and the Gaussian's own far tail


def test_energy_w1_is_zero_for_identical_energies_and_the_shift_otherwise():
    samples = gaussian_samples(500, 3)
    assert energy_w1(samples, samples.u) < 1e-12
    assert abs(energy_w1(samples, samples.u + 1.5) - 1.5) < 1e-12
