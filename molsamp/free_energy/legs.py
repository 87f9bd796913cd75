"""The two legs of a hydration free energy: the solute in a TIP3P box (PME) and in vacuum, both alchemical."""

from __future__ import annotations

__all__ = ["Leg", "hydration_legs", "CUTOFF", "HYDROGEN_MASS", "PADDING"]

import dataclasses
import os
from typing import TYPE_CHECKING

import numpy as np

from molsamp.errors import InputError
from molsamp.free_energy.alchemy import alchemical_system

if TYPE_CHECKING:
    import openmm

CUTOFF = 0.9
"""Real-space cutoff of PME and Lennard-Jones in the water box (nm), with the long-range dispersion correction."""

PADDING = 1.2
"""Default minimum distance from the solute to the faces of the water box (nm)."""

HYDROGEN_MASS = 3.0
"""Hydrogen mass (amu) after repartitioning from the bonded heavy atom; allows a 4 fs time step. Masses do not
change configurational free energies."""


@dataclasses.dataclass(frozen=True, eq=False)
class Leg:
    """One leg of the thermodynamic cycle: a self-contained, picklable alchemical system ready to sample.

    Attributes:
        name: ``"solvent"`` or ``"vacuum"``.
        system_xml: the alchemical OpenMM System, serialised (so it can travel to Dask workers).
        positions: ``[N, 3]`` (nm).
        box: ``[3, 3]`` periodic box vectors (nm), or None in vacuum.
        solute_atoms: indices of the solute's atoms.
    """

    name: str
    system_xml: str
    positions: np.ndarray
    box: np.ndarray | None
    solute_atoms: tuple[int, ...]

    @property
    def periodic(self) -> bool:
        return self.box is not None

    def system(self) -> openmm.System:
        import openmm

        return openmm.XmlSerializer.deserialize(self.system_xml)


def hydration_legs(smiles: str, forcefield: str = "gaff2", padding: float = PADDING,
                   cache_dir: str | os.PathLike | None = None, seed: int = 0, charges: str = "am1bcc"
                   ) -> tuple[Leg, Leg]:
    """The solvent and vacuum legs for ``smiles``: GAFF/GAFF2 with AM1-BCC charges (``charges``, see
    :data:`molsamp.forcefields.CHARGE_METHODS`), TIP3P with at least ``padding`` (nm) of water around the solute,
    PME with a 0.9 nm cutoff, rigid water, hydrogen mass 3 amu. X-H bonds are constrained in MD, and every bond keeps
    its energy term (``flexibleConstraints=True``). ``smiles`` is parametrised as given: fix unassigned stereo
    first (:func:`molsamp.stereo.resolve_stereo`), or the conformer embedding decides it.
    """
    import openmm
    import openmm.app as app

    from molsamp.forcefields import parametrize, solvate

    parameters = parametrize(smiles, forcefield=forcefield, cache_dir=cache_dir, seed=seed, charges=charges)
    n_solute = parameters.molecule.GetNumAtoms()
    solute = tuple(range(n_solute))
    options = dict(constraints=app.HBonds, rigidWater=True, flexibleConstraints=True,
                   hydrogenMass=HYDROGEN_MASS * openmm.unit.amu)

    prmtop_path, inpcrd_path = solvate(parameters, padding)
    prmtop, inpcrd = app.AmberPrmtopFile(str(prmtop_path)), app.AmberInpcrdFile(str(inpcrd_path))
    edges = [np.linalg.norm(vector.value_in_unit(openmm.unit.nanometer)) for vector in inpcrd.boxVectors]
    box = np.eye(3) * max(edges)  # tleap's box is nearly cubic; make it a cube (the barostat closes the gaps)
    if CUTOFF > 0.5 * box.diagonal().min():
        raise InputError(f"molecule {smiles!r}: the water box ({box.diagonal().min():.2f} nm) is too small for the "
                         f"{CUTOFF} nm cutoff; use a larger padding than {padding} nm")
    water_system = prmtop.createSystem(nonbondedMethod=app.PME, nonbondedCutoff=CUTOFF * openmm.unit.nanometer,
                                       **options)
    water_system.setDefaultPeriodicBoxVectors(*box)
    solvent = Leg("solvent", openmm.XmlSerializer.serialize(alchemical_system(water_system, solute)),
                  np.asarray(inpcrd.getPositions(asNumpy=True).value_in_unit(openmm.unit.nanometer)), box, solute)

    vacuum_prmtop = app.AmberPrmtopFile(str(parameters.prmtop))
    vacuum_system = vacuum_prmtop.createSystem(nonbondedMethod=app.NoCutoff, **options)
    vacuum = Leg("vacuum", openmm.XmlSerializer.serialize(alchemical_system(vacuum_system, solute)),
                 parameters.molecule.GetConformer().GetPositions() / 10.0, None, solute)
    return solvent, vacuum
