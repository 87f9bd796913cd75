"""Equivariant Boltzmann generators: continuous normalising flows over identical particles, trained by flow
matching, with exact log-densities for reweighting."""

from molsamp.flows.cnf import EquivariantFlow
from molsamp.flows.egnn import EGNNField

__all__ = ["EquivariantFlow", "EGNNField"]
