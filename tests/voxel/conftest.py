import numpy as np
import pytest
from rdkit import Chem
from rdkit.Chem import AllChem


@pytest.fixture(scope="session")
def embed():
    """``embed(smiles, seed=1)``: element symbols and centred positions [A, 3] (Å) of one ETKDG conformer with
    explicit hydrogens."""

    def embedded(smiles: str, seed: int = 1) -> tuple[list[str], np.ndarray]:
        molecule = Chem.AddHs(Chem.MolFromSmiles(smiles))
        AllChem.EmbedMolecule(molecule, randomSeed=seed)
        positions = molecule.GetConformer().GetPositions()
        return [atom.GetSymbol() for atom in molecule.GetAtoms()], positions - positions.mean(0)

    return embedded
