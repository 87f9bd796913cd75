"""Timewarp-style learned MCMC for peptides (Klein et al., NeurIPS 2023): a conditional flow proposes
x(t + tau) from x(t) for any peptide, and Metropolis-Hastings against the OpenMM energy keeps the chain exact."""

from molsamp.timewarp.features import atom_features
from molsamp.timewarp.model import TimewarpFlow, load_model, save_model
from molsamp.timewarp.sampler import Exploration, TimewarpDistribution, TimewarpProposal

__all__ = ["atom_features", "TimewarpFlow", "load_model", "save_model", "TimewarpDistribution", "TimewarpProposal",
           "Exploration"]
