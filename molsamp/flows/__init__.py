"""Boltzmann generators: equivariant continuous normalising flows over identical particles, trained by flow
matching, and spline flows over a molecule's internal coordinates, trained by maximum likelihood and the reverse KL;
exact log-densities for reweighting, and annealed SMC refinement."""

from molsamp.flows.cnf import EquivariantFlow
from molsamp.flows.egnn import EGNNField
from molsamp.flows.internal import InternalCoordinateFlow, ZMatrix
from molsamp.flows.generator import (
    importance_samples,
    load_flow,
    reference_samples,
    refine_smc,
    sample,
    save_flow,
    train_flow,
)

__all__ = ["EquivariantFlow", "EGNNField", "InternalCoordinateFlow", "ZMatrix", "reference_samples", "train_flow",
           "save_flow", "load_flow", "importance_samples", "refine_smc", "sample"]
