"""Write systems/ice-xi-16.pdb and systems/ice-xi-128.pdb: proton-ordered ice XI (Cmc2_1) in rigid TIP4P/Ew water.

GenIce2 (Matsumoto, Yagasaki and Tanaka, J. Comput. Chem. 2018; ``pip install genice2``) places the oxygens and
orders the protons: its unit cell of ice XI holds 16 molecules in a 0.89846 x 0.77808 x 0.73358 nm orthorhombic box,
and 2 x 2 x 2 cells hold 128. Each molecule is then replaced by the exact TIP4P/Ew rigid body fitted to it, and the
crystal is minimised at fixed volume with rigid water (the Hamiltonian of the ice systems' YAML files), so the file
holds the lattice's energy minimum at PDB precision (1e-4 nm).

Run from the repository root: ``python systems/make_ice_pdb.py``. GenIce2's ice XI is fully ordered, so the output
is the same on every run.
"""

import tempfile
from pathlib import Path

import numpy as np
import openmm
import openmm.app as app
import torch
from genice2.genice import GenIce
from genice2.plugin import Format, Lattice, Molecule

from molsamp.flows.rigid_bodies import RigidBodies, water_body
from molsamp.systems import nonbonded_options

SYSTEMS = Path(__file__).resolve().parent
CELLS = {"ice-xi-16.pdb": 1, "ice-xi-128.pdb": 2}


def genice_cell(repeats: int) -> tuple[app.Topology, np.ndarray, np.ndarray]:
    """GenIce2's ice XI with TIP4P sites: topology (residues HOH: O, H1, H2, M), positions (nm), box edges (nm)."""
    gro = GenIce(Lattice("11"), rep=[repeats] * 3).generate_ice(Format("gromacs"), water=Molecule("tip4p"))
    with tempfile.NamedTemporaryFile("w", suffix=".gro") as handle:
        handle.write(gro)
        handle.flush()
        structure = app.GromacsGroFile(handle.name)
    box = np.diag(structure.getPeriodicBoxVectors().value_in_unit(openmm.unit.nanometer))
    positions = structure.getPositions(asNumpy=True).value_in_unit(openmm.unit.nanometer)
    topology = app.Topology()
    chain = topology.addChain()
    element = app.Element.getBySymbol
    for _ in range(len(positions) // 4):
        residue = topology.addResidue("HOH", chain)
        oxygen = topology.addAtom("O", element("O"), residue)
        for name in ("H1", "H2"):
            topology.addBond(oxygen, topology.addAtom(name, element("H"), residue))
        topology.addAtom("M", None, residue)
    topology.setPeriodicBoxVectors(np.diag(box) * openmm.unit.nanometer)
    return topology, positions, box


def minimised_ice(repeats: int) -> tuple[app.Topology, np.ndarray]:
    topology, positions, box = genice_cell(repeats)
    forcefield = app.ForceField("tip4pew.xml")
    cutoff = box.min() / 2 - 1e-5  # as the ice systems' YAML files
    nonbonded = nonbonded_options({"method": "PME", "cutoff": cutoff, "switch": 0.9 * cutoff,
                                   "ewald_error_tolerance": 1e-4})
    system = forcefield.createSystem(topology, **nonbonded, rigidWater=True)
    body = water_body(system)
    oxygens_and_hydrogens = torch.as_tensor(positions).reshape(-1, 4, 3)[:, :3].reshape(1, -1, 3)
    centres, quaternions = RigidBodies(body[:3]).bodies(oxygens_and_hydrogens)  # GenIce's M site is TIP4P's
    exact = RigidBodies(body).atoms(centres, quaternions)[0].numpy()
    context = openmm.Context(system, openmm.VerletIntegrator(0.001), openmm.Platform.getPlatformByName("Reference"))
    context.setPositions(exact)
    openmm.LocalEnergyMinimizer.minimize(context, 1e-3, 0)
    return topology, context.getState(getPositions=True).getPositions(asNumpy=True).value_in_unit(
        openmm.unit.nanometer)


def main() -> None:
    for name, repeats in CELLS.items():
        topology, positions = minimised_ice(repeats)
        with open(SYSTEMS / name, "w") as handle:
            app.PDBFile.writeFile(topology, positions * openmm.unit.nanometer, handle)
        print(f"wrote {SYSTEMS / name}: {topology.getNumResidues()} molecules")


if __name__ == "__main__":
    main()
