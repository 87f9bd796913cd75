"""Write systems/ala2.pdb: ACE-ALA-NME with Amber atom names, built by RDKit ETKDG and minimised in ff14SB/OBC2.

Run from the repository root: ``python systems/make_ala2_pdb.py``. The output is deterministic (fixed seed).
"""

from pathlib import Path

import openmm
import openmm.app as app
import openmm.unit as unit
from rdkit import Chem
from rdkit.Chem import AllChem

# Heavy atoms of ACE-ALA-NME by atom-map number: (residue index, residue name, atom name, hydrogen names).
HEAVY = {
    1: (0, "ACE", "CH3", ["HH31", "HH32", "HH33"]),
    2: (0, "ACE", "C", []),
    3: (0, "ACE", "O", []),
    4: (1, "ALA", "N", ["H"]),
    5: (1, "ALA", "CA", ["HA"]),
    6: (1, "ALA", "CB", ["HB1", "HB2", "HB3"]),
    7: (1, "ALA", "C", []),
    8: (1, "ALA", "O", []),
    9: (2, "NME", "N", ["H"]),
    10: (2, "NME", "CH3", ["HH31", "HH32", "HH33"]),
}
SMILES = "[CH3:1][C:2](=[O:3])[NH:4][C@@H:5]([CH3:6])[C:7](=[O:8])[NH:9][CH3:10]"  # L-alanine


def build(path: Path) -> None:
    mol = Chem.AddHs(Chem.MolFromSmiles(SMILES))
    AllChem.EmbedMolecule(mol, randomSeed=20261125)
    conf = mol.GetConformer()
    topology = app.Topology()
    chain = topology.addChain()
    residues = [topology.addResidue(name, chain) for name in ("ACE", "ALA", "NME")]
    positions, atoms = [], {}
    for rd_atom in sorted(mol.GetAtoms(), key=lambda a: a.GetAtomMapNum() or 99):
        if not rd_atom.GetAtomMapNum():
            continue
        res, _, name, h_names = HEAVY[rd_atom.GetAtomMapNum()]
        atoms[rd_atom.GetIdx()] = topology.addAtom(name, app.element.Element.getBySymbol(rd_atom.GetSymbol()), residues[res])
        positions.append(conf.GetAtomPosition(rd_atom.GetIdx()))
        hydrogens = [n for n in rd_atom.GetNeighbors() if n.GetAtomicNum() == 1]
        for h, h_name in zip(hydrogens, h_names, strict=True):
            atoms[h.GetIdx()] = topology.addAtom(h_name, app.element.hydrogen, residues[res])
            positions.append(conf.GetAtomPosition(h.GetIdx()))
    for bond in mol.GetBonds():
        topology.addBond(atoms[bond.GetBeginAtomIdx()], atoms[bond.GetEndAtomIdx()])
    positions = [openmm.Vec3(p.x, p.y, p.z) * 0.1 for p in positions] * unit.nanometer

    forcefield = app.ForceField("amber14-all.xml", "implicit/obc2.xml")
    system = forcefield.createSystem(topology, nonbondedMethod=app.NoCutoff)
    context = openmm.Context(system, openmm.VerletIntegrator(0.001), openmm.Platform.getPlatformByName("Reference"))
    context.setPositions(positions)
    openmm.LocalEnergyMinimizer.minimize(context, 1.0, 0)
    state = context.getState(getPositions=True, getEnergy=True)
    with open(path, "w") as handle:
        app.PDBFile.writeFile(topology, state.getPositions(), handle, keepIds=False)
    print(f"wrote {path}: E = {state.getPotentialEnergy()}")


if __name__ == "__main__":
    build(Path(__file__).with_name("ala2.pdb"))
