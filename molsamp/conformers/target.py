"""The torsional Boltzmann density: the OpenMM energy of a molecule as a function of its rotatable torsions."""

from __future__ import annotations

__all__ = ["TorsionalTarget"]

from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from molsamp.conformers.torsions import rotatable_torsions, set_torsions
from molsamp.errors import InputError

if TYPE_CHECKING:
    from molsamp.systems import System

CLASH_FACTOR = 0.5
"""Two atoms more than three bonds apart clash when closer than this fraction of the sum of their vdW radii."""


class TorsionalTarget:
    """Reduced energy u(theta) = U(x(theta))/kT over the rotatable torsions ``theta: [B, T]`` (rad) of a molecule.

    Bond lengths, bond angles and ring conformations are those of one base geometry: the system's conformer
    (RDKit ETKDG) after a short energy minimisation in its own force field (H-bond lengths constrained). Conformers
    with a steric clash (see :data:`CLASH_FACTOR`) get ``u = +inf`` without an energy evaluation, so the density is
    the torsional Boltzmann density restricted to clash-free conformers.

    Args:
        system: a system made from SMILES (``molsamp.systems.from_smiles``): it carries the RDKit molecule.
        minimise_steps: iterations of the base-geometry minimisation (0 to keep the conformer as it is).
        target_options: passed to ``system.target`` (``n_workers``, ``platform``).
    """

    def __init__(self, system: System, minimise_steps: int = 500, **target_options: Any) -> None:
        if system.molecule is None:
            raise InputError(f"system {system.name!r} has no RDKit molecule: build it with from_smiles")
        self.system = system
        self.molecule = system.molecule
        self.torsions = rotatable_torsions(self.molecule)
        self.target = system.target(**target_options)
        self.kT = self.target.kT
        self.base = torch.as_tensor(_minimised(system, minimise_steps), dtype=torch.float64)
        self._pairs, self._contact = _clash_pairs(self.molecule)
        self.n_evaluations = 0  # OpenMM energy evaluations so far (clashing conformers cost none)

    @property
    def n_torsions(self) -> int:
        return len(self.torsions)

    def conformers(self, angles: torch.Tensor) -> torch.Tensor:
        """Positions ``[B, N, 3]`` (nm) of the conformers with torsions ``angles: [B, T]`` (rad)."""
        return set_torsions(self.base, self.torsions, torch.as_tensor(angles, dtype=torch.float64))

    def clashes(self, x: torch.Tensor) -> torch.Tensor:
        """``[B]`` True where two atoms more than three bonds apart overlap."""
        distances = (x[:, self._pairs[0]] - x[:, self._pairs[1]]).norm(dim=-1)
        return (distances < self._contact).any(-1)

    def energy(self, angles: torch.Tensor) -> torch.Tensor:
        """Reduced energies ``[B]`` (kT) of torsions ``angles: [B, T]``; +inf for clashing conformers."""
        x = self.conformers(angles)
        u = torch.full((len(x),), float("inf"), dtype=torch.float64)
        keep = ~self.clashes(x)
        if keep.any():
            with torch.no_grad():
                u[keep] = self.target.energy(x[keep])
            self.n_evaluations += int(keep.sum())
        return u

    __call__ = energy

    def close(self) -> None:
        """Stop the energy target's worker processes, if any."""
        if hasattr(self.target, "close"):
            self.target.close()


def _minimised(system: System, steps: int) -> np.ndarray:
    """System positions (nm) after ``steps`` iterations of OpenMM's minimiser (constraints applied)."""
    import openmm

    if steps == 0:
        return np.asarray(system.positions)
    context = openmm.Context(system.openmm_system, openmm.VerletIntegrator(0.001),
                             openmm.Platform.getPlatformByName("Reference"))
    context.setPositions(system.positions)
    context.applyConstraints(1e-8)
    openmm.LocalEnergyMinimizer.minimize(context, 1.0, steps)
    return context.getState(getPositions=True).getPositions(asNumpy=True)._value


def _clash_pairs(molecule) -> tuple[torch.Tensor, torch.Tensor]:
    """Atom pairs more than three bonds apart ``[2, P]`` and their contact distances ``[P]`` (nm)."""
    from rdkit import Chem

    bonds = Chem.GetDistanceMatrix(molecule)
    i, j = np.nonzero(np.triu(bonds > 3))
    table = Chem.GetPeriodicTable()
    radii = np.array([table.GetRvdw(a.GetAtomicNum()) for a in molecule.GetAtoms()]) / 10.0  # nm
    return torch.as_tensor(np.stack([i, j])), torch.as_tensor(CLASH_FACTOR * (radii[i] + radii[j]))
