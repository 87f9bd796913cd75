"""A rigid solute in rigid water at constant volume, in torch: the Hamiltonian of an OpenMM System (Ewald
electrostatics, Lennard-Jones truncated at the cutoff with the long-range dispersion correction, intramolecular
energies constant) and a path that couples the solute to the water, for neural thermodynamic integration of small
rigid molecules (methane, water).

The System's first ``n_solute`` particles are the solute, the rest whole waters; every pair of atoms within one
molecule must be an exception (excluded or a scaled 1-4 pair), as it is for a molecule whose atoms are all within
three bonds of one another. Positions are nm, energies reduced (kT).
"""

from __future__ import annotations

__all__ = ["Coupling", "COUPLED", "DECOUPLED", "RigidSolvation", "COULOMB_CONSTANT", "dispersion_correction",
           "rigid_solvation_system", "slerp", "EndStateSamples", "end_state_samples"]

import dataclasses
import math
import sys
from typing import TYPE_CHECKING, NamedTuple

import numpy as np
import torch

from molsamp.errors import InputError
from molsamp.openmm_pool import MOLAR_GAS_CONSTANT
from molsamp.flows.rigid_bodies import RigidBodies, water_body

if TYPE_CHECKING:
    import openmm

COULOMB_CONSTANT = 138.935456
"""1 / (4 pi epsilon_0) in kJ mol^-1 nm e^-2, OpenMM's value."""

Scalar = float | torch.Tensor


@dataclasses.dataclass(frozen=True)
class Coupling:
    """How strongly the solute interacts with the water; each value a float or a ``[B]`` tensor.

    Solute-water Lennard-Jones is ``lennard_jones * 4 eps [s^2 - s]``, s = (sigma^2 / (``lj_softness`` sigma^2 +
    r^2))^3; the solute's charges are scaled by ``charge`` (Ewald in all its parts), and its real-space Coulomb pairs
    with the water use sqrt(r^2 + ``coulomb_softness``) (nm^2) in place of r, so that a partly coupled solute cannot
    collapse onto a charge."""

    lennard_jones: Scalar = 1.0
    lj_softness: Scalar = 0.0
    charge: Scalar = 1.0
    coulomb_softness: Scalar = 0.0


COUPLED = Coupling()
DECOUPLED = Coupling(lennard_jones=0.0, charge=0.0)


def dispersion_correction(sigma: np.ndarray, epsilon: np.ndarray, cutoff: float, volume: float) -> float:
    """OpenMM's long-range dispersion correction (kJ/mol) of particles with Lennard-Jones ``sigma`` (nm) and
    ``epsilon`` (kJ/mol), Lorentz-Berthelot pairs, truncated at ``cutoff`` (nm, no switch) in ``volume`` (nm^3):
    8 pi N^2 / V (<eps sigma^12> / (9 rc^9) - <eps sigma^6> / (3 rc^3)), averaged over the N (N + 1) / 2 pairs of
    particles, a particle with itself included."""
    classes, counts = np.unique(np.stack([sigma, epsilon], 1), axis=0, return_counts=True)
    n = len(sigma)
    sum12 = sum6 = 0.0
    for i, (sigma_i, epsilon_i) in enumerate(classes):
        for j in range(i, len(classes)):
            sigma_ij, epsilon_ij = 0.5 * (sigma_i + classes[j, 0]), math.sqrt(epsilon_i * classes[j, 1])
            count = counts[i] * (counts[i] + 1) / 2 if i == j else counts[i] * counts[j]
            sum12 += count * epsilon_ij * sigma_ij**12
            sum6 += count * epsilon_ij * sigma_ij**6
    pairs = n * (n + 1) / 2
    return 8 * math.pi * n**2 / volume * (sum12 / pairs / (9 * cutoff**9) - sum6 / pairs / (3 * cutoff**3))


