"""Equivariant Boltzmann generators: continuous normalising flows over identical particles, trained by flow
matching, with exact log-densities for reweighting and annealed SMC refinement."""

from molsamp.flows.cnf import EquivariantFlow
from molsamp.flows.egnn import EGNNField
from molsamp.flows.generator import (
    importance_samples,
    load_flow,
    reference_samples,
    refine_smc,
    sample,
    save_flow,
    train_flow,
)

__all__ = ["EquivariantFlow", "EGNNField", "reference_samples", "train_flow", "save_flow", "load_flow",
           "importance_samples", "refine_smc", "sample"]
