"""Analysis of samples in torch: dihedrals, torsion and Ramachandran histograms, divergences, ESS, plots.

Every function accepts numpy arrays or torch tensors and a ``device=`` argument, and returns torch
tensors (or floats for scalar summaries). numpy input is computed in float64; floating tensors keep
their dtype. Importance weights are always given as log-weights (``log_weights=``), as in
``Samples.log_weights``; plain weights w enter as ``log(w)``.
mdtraj and matplotlib load only inside the functions that need them.
"""

from molsamp.analysis.dihedrals import backbone_dihedral_indices, compute_dihedrals, fold_torsions
from molsamp.analysis.divergence import js_divergence, ramachandran_js, torsion_js, wasserstein2
from molsamp.analysis.ess import (autocorrelation, integrated_autocorrelation_time, kish_ess, time_series_ess,
                                  torsion_ess)
from molsamp.analysis.histograms import free_energy_surface, ramachandran_histogram, torsion_histogram
from molsamp.analysis.plots import plot_ramachandran, plot_torsion_marginals
from molsamp.analysis.tica import Tica, first_zero_ess, fit_tica
from molsamp.analysis.states import RAMACHANDRAN_STATES, ramachandran_populations, ramachandran_states

__all__ = [
    "compute_dihedrals",
    "backbone_dihedral_indices",
    "fold_torsions",
    "torsion_histogram",
    "ramachandran_histogram",
    "free_energy_surface",
    "js_divergence",
    "torsion_js",
    "ramachandran_js",
    "wasserstein2",
    "kish_ess",
    "autocorrelation",
    "integrated_autocorrelation_time",
    "time_series_ess",
    "torsion_ess",
    "ramachandran_states",
    "ramachandran_populations",
    "RAMACHANDRAN_STATES",
    "Tica",
    "fit_tica",
    "first_zero_ess",
    "plot_ramachandran",
    "plot_torsion_marginals",
]