class RigidSolvation:
    """The energy of a rigid solute among rigid waters in a cubic periodic box, read from an OpenMM ``system``.

    ``energy(x, coupling)`` of positions ``x: [B, N, 3]`` (nm) is, in kT at ``temperature`` (K): the water-water
    energy, plus the solute-water energy at ``coupling`` (see :class:`Coupling`), plus the solute's Ewald
    self-terms (its charges' interaction with their periodic images) scaled by ``coupling.charge`` squared, plus the
    intramolecular energies of the rigid molecules (constant; evaluated once by OpenMM on ``positions``), plus the
    dispersion correction, interpolated linearly in ``coupling.lennard_jones`` between the water alone and the
    whole system. At :data:`COUPLED` it is the OpenMM System's energy; at :data:`DECOUPLED` the water's energy in
    the box plus the solute's own in vacuum.

    Electrostatics are an Ewald sum: real space within the System's cutoff, splitting parameter alpha =
    sqrt(-ln(2 tolerance)) / cutoff (OpenMM's rule), reciprocal vectors 2 pi n / L with |n| up to alpha L
    sqrt(-ln tolerance) / pi; the System's Ewald error tolerance, or ``tolerance`` if given.

    ``positions`` (nm) hold every molecule in its exact rigid geometry, as MD keeps it: the rigid bodies of
    :meth:`rigid_bodies` and :meth:`interpolate` are read from them (the solute's and the first water's).
    """

    def __init__(self, system: openmm.System, positions: np.ndarray, n_solute: int, temperature: float = 298.15,
                 tolerance: float | None = None) -> None:
        import openmm

        nonbonded = [force for force in system.getForces() if isinstance(force, openmm.NonbondedForce)]
        if len(nonbonded) != 1:
            raise InputError(f"the System needs exactly one NonbondedForce, it has {len(nonbonded)}")
        force = nonbonded[0]
        if force.getNonbondedMethod() not in (openmm.NonbondedForce.PME, openmm.NonbondedForce.Ewald):
            raise InputError("the System's electrostatics must be Ewald or PME")
        if force.getUseSwitchingFunction():
            raise InputError("a switched Lennard-Jones cutoff is not supported; the System must truncate it")
        box = np.array([v.value_in_unit(openmm.unit.nanometer) for v in system.getDefaultPeriodicBoxVectors()])
        if not np.allclose(box, np.diag(np.diag(box))) or not np.allclose(np.diag(box), box[0, 0]):
            raise InputError("the System's box must be a cube")
        self.box = float(box[0, 0])
        self.cutoff = force.getCutoffDistance().value_in_unit(openmm.unit.nanometer)
        if self.cutoff > self.box / 2:
            raise InputError(f"the cutoff {self.cutoff} nm exceeds half the box ({self.box / 2:.3f} nm)")
        self.kT = MOLAR_GAS_CONSTANT * temperature
        self.temperature = temperature
        parameters = np.array([[p.value_in_unit_system(openmm.unit.md_unit_system) for p in
                                force.getParticleParameters(i)] for i in range(force.getNumParticles())])
        charge, sigma, epsilon = parameters.T
        n_atoms = len(charge)
        n_water = (n_atoms - n_solute) // 3
        if n_solute < 1 or n_atoms - n_solute != 3 * n_water or n_water < 1:
            raise InputError(f"{n_atoms} particles are not a solute of {n_solute} atoms and whole 3-site waters")
        self.n_solute, self.n_water = n_solute, n_water
        molecule = np.concatenate([np.zeros(n_solute, dtype=int), 1 + np.repeat(np.arange(n_water), 3)])
        self._check_exceptions(force, molecule)
        self.dispersion = force.getUseDispersionCorrection()
        self.tolerance = force.getEwaldErrorTolerance() if tolerance is None else tolerance
        self.alpha = math.sqrt(-math.log(2 * self.tolerance)) / self.cutoff
        self.charge = torch.as_tensor(charge, dtype=torch.float64)
        self.sigma = torch.as_tensor(sigma, dtype=torch.float64)
        self.epsilon = torch.as_tensor(epsilon, dtype=torch.float64)
        self.molecule = torch.as_tensor(molecule)
        self._k = self._reciprocal_vectors()
        k2 = (self._k**2).sum(1)
        self._k_weight = 4 * math.pi / self.box**3 * torch.exp(-k2 / (4 * self.alpha**2)) / k2
        """Each half-space vector's weight in the reciprocal energy, standing for itself and its negative."""
        first, second = np.triu_indices(3 * n_water, k=1)
        other = first // 3 != second // 3
        self._water_pairs = torch.as_tensor(np.stack([first[other], second[other]]) + n_solute)
        self._lj_pairs = self._lennard_jones_pairs(sigma[n_solute:], epsilon[n_solute:])
        volume = self.box**3
        if self.dispersion:
            self._dispersion = (dispersion_correction(sigma[n_solute:], epsilon[n_solute:], self.cutoff, volume),
                                dispersion_correction(sigma, epsilon, self.cutoff, volume))
        else:
            self._dispersion = (0.0, 0.0)
        self._system_xml = openmm.XmlSerializer.serialize(system)
        positions = torch.as_tensor(np.asarray(positions, dtype=float))
        self.intramolecular = self._intramolecular_energy(system, positions.numpy())
        """Constant energy (kJ/mol) of the molecules' own terms: the bonded ones and the exceptions."""
        self.solute_body = RigidBodies(self._whole(positions[None, :n_solute])[0] - positions[0])
        self.water_body = RigidBodies(self._whole(positions[None, n_solute:n_solute + 3])[0] - positions[n_solute])
        """The molecules' rigid geometries (nm), each about its first atom, from ``positions``."""

    @staticmethod
    def _check_exceptions(force: openmm.NonbondedForce, molecule: np.ndarray) -> None:
        excepted = set()
        for index in range(force.getNumExceptions()):
            i, j = force.getExceptionParameters(index)[:2]
            if molecule[i] != molecule[j]:
                raise InputError(f"atoms {i} and {j} of different molecules are an exception; only pairs within a "
                                 "molecule may be")
            excepted.add((min(i, j), max(i, j)))
        for m in np.unique(molecule):
            atoms = np.flatnonzero(molecule == m)
            missing = [(int(i), int(j)) for a, i in enumerate(atoms) for j in atoms[a + 1:] if (i, j) not in excepted]
            if missing:
                raise InputError(f"atoms {missing[0]} of one molecule are not an exception: a rigid solute here needs "
                                 "every pair of its atoms within three bonds (methane, water, ammonia, methanol...)")

    def _lennard_jones_pairs(self, sigma: np.ndarray, epsilon: np.ndarray) -> tuple[torch.Tensor, ...]:
        """The water pairs (indices into :attr:`_water_pairs`) with Lennard-Jones, and their sigma^2 and epsilon."""
        first, second = (index.numpy() - self.n_solute for index in self._water_pairs)
        pair_epsilon = np.sqrt(epsilon[first] * epsilon[second])
        which = np.flatnonzero(pair_epsilon > 0)
        pair_sigma2 = (0.5 * (sigma[first] + sigma[second])) ** 2
        return torch.as_tensor(which), torch.as_tensor(pair_sigma2[which]), torch.as_tensor(pair_epsilon[which])

    def _reciprocal_vectors(self) -> torch.Tensor:
        """Half of the nonzero reciprocal vectors (nm^-1) inside the sphere the tolerance asks for: ``[K, 3]``."""
        n_max = self.alpha * self.box * math.sqrt(-math.log(self.tolerance)) / math.pi
        m = int(math.ceil(n_max))
        grid = np.stack(np.meshgrid(*[np.arange(-m, m + 1)] * 3, indexing="ij"), -1).reshape(-1, 3)
        inside = (grid**2).sum(1) <= n_max**2
        half = (grid[:, 0] > 0) | ((grid[:, 0] == 0) & (grid[:, 1] > 0)) | \
            ((grid[:, 0] == 0) & (grid[:, 1] == 0) & (grid[:, 2] > 0))
        return torch.as_tensor(2 * math.pi * grid[inside & half] / self.box, dtype=torch.float64)

    def _intramolecular_energy(self, system: openmm.System, positions: np.ndarray) -> float:
        """OpenMM's energy (kJ/mol) of the molecules' bonded terms and exceptions at ``positions``, without the Ewald
        and Lennard-Jones sums (exceptions as direct pairs), for the rigid geometry."""
        import openmm

        copy = openmm.XmlSerializer.deserialize(openmm.XmlSerializer.serialize(system))
        for force in copy.getForces():
            if isinstance(force, openmm.NonbondedForce):
                force.setNonbondedMethod(openmm.NonbondedForce.NoCutoff)
                force.setUseDispersionCorrection(False)
                for i in range(force.getNumParticles()):
                    force.setParticleParameters(i, 0.0, 1.0, 0.0)
        context = openmm.Context(copy, openmm.VerletIntegrator(1e-3), openmm.Platform.getPlatformByName("Reference"))
        context.setPositions(positions)
        energy = context.getState(getEnergy=True).getPotentialEnergy()
        return energy.value_in_unit(openmm.unit.kilojoule_per_mole)

    def openmm_system(self, coupling: Coupling) -> openmm.System:
        """The System with the solute at a fixed ``coupling`` (floats), for MD anywhere on a path: its energy is
        :meth:`energy` (in kJ/mol) less the dispersion correction, a constant at constant volume. The solute's
        charges are scaled in the NonbondedForce (PME with this Ewald sum's alpha); its Lennard-Jones and the
        softening of its real-space Coulomb pairs with the water are a CustomNonbondedForce between the two."""
        import openmm

        system = openmm.XmlSerializer.deserialize(self._system_xml)
        force = _nonbonded(system)
        force.setUseDispersionCorrection(False)
        grid = math.ceil(2 * self.alpha * self.box / (3 * self.tolerance ** 0.2))
        force.setPMEParameters(self.alpha, grid, grid, grid)
        pair = openmm.CustomNonbondedForce(
            "lj * 4 * eps * (s^2 - s) + charge * k * q1 * q2 * (erfc(alpha * rs) / rs - erfc(alpha * r) / r);"
            "s = (sig2 / (soft * sig2 + r^2))^3; rs = sqrt(r^2 + csoft);"
            "sig2 = (0.5 * (sigma1 + sigma2))^2; eps = sqrt(epsilon1 * epsilon2)")
        values = {"lj": coupling.lennard_jones, "soft": coupling.lj_softness, "charge": coupling.charge,
                  "csoft": coupling.coulomb_softness, "alpha": self.alpha, "k": COULOMB_CONSTANT}
        for name, value in values.items():
            pair.addGlobalParameter(name, float(value))
        for name in ("q", "sigma", "epsilon"):
            pair.addPerParticleParameter(name)
        for i in range(self.n_atoms):
            charge, sigma, epsilon = force.getParticleParameters(i)
            pair.addParticle([charge, sigma, epsilon])
            if i < self.n_solute:
                force.setParticleParameters(i, charge * float(coupling.charge), sigma, 0.0)
        pair.setNonbondedMethod(openmm.CustomNonbondedForce.CutoffPeriodic)
        pair.setCutoffDistance(self.cutoff)
        pair.addInteractionGroup(range(self.n_solute), range(self.n_solute, self.n_atoms))
        for index in range(force.getNumExceptions()):  # OpenMM wants the same exclusions in both (all within molecules)
            pair.addExclusion(*force.getExceptionParameters(index)[:2])
        system.addForce(pair)
        return system

    def _whole(self, molecules: torch.Tensor) -> torch.Tensor:
        """``molecules: [..., A, 3]`` with every atom moved to the image nearest its molecule's first atom."""
        d = molecules - molecules[..., :1, :]
        return molecules[..., :1, :] + d - self.box * torch.round(d / self.box)

    def rigid_bodies(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Each molecule's first atom ``[B, 1 + M, 3]`` (nm; the solute first) and orientation, a unit quaternion
        ``[B, 1 + M, 4]``, of positions ``x: [B, N, 3]`` (best rigid fits, exact for the rigid geometry)."""
        n = self.n_solute
        solute = self._whole(x[:, None, :n]).flatten(1, 2)
        waters = self._whole(x[:, n:].reshape(len(x), -1, 3, 3)).flatten(1, 2)
        (solute_centre, solute_q), (water_centres, water_q) = \
            self.solute_body.bodies(solute), self.water_body.bodies(waters)
        return torch.cat([solute_centre, water_centres], 1), torch.cat([solute_q, water_q], 1)

    def positions(self, centres: torch.Tensor, quaternions: torch.Tensor) -> torch.Tensor:
        """Atom positions ``[B, N, 3]`` of the rigid bodies (the inverse of :meth:`rigid_bodies`)."""
        return torch.cat([self.solute_body.atoms(centres[:, :1], quaternions[:, :1]),
                          self.water_body.atoms(centres[:, 1:], quaternions[:, 1:])], 1)

    def align(self, x0: torch.Tensor, grad0: torch.Tensor, x1: torch.Tensor, grad1: torch.Tensor
              ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """Pair end states for interpolation: both translated so that the solute's first atom sits at the origin,
        and the waters of ``x1`` (with their gradients) relabelled to the nearest waters of ``x0`` (Hungarian
        assignment on the oxygens' minimum-image squared distances). Energies are unchanged: translations and
        relabelling whole waters are symmetries."""
        from molsamp.free_energy.neural_ti import centred, periodic_assignment

        x0, x1 = centred(x0, self.box), centred(x1, self.box)
        n = self.n_solute
        order = periodic_assignment(x0[:, n::3], x1[:, n::3], self.box)
        atoms = (n + 3 * order[:, :, None] + torch.arange(3, device=x1.device)).flatten(1)
        index = torch.cat([torch.arange(n, device=x1.device).expand(len(x1), -1), atoms], 1)
        index = index[..., None].expand(-1, -1, 3)
        return x0, grad0, torch.gather(x1, 1, index), torch.gather(grad1, 1, index)

    def interpolate(self, x0: torch.Tensor, x1: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """Rigid molecules moved a fraction ``t`` (``[B]``) of the way from ``x0`` to ``x1``: each molecule's first
        atom along the minimum-image straight line, its orientation along the shortest rotation (quaternion
        slerp). The molecules stay exactly rigid."""
        centres0, q0 = self.rigid_bodies(x0)
        centres1, q1 = self.rigid_bodies(x1)
        d = centres1 - centres0
        t = t.reshape(-1, 1, 1)
        centres = centres0 + t * (d - self.box * torch.round(d / self.box))
        return self.positions(centres, slerp(q0, q1, t))

    @property
    def n_atoms(self) -> int:
        return len(self.charge)

    @property
    def event_shape(self) -> tuple[int, int]:
        return (self.n_atoms, 3)

    def energy(self, x: torch.Tensor, coupling: Coupling = COUPLED) -> torch.Tensor:
        """Reduced energy ``[B]`` (kT) of positions ``x: [B, N, 3]`` (nm) at ``coupling``: :meth:`water_energy`
        plus :meth:`coupling_energy`."""
        return self.water_energy(x) + self.coupling_energy(x, coupling)

    def water_energy(self, x: torch.Tensor) -> torch.Tensor:
        """The part of the energy ``[B]`` (kT) that no coupling changes: the waters among themselves, the
        molecules' constant intramolecular terms and the water's dispersion correction."""
        self._check_shape(x)
        n = self.n_solute
        q = self.charge[n:].to(x)
        i, j = self._water_pairs[0].to(x.device), self._water_pairs[1].to(x.device)
        r2 = self._squared_distances(x[:, i], x[:, j])
        inside = r2 < self.cutoff**2
        coulomb = torch.where(inside, q[i - n] * q[j - n] * torch.erfc(self.alpha * torch.sqrt(r2)) / torch.sqrt(r2),
                              torch.zeros_like(r2)).sum(1)
        which, sigma2, epsilon = self._lj_pairs
        which = which.to(x.device)
        s = (sigma2.to(x) / r2[:, which]) ** 3
        lennard_jones = torch.where(inside[:, which], 4 * epsilon.to(x) * (s**2 - s), torch.zeros_like(s)).sum(1)
        cos, sin = self._structure_factor(x[:, n:], q)
        reciprocal = (self._k_weight.to(x) * (cos**2 + sin**2)).sum(1)
        own = self._own_terms(x[:, n:].reshape(len(x), -1, 3, 3), q.reshape(-1, 3), q.sum())
        energy = COULOMB_CONSTANT * (coulomb + reciprocal + own) + lennard_jones
        return (energy + self._dispersion[0] + self.intramolecular) / self.kT

    def coupling_energy(self, x: torch.Tensor, coupling: Coupling = COUPLED) -> torch.Tensor:
        """The part of the energy ``[B]`` (kT) that the ``coupling`` sets: the solute with the water and with its own
        periodic images, and the dispersion correction's change; 0 at :data:`DECOUPLED`."""
        self._check_shape(x)

        def per_batch(value: Scalar) -> torch.Tensor:
            return torch.as_tensor(value, dtype=x.dtype, device=x.device).reshape(-1, 1)

        lj, softness = per_batch(coupling.lennard_jones), per_batch(coupling.lj_softness)
        scale, coulomb_softness = per_batch(coupling.charge), per_batch(coupling.coulomb_softness)
        n = self.n_solute
        q, sigma, epsilon = (values.to(x) for values in (self.charge, self.sigma, self.epsilon))
        r2 = self._squared_distances(x[:, :n, None], x[:, None, n:]).flatten(1)  # [B, solute x water atoms]
        inside = r2 < self.cutoff**2
        pair_sigma2 = (0.5 * (sigma[:n, None] + sigma[None, n:])).flatten() ** 2
        pair_epsilon = torch.sqrt(epsilon[:n, None] * epsilon[None, n:]).flatten()
        s = (pair_sigma2 / (softness * pair_sigma2 + r2)) ** 3
        lennard_jones = lj[:, 0] * torch.where(inside, 4 * pair_epsilon * (s**2 - s), torch.zeros_like(r2)).sum(1)
        r = torch.sqrt(r2 + coulomb_softness)
        charge_products = (q[:n, None] * q[None, n:]).flatten()
        coulomb = torch.where(inside, charge_products * torch.erfc(self.alpha * r) / r, torch.zeros_like(r2)).sum(1)
        solute_cos, solute_sin = self._structure_factor(x[:, :n], q[:n])
        water_cos, water_sin = self._structure_factor(x[:, n:], q[n:])
        weight = self._k_weight.to(x)
        cross = (weight * (solute_cos * water_cos + solute_sin * water_sin)).sum(1)
        images = (weight * (solute_cos**2 + solute_sin**2)).sum(1) + \
            self._own_terms(x[:, None, :n], q[None, :n], q[:n].sum())
        background = -math.pi * q[:n].sum() * q[n:].sum() / (self.box**3 * self.alpha**2)
        scale = scale[:, 0]
        electrostatics = scale * (coulomb + 2 * cross + background) + scale**2 * images
        dispersion = lj[:, 0] * (self._dispersion[1] - self._dispersion[0])
        return (COULOMB_CONSTANT * electrostatics + lennard_jones + dispersion) / self.kT

    def _check_shape(self, x: torch.Tensor) -> None:
        if tuple(x.shape[1:]) != self.event_shape:
            raise InputError(f"positions have shape {tuple(x.shape)}; expected [B, {self.n_atoms}, 3]")

    def _squared_distances(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        d = a - b
        d = d - self.box * torch.round(d / self.box)
        return (d**2).sum(-1)

    def _structure_factor(self, x: torch.Tensor, q: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Real and imaginary parts ``[B, K]`` of sum_j q_j exp(i k . x_j) over the half space of vectors k."""
        phase = x @ self._k.to(x).T
        return (q[:, None] * torch.cos(phase)).sum(1), (q[:, None] * torch.sin(phase)).sum(1)

    def _own_terms(self, molecules: torch.Tensor, q: torch.Tensor, total: torch.Tensor) -> torch.Tensor:
        """Ewald's self-energy of charges ``q: [M, A]`` on ``molecules: [B, M, A, 3]``, the removal of the
        reciprocal sum's pairs within each molecule (all excepted), and the neutralising background of their net
        charge ``total`` (the solute's charges are rounded): in e^2 / nm."""
        size = molecules.shape[2]
        d = molecules[:, :, :, None] - molecules[:, :, None, :]
        d = d - self.box * torch.round(d / self.box)
        r = torch.sqrt((d**2).sum(-1) + torch.eye(size, dtype=d.dtype, device=d.device))
        upper = torch.triu(torch.ones(size, size, dtype=torch.bool, device=d.device), diagonal=1)
        pairs = torch.where(upper, q[:, :, None] * q[:, None, :] * torch.erf(self.alpha * r) / r, torch.zeros_like(r))
        return -self.alpha / math.sqrt(math.pi) * (q**2).sum() - pairs.sum((1, 2, 3)) - \
            math.pi * total**2 / (2 * self.box**3 * self.alpha**2)


def slerp(q0: torch.Tensor, q1: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """Unit quaternions a fraction ``t`` (broadcast against ``[..., 1]``) along the shortest rotation from ``q0``
    to ``q1`` (``[..., 4]``; q1 and -q1 are the same rotation, the nearer is taken)."""
    dot = (q0 * q1).sum(-1, keepdim=True)
    q1 = torch.where(dot < 0, -q1, q1)
    angle = torch.acos(torch.clamp(dot.abs(), max=1.0))
    small = angle < 1e-6
    sin = torch.where(small, torch.ones_like(angle), torch.sin(angle))
    w0 = torch.where(small, 1 - t, torch.sin((1 - t) * angle) / sin)
    w1 = torch.where(small, t.expand_as(angle), torch.sin(t * angle) / sin)
    q = w0 * q0 + w1 * q1
    return q / q.norm(dim=-1, keepdim=True)


def rigid_solvation_system(smiles: str, box: float = 1.9, cutoff: float | None = None, tolerance: float = 5e-4,
                           forcefield: str = "gaff2", charges: str = "am1bcc", clearance: float = 0.25,
                           pressure_equilibration: float = 60.0, temperature: float = 298.15,
                           cache_dir: str | None = None, seed: int = 0, platform: str | None = None
                           ) -> tuple[openmm.System, np.ndarray, int]:
    """An OpenMM System of the solute ``smiles`` (GAFF/GAFF2 and ``charges`` from
    :func:`molsamp.forcefields.parametrize`, at its energy minimum in vacuum) among rigid TIP3P waters filling a
    cube of ``box`` nm (OpenMM's equilibrated water box, less the waters with an atom within ``clearance`` nm of the
    solute at the centre), then brought to the density of 1 bar: ``pressure_equilibration`` ps of MD at 1 bar and
    ``temperature`` K (Monte Carlo barostat), the box fixed at its mean edge over the second half and the last
    frame's molecules moved with it (0: the filled box as it is, which OpenMM leaves about 10% too dilute). PME
    with real space and Lennard-Jones truncated at ``cutoff`` (default: the project's 0.9 nm, or 0.45 of ``box``
    if that is smaller, room for the box to shrink) with the dispersion correction, and Ewald error ``tolerance``.
    Water is rigid (constraints).

    The solute is rigid in MD: three of its atoms (the first, and the two spanning the largest triangle with it)
    are held by constraints, its other atoms are virtual sites in their frame, and those carry no mass (theirs is
    moved to the first atom); its energy terms are unchanged and constant.

    Returns the System, positions ``[N, 3]`` (nm), and the number of solute atoms (the first particles)."""
    import openmm
    import openmm.app as app

    from molsamp.forcefields import parametrize
    from molsamp.free_energy.legs import CUTOFF

    cutoff = min(CUTOFF, 0.45 * box) if cutoff is None else cutoff
    if cutoff > box / 2:
        raise InputError(f"the cutoff {cutoff} nm exceeds half the box ({box / 2:.3f} nm)")
    parameters = parametrize(smiles, forcefield=forcefield, cache_dir=cache_dir, seed=seed, charges=charges)
    solute = app.AmberPrmtopFile(str(parameters.prmtop)).createSystem(nonbondedMethod=app.NoCutoff)
    solute_positions = _minimum(solute, parameters.molecule.GetConformer().GetPositions() / 10.0)
    if abs(sum(_nonbonded(solute).getParticleParameters(i)[0].value_in_unit(openmm.unit.elementary_charge)
               for i in range(solute.getNumParticles()))) > 0.01:
        raise InputError(f"{smiles!r} is charged; only neutral solutes are supported")

    water_forcefield = app.ForceField("tip3p.xml")
    modeller = app.Modeller(app.Topology(), [])
    modeller.addSolvent(water_forcefield, model="tip3p", boxSize=openmm.Vec3(box, box, box))
    waters = np.asarray(modeller.getPositions().value_in_unit(openmm.unit.nanometer)).reshape(-1, 3, 3)
    centred = solute_positions - solute_positions.mean(0) + box / 2
    d = waters[:, :, None, :] - centred[None, None, :, :]
    d -= box * np.round(d / box)
    water_system = water_forcefield.createSystem(modeller.topology, nonbondedMethod=app.PME, rigidWater=True)
    water = RigidBodies(water_body(water_system))
    waters = water.atoms(*water.bodies(torch.as_tensor(waters.reshape(1, -1, 3)))).numpy().reshape(-1, 3, 3)
    waters = waters[(np.linalg.norm(d, axis=-1) > clearance).all((1, 2))]  # the file's geometry made exact above
    water_nonbonded = _nonbonded(water_system)

    system = openmm.System()
    system.setDefaultPeriodicBoxVectors(*np.eye(3) * box)
    for i in range(solute.getNumParticles()):
        system.addParticle(solute.getParticleMass(i))
    _make_rigid(system, solute_positions)
    for force in solute.getForces():
        if not isinstance(force, (openmm.NonbondedForce, openmm.CMMotionRemover)):
            system.addForce(openmm.XmlSerializer.deserialize(openmm.XmlSerializer.serialize(force)))
    nonbonded = openmm.NonbondedForce()
    nonbonded.setNonbondedMethod(openmm.NonbondedForce.PME)
    nonbonded.setCutoffDistance(cutoff)
    nonbonded.setEwaldErrorTolerance(tolerance)
    nonbonded.setUseDispersionCorrection(True)
    nonbonded.setUseSwitchingFunction(False)
    solute_nonbonded = _nonbonded(solute)
    for i in range(solute.getNumParticles()):
        nonbonded.addParticle(*solute_nonbonded.getParticleParameters(i))
    for index in range(solute_nonbonded.getNumExceptions()):
        nonbonded.addException(*solute_nonbonded.getExceptionParameters(index))
    n_solute = solute.getNumParticles()
    constraints = {tuple(sorted(c[:2])): c[2] for c in map(water_system.getConstraintParameters,
                                                            range(water_system.getNumConstraints()))}
    for w in range(len(waters)):
        first = system.getNumParticles()
        for site in range(3):
            system.addParticle(water_system.getParticleMass(site))
            nonbonded.addParticle(*water_nonbonded.getParticleParameters(site))
        for i, j in ((0, 1), (0, 2), (1, 2)):
            system.addConstraint(first + i, first + j, constraints[i, j])
            nonbonded.addException(first + i, first + j, 0.0, 1.0, 0.0)
    system.addForce(nonbonded)
    positions = np.concatenate([centred, waters.reshape(-1, 3)])
    if pressure_equilibration > 0:
        positions = _at_one_bar(system, positions, n_solute, pressure_equilibration, temperature, seed, platform)
    return system, positions, n_solute


def _at_one_bar(system: openmm.System, positions: np.ndarray, n_solute: int, picoseconds: float, temperature: float,
                seed: int, platform: str | None) -> np.ndarray:
    """Equilibrate ``system`` at 1 bar, set its box to the mean edge over the second half, and return the last
    frame with every molecule moved rigidly with the box (see :func:`rigid_solvation_system`)."""
    import openmm

    from molsamp.openmm_pool import create_context, minimise, openmm_seed, select_platform

    barostat = openmm.XmlSerializer.deserialize(openmm.XmlSerializer.serialize(system))
    barostat.addForce(openmm.MonteCarloBarostat(1.0, temperature, 25))
    integrator = openmm.LangevinMiddleIntegrator(temperature, 1.0, 0.002)
    integrator.setRandomNumberSeed(openmm_seed(seed))
    context = create_context(barostat, integrator, select_platform(platform, barostat))
    context.setPositions(positions)
    minimise(context, 1000)
    context.setVelocitiesToTemperature(temperature, openmm_seed(seed))
    steps, edges = round(picoseconds / 0.002), []
    for _ in range(50):
        integrator.step(steps // 50)
        edges.append(context.getState().getPeriodicBoxVectors()[0][0].value_in_unit(openmm.unit.nanometer))
    state = context.getState(getPositions=True)
    last = state.getPeriodicBoxVectors()[0][0].value_in_unit(openmm.unit.nanometer)
    edge = float(np.mean(edges[25:]))
    system.setDefaultPeriodicBoxVectors(*np.eye(3) * edge)
    x = np.asarray(state.getPositions(asNumpy=True).value_in_unit(openmm.unit.nanometer))
    first = np.concatenate([np.zeros(n_solute, dtype=int), n_solute + 3 * ((np.arange(len(x) - n_solute)) // 3)])
    return x + (edge / last - 1) * x[first]


class EndStateSamples(NamedTuple):
    """``x``: configurations ``[n, N, 3]`` (nm, float64, molecules whole, not wrapped); ``md_steps``: MD steps (one
    force evaluation each) spent on them, equilibration included."""

    x: np.ndarray
    md_steps: int


def end_state_samples(system: openmm.System, positions: np.ndarray, n_solute: int, coupled: bool, n_frames: int,
                      interval: float = 0.5, equilibration: float = 20.0, temperature: float = 298.15,
                      timestep: float = 0.002, seed: int = 0, platform: str | None = None,
                      progress: bool | None = None) -> EndStateSamples:
    """Configurations of a :func:`rigid_solvation_system` at one end of the coupling: Langevin MD (friction 1/ps,
    ``timestep`` ps, rigid molecules) at ``temperature`` K, ``equilibration`` ps discarded after a minimisation,
    then a frame every ``interval`` ps. ``coupled=False``: MD of the water with the solute's nonbonded parameters
    off, and in each frame the solute placed at a uniformly random position and orientation (exact, as the
    decoupled solute is independent of the water)."""
    import openmm
    from tqdm import tqdm

    from molsamp.flows.rigid_bodies import random_rotations
    from molsamp.openmm_pool import create_context, minimise, openmm_seed, select_platform

    system = openmm.XmlSerializer.deserialize(openmm.XmlSerializer.serialize(system))
    if not coupled:
        force = _nonbonded(system)
        for i in range(n_solute):
            force.setParticleParameters(i, 0.0, 1.0, 0.0)
    integrator = openmm.LangevinMiddleIntegrator(temperature, 1.0, timestep)
    integrator.setRandomNumberSeed(openmm_seed(seed))
    context = create_context(system, integrator, select_platform(platform, system))
    context.setPositions(positions)
    minimise(context, 1000)
    context.setVelocitiesToTemperature(temperature, openmm_seed(seed))
    steps_between, equilibration_steps = round(interval / timestep), round(equilibration / timestep)
    integrator.step(equilibration_steps)
    frames = []
    show = sys.stderr.isatty() if progress is None else progress
    for _ in tqdm(range(n_frames), disable=not show, unit="frame", desc="coupled MD" if coupled else "water MD"):
        integrator.step(steps_between)
        frames.append(context.getState(getPositions=True).getPositions(asNumpy=True)
                      .value_in_unit(openmm.unit.nanometer))
    x = np.asarray(frames, dtype=float)
    if not coupled:
        generator = torch.Generator().manual_seed(seed)
        body = torch.as_tensor(positions[:n_solute] - positions[0], dtype=torch.float64)
        rotations = random_rotations(n_frames, generator, torch.float64)
        centres = torch.rand(n_frames, 3, generator=generator, dtype=torch.float64) * _box(system)
        x[:, :n_solute] = (centres[:, None] + torch.einsum("nij,aj->nai", rotations, body)).numpy()
    return EndStateSamples(x, equilibration_steps + n_frames * steps_between)


def _box(system: openmm.System) -> float:
    import openmm

    return system.getDefaultPeriodicBoxVectors()[0][0].value_in_unit(openmm.unit.nanometer)


def _make_rigid(system: openmm.System, positions: np.ndarray) -> None:
    """Hold the first ``len(positions)`` particles of ``system`` rigid at ``positions`` (nm): see
    :func:`rigid_solvation_system`."""
    import openmm

    n = len(positions)
    if n < 3:
        raise InputError("a rigid solute needs at least 3 atoms (methane, water...)")
    area = {(i, j): np.linalg.norm(np.cross(positions[i] - positions[0], positions[j] - positions[0]))
            for i in range(1, n) for j in range(i + 1, n)}
    i, j = max(area, key=area.get)
    if area[i, j] < 1e-4:
        raise InputError("a rigid solute's atoms must not all lie on a line")
    anchors = [0, i, j]
    for a, b in ((0, i), (0, j), (i, j)):
        system.addConstraint(a, b, float(np.linalg.norm(positions[a] - positions[b])))
    origin, x_axis, y_axis = positions[0], positions[i] - positions[0], positions[j] - positions[0]
    z_axis = np.cross(x_axis, y_axis)
    x_axis, z_axis = x_axis / np.linalg.norm(x_axis), z_axis / np.linalg.norm(z_axis)
    frame = np.stack([x_axis, np.cross(z_axis, x_axis), z_axis])  # OpenMM's LocalCoordinatesSite frame
    for k in range(n):
        if k in anchors:
            continue
        site = openmm.LocalCoordinatesSite(anchors, [1, 0, 0], [-1, 1, 0], [-1, 0, 1],
                                           openmm.Vec3(*(frame @ (positions[k] - origin))))
        system.setVirtualSite(k, site)
        system.setParticleMass(0, system.getParticleMass(0) + system.getParticleMass(k))
        system.setParticleMass(k, 0.0)


def _nonbonded(system: openmm.System) -> openmm.NonbondedForce:
    import openmm

    return next(force for force in system.getForces() if isinstance(force, openmm.NonbondedForce))


def _minimum(system: openmm.System, positions: np.ndarray) -> np.ndarray:
    """``positions`` (nm) minimised in ``system`` (tightly: the rigid body sits at the energy minimum)."""
    import openmm

    context = openmm.Context(system, openmm.VerletIntegrator(1e-3), openmm.Platform.getPlatformByName("Reference"))
    context.setPositions(positions)
    openmm.LocalEnergyMinimizer.minimize(context, 1e-3, 0)
    return np.asarray(context.getState(getPositions=True).getPositions(asNumpy=True)
                      .value_in_unit(openmm.unit.nanometer))
