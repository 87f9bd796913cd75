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
    """Reduced energy u(theta) over the rotatable torsions ``theta: [B, T]`` (rad) of a molecule.

    Conformers x(theta) are made by setting the torsions rigidly on one base geometry: the system's conformer (RDKit
    ETKDG) after a short energy minimisation in its own force field (H-bond lengths constrained). Conformers with a
    steric clash (see :data:`CLASH_FACTOR`) get ``u = +inf`` without an energy evaluation, so the density is
    restricted to clash-free conformers. Two energies are on offer:

    - rigid (``relax_steps=0``, the default): u(theta) = U(x(theta))/kT. Bond lengths, bond angles, ring
      conformations and the torsions that are not rotatable (methyl rotors) stay those of the base geometry, so
      conformers far from it are strained and the density is much sharper than the torsional distribution of MD.
    - relaxed (``relax_steps > 0``): u(theta) = U(x_relax(theta))/kT, the adiabatic torsional energy. x_relax(theta)
      is x(theta) after at most ``relax_steps`` iterations of OpenMM's minimiser with every rotatable torsion
      held at theta by a stiff harmonic restraint (:data:`molsamp.openmm_pool.TORSION_RESTRAINT_K`; the torsions end
      within about a degree of theta); the restraint's energy is not part of u. Everything else relaxes, so
      u_relax <= u_rigid. This is a deterministic function of theta, so the samplers stay exact for *it*, but it is
      not the exact torsional marginal -log int exp(-U(x)/kT) delta(theta(x) - theta) dx: it neglects the entropy of
      the relaxed coordinates (their thermal spread about x_relax and how it changes with theta), and with few steps
      x_relax is only partly minimised. Each evaluation costs ``relax_steps`` force evaluations or more.
      :meth:`relaxed_conformers` gives the relaxed positions as well.

    Args:
        system: a system made from SMILES (``molsamp.systems.from_smiles``): it carries the RDKit molecule.
        minimise_steps: iterations of the base-geometry minimisation (0 to keep the conformer as it is).
        relax_steps: minimiser iterations per conformer for the relaxed energy; 0 for the rigid energy.
        target_options: passed to ``system.target`` (``n_workers``, ``platform``) and, when relaxing, to the
            :class:`~molsamp.openmm_pool.OpenMMPool` that relaxes.
    """

    def __init__(self, system: System, minimise_steps: int = 500, relax_steps: int = 0,
                 **target_options: Any) -> None:
        if system.molecule is None:
            raise InputError(f"system {system.name!r} has no RDKit molecule: build it with from_smiles")
        if relax_steps < 0:
            raise InputError(f"relax_steps must be >= 0, got {relax_steps}")
        self.system = system
        self.molecule = system.molecule
        self.torsions = rotatable_torsions(self.molecule)
        self.target = system.target(**target_options)
        self.kT = self.target.kT
        self.base = torch.as_tensor(_minimised(system, minimise_steps), dtype=torch.float64)
        self._pairs, self._contact = _clash_pairs(self.molecule)
        self.n_evaluations = 0  # OpenMM energy evaluations so far (clashing conformers cost none)
        self.relax_steps = int(relax_steps)
        self._relax_pool = None
        if self.relax_steps > 0:
            from molsamp.openmm_pool import OpenMMPool

            self._relax_pool = OpenMMPool(system.openmm_system, restrained_torsions=self.torsions.atoms,
                                          **target_options)

    @property
    def n_torsions(self) -> int:
        return len(self.torsions)

    @property
    def event_shape(self) -> tuple[int]:
        """``(T,)``: the target's coordinates are the rotatable torsions."""
        return (self.n_torsions,)

    def conformers(self, angles: torch.Tensor) -> torch.Tensor:
        """Rigid conformers ``[B, N, 3]`` (nm) with torsions ``angles: [B, T]`` (rad) set on the base geometry."""
        return set_torsions(self.base, self.torsions, torch.as_tensor(angles, dtype=torch.float64))

    def clashes(self, x: torch.Tensor) -> torch.Tensor:
        """``[B]`` True where two atoms more than three bonds apart overlap."""
        distances = (x[:, self._pairs[0]] - x[:, self._pairs[1]]).norm(dim=-1)
        return (distances < self._contact).any(-1)

    def relaxed_conformers(self, angles: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Reduced energies ``[B]`` (kT, as :meth:`energy`) and positions ``[B, N, 3]`` (nm) of the conformers with
        torsions ``angles: [B, T]`` (rad): relaxed when ``relax_steps > 0``, else rigid (as :meth:`conformers`).
        Clashing conformers, and those OpenMM fails on, get ``u = +inf`` and keep their rigid positions."""
        angles = torch.as_tensor(angles, dtype=torch.float64)
        x = self.conformers(angles)
        u = torch.full((len(x),), float("inf"), dtype=torch.float64)
        keep = ~self.clashes(x)
        if keep.any():
            if self._relax_pool is None:
                with torch.no_grad():
                    u[keep] = self.target.energy(x[keep])
            else:
                rigid = x[keep].numpy()
                energies, relaxed = self._relax_pool.relax(rigid, angles[keep].numpy(), self.relax_steps)
                ok = np.isfinite(energies) & np.isfinite(relaxed).all(axis=(1, 2))
                u[keep] = torch.as_tensor(np.where(ok, energies / self.kT, np.inf))
                x[keep] = torch.as_tensor(np.where(ok[:, None, None], relaxed, rigid))
            self.n_evaluations += int(keep.sum())
        return u, x

    def energy(self, angles: torch.Tensor) -> torch.Tensor:
        """Reduced energies ``[B]`` (kT) of torsions ``angles: [B, T]``; +inf for clashing conformers."""
        return self.relaxed_conformers(angles)[0]

    __call__ = energy

    def close(self) -> None:
        """Stop the worker processes of the energy target and of the relaxing pool, if any."""
        if hasattr(self.target, "close"):
            self.target.close()
        if self._relax_pool is not None:
            self._relax_pool.close()


def _minimised(system: System, steps: int) -> np.ndarray:
    """System positions (nm) after ``steps`` iterations of the minimiser (constraints applied, tolerance 1
    kJ/mol/nm), on the Reference platform."""
    import openmm

    from molsamp.openmm_pool import create_context, minimise

    context = create_context(system.openmm_system, openmm.VerletIntegrator(0.001), "Reference")
    context.setPositions(system.positions)
    minimise(context, steps, tolerance=1.0)
    return context.getState(getPositions=True).getPositions(asNumpy=True)._value


def _clash_pairs(molecule) -> tuple[torch.Tensor, torch.Tensor]:
    """Atom pairs more than three bonds apart ``[2, P]`` and their contact distances ``[P]`` (nm)."""
    from rdkit import Chem

    bonds = Chem.GetDistanceMatrix(molecule)
    i, j = np.nonzero(np.triu(bonds > 3))
    table = Chem.GetPeriodicTable()
    radii = np.array([table.GetRvdw(a.GetAtomicNum()) for a in molecule.GetAtoms()]) / 10.0  # nm
    return torch.as_tensor(np.stack([i, j])), torch.as_tensor(CLASH_FACTOR * (radii[i] + radii[j]))
