"""Voxel walk-jump generation of 3D molecules (VoxMol, Pinheiro et al. 2023; chain of log-concave Markov chains,
Saremi et al. 2024): molecules as per-element density grids, a denoiser trained at one noise level, walk-jump
sampling on its smoothed density, and read-out of atoms and bonds."""

from molsamp.voxel.data import MoleculeSet
from molsamp.voxel.generate import GeneratedMolecules, generate
from molsamp.voxel.grids import VoxelGrid, augment, pad_molecules
from molsamp.voxel.metrics import quality_report
from molsamp.voxel.readout import find_atoms, molecule_from_atoms, read_grid
from molsamp.voxel.training import Denoiser, DenoiserTraining, load_denoiser, train_denoiser
from molsamp.voxel.walk_jump import GaussianMixture, UnderdampedWalk, walk_jump

__all__ = ["VoxelGrid", "pad_molecules", "augment", "MoleculeSet", "find_atoms", "molecule_from_atoms",
           "read_grid", "quality_report", "Denoiser", "DenoiserTraining", "train_denoiser", "load_denoiser",
           "UnderdampedWalk", "walk_jump", "GaussianMixture", "GeneratedMolecules", "generate"]
