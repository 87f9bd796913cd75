"""Molecules to voxel grids and back: the round trip recovers every atom and the same molecule; grids without a
molecule read as none."""

import numpy as np
import pytest
import torch
from rdkit import Chem
from scipy.optimize import linear_sum_assignment

from molsamp.errors import InputError
from molsamp.voxel import VoxelGrid, augment, find_atoms, molecule_from_atoms, pad_molecules, read_grid

GRID = VoxelGrid()


def grids_of(molecules, seed=0):
    types, positions = pad_molecules([([GRID.channel(e) for e in elements], x) for elements, x in molecules],
                                     dtype=torch.float64)
    positions = augment(types, positions, 0.25, torch.Generator().manual_seed(seed))
    return GRID.voxelize(types, positions), types, positions


def test_an_atom_is_a_unit_gaussian_in_its_element_channel():
    density = GRID.voxelize(torch.tensor([[1]]), torch.zeros(1, 1, 3, dtype=torch.float64))[0]
    assert density.shape == GRID.shape and float(density[[0, 2, 3, 4]].abs().max()) == 0
    axis = GRID.axis(dtype=torch.float64)
    expected = torch.exp(-(axis[:, None, None] ** 2 + axis[:, None] ** 2 + axis**2) / (2 * GRID.sigma**2))
    torch.testing.assert_close(density[1], expected)


@pytest.mark.parametrize("smiles", ["OC1CC1C#N", "c1ccc(F)cc1O", "CC(=O)NC"])
def test_round_trip_recovers_atoms_within_a_tenth_of_an_angstrom_and_the_same_molecule(smiles, embed):
    elements, positions = embed(smiles)
    density, types, moved = grids_of([(elements, positions)])
    channel, found = find_atoms(density[0], GRID)
    assert sorted(channel.tolist()) == sorted(types[0].tolist())
    distance = torch.cdist(found, moved[0]).numpy()
    distance[channel.numpy()[:, None] != types[0].numpy()[None]] = np.inf
    rows, columns = linear_sum_assignment(distance)
    assert distance[rows, columns].max() < 0.1
    molecule = read_grid(density[0], GRID)[2]
    assert Chem.MolToSmiles(Chem.RemoveHs(molecule), isomericSmiles=False) == \
        Chem.CanonSmiles(smiles, useChiral=False)
    assert molecule.GetNumAtoms() == len(elements) and molecule.GetNumConformers() == 1


def test_empty_and_noise_grids_hold_no_molecule():
    empty = torch.zeros(GRID.shape)
    noise = torch.randn(GRID.shape, generator=torch.Generator().manual_seed(0))
    for density in (empty, noise):
        channel, positions = find_atoms(density, GRID)
        assert read_grid(density, GRID)[2] is None
        assert len(channel) == len(positions) == 0 or density is noise


def test_the_largest_fragment_is_read_and_a_radical_is_no_molecule(embed):
    water, methane = embed("O"), embed("C")
    apart = (water[0] + methane[0], np.concatenate([water[1], methane[1] + [3.0, 0, 0]]))
    assert Chem.MolToSmiles(molecule_from_atoms(*apart)) == "[H]C([H])([H])[H]"
    methyl = embed("C")
    assert molecule_from_atoms(methyl[0][:-1], methyl[1][:-1]) is None
    assert molecule_from_atoms([], np.zeros((0, 3))) is None


def test_fits_and_unknown_elements():
    assert GRID.fits(np.array([[4.2, 0, 0]])) and not GRID.fits(np.array([[4.2, 0, 0]]), shift=0.25)
    with pytest.raises(InputError, match="'S' has no channel"):
        GRID.channel("S")
