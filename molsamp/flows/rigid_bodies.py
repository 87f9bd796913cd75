"""Rigid molecules as rigid bodies: one reference point (nm) and one unit quaternion per molecule, to and from atom
positions, with the molecule's geometry kept exactly.

A unit quaternion q = (w, x, y, z) rotates the molecule's body-frame coordinates into the lab frame; q and -q are
the same rotation (the unit sphere S^3 covers SO(3) twice), so a density over orientations is a density over S^3
that is the same at q and -q. :func:`matrix_to_quaternion` returns the representative with w >= 0.
"""

from __future__ import annotations

__all__ = ["quaternion_to_matrix", "random_rotations", "matrix_to_quaternion", "check_unit_quaternions", "RigidBodies",
           "water_body", "RigidBodyTarget", "HarmonicWells"]

from typing import TYPE_CHECKING

import numpy as np
import torch

from molsamp.errors import InputError

if TYPE_CHECKING:
    import openmm

    from molsamp.targets import Target


def check_unit_quaternions(q: torch.Tensor, atol: float = 1e-6) -> None:
    """:class:`InputError` unless every quaternion of ``q: [..., 4]`` has norm 1 to ``atol``."""
    if q.shape[-1] != 4:
        raise InputError(f"quaternions have shape {tuple(q.shape)}; the last axis must hold 4 numbers (w, x, y, z)")
    error = (q.norm(dim=-1) - 1).abs()
    if bool((error > atol).any()):
        raise InputError(f"quaternions must have norm 1: one is off by {float(error.max()):.3g} "
                         "(normalise them first)")


def quaternion_to_matrix(q: torch.Tensor) -> torch.Tensor:
    """Rotation matrices ``[..., 3, 3]`` of unit quaternions ``q: [..., 4]`` (w, x, y, z); R(q) = R(-q)."""
    w, x, y, z = q.unbind(-1)
    rows = [1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y),
            2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x),
            2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)]
    return torch.stack(rows, -1).reshape(*q.shape[:-1], 3, 3)


def random_rotations(n: int, generator: torch.Generator | None = None, dtype: torch.dtype = torch.float32
                     ) -> torch.Tensor:
    """``[n, 3, 3]`` rotation matrices uniform on SO(3) (from uniform unit quaternions)."""
    q = torch.randn(n, 4, generator=generator, dtype=dtype)
    return quaternion_to_matrix(q / q.norm(dim=1, keepdim=True))


def matrix_to_quaternion(rotation: torch.Tensor) -> torch.Tensor:
    """Unit quaternions ``[..., 4]`` with w >= 0 of rotation matrices ``[..., 3, 3]``: the unit eigenvector of the
    largest eigenvalue of Bar-Itzhack's symmetric 4 x 4 matrix, accurate for every rotation (no division by a small
    trace)."""
    r = rotation
    k = torch.stack([
        torch.stack([r[..., 0, 0] + r[..., 1, 1] + r[..., 2, 2], r[..., 2, 1] - r[..., 1, 2],
                     r[..., 0, 2] - r[..., 2, 0], r[..., 1, 0] - r[..., 0, 1]], -1),
        torch.stack([r[..., 2, 1] - r[..., 1, 2], r[..., 0, 0] - r[..., 1, 1] - r[..., 2, 2],
                     r[..., 0, 1] + r[..., 1, 0], r[..., 0, 2] + r[..., 2, 0]], -1),
        torch.stack([r[..., 0, 2] - r[..., 2, 0], r[..., 0, 1] + r[..., 1, 0],
                     r[..., 1, 1] - r[..., 0, 0] - r[..., 2, 2], r[..., 1, 2] + r[..., 2, 1]], -1),
        torch.stack([r[..., 1, 0] - r[..., 0, 1], r[..., 0, 2] + r[..., 2, 0], r[..., 1, 2] + r[..., 2, 1],
                     r[..., 2, 2] - r[..., 0, 0] - r[..., 1, 1]], -1),
    ], -2) / 3
    q = torch.linalg.eigh(k).eigenvectors[..., -1]
    return torch.where(q[..., :1] < 0, -q, q)


class RigidBodies:
    """M copies of one rigid molecule of A atoms: reference points ``[B, M, 3]`` and unit quaternions ``[B, M, 4]``
    to atom positions ``[B, M * A, 3]`` (molecule by molecule, atoms in the body's order), and back.

    Args:
        body: the molecule's atom coordinates ``[A, 3]`` (nm) in its body frame, the reference point at the origin.
    """

    def __init__(self, body: torch.Tensor) -> None:
        body = torch.as_tensor(body)
        if body.ndim != 2 or body.shape[1] != 3 or len(body) < 3:
            raise InputError(f"a rigid body needs at least 3 atoms in 3D, got coordinates of shape {tuple(body.shape)}")
        self.body = body

    def atoms(self, centres: torch.Tensor, quaternions: torch.Tensor) -> torch.Tensor:
        """Atom positions ``[B, M * A, 3]`` of molecules at ``centres: [B, M, 3]`` turned by unit ``quaternions:
        [B, M, 4]``."""
        check_unit_quaternions(quaternions)
        rotated = torch.einsum("bmij,aj->bmai", quaternion_to_matrix(quaternions), self.body.to(quaternions))
        return (centres[:, :, None, :] + rotated).flatten(1, 2)

    def bodies(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Reference points ``[B, M, 3]`` and quaternions (w >= 0) ``[B, M, 4]`` of atom positions ``x: [B, M * A,
        3]``: the best rigid fit of the body to each molecule (Kabsch), exact when the molecules are rigid copies
        of the body."""
        n_atoms = len(self.body)
        if x.shape[1] % n_atoms:
            raise InputError(f"{x.shape[1]} atoms are not whole molecules of {n_atoms} atoms")
        molecules = x.reshape(len(x), -1, n_atoms, 3)
        body = self.body.to(x)
        body_mean = body.mean(0)
        mean = molecules.mean(2)
        covariance = torch.einsum("bmai,aj->bmij", molecules - mean[:, :, None], body - body_mean)
        u, _, vt = torch.linalg.svd(covariance)
        sign = torch.sign(torch.linalg.det(u @ vt))  # a proper rotation, never a reflection
        flip = torch.ones_like(covariance[..., 0])
        flip[..., 2] = sign
        rotation = u @ torch.diag_embed(flip) @ vt
        centres = mean - torch.einsum("bmij,j->bmi", rotation, body_mean)
        return centres, matrix_to_quaternion(rotation)


def water_body(system: openmm.System) -> torch.Tensor:
    """Body-frame coordinates ``[S, 3]`` (nm, float64) of the rigid water model of an OpenMM System of identical
    waters, sites in the System's order (O, H, H, then virtual sites): O at the origin, the H-O-H bisector along +z,
    the molecule in the xz plane. Read from the first molecule's constraints (O-H, O-H, H-H distances) and virtual-site
    weights, so it is the geometry that MD's SETTLE keeps."""
    import openmm

    constraints = {}
    for index in range(system.getNumConstraints()):
        i, j, distance = system.getConstraintParameters(index)
        constraints[frozenset((i, j))] = distance.value_in_unit(openmm.unit.nanometer)
    try:
        oh1, oh2, hh = (constraints[frozenset(pair)] for pair in ((0, 1), (0, 2), (1, 2)))
    except KeyError:
        raise InputError("water_body needs rigid water: constraints O-H, O-H and H-H on particles 0, 1, 2 "
                         "(build the System with rigidWater=True)") from None
    if not np.isclose(oh1, oh2):
        raise InputError(f"water_body needs a symmetric water, got O-H distances {oh1} and {oh2} nm")
    height = np.sqrt(oh1**2 - (hh / 2) ** 2)
    sites = [[0.0, 0.0, 0.0], [hh / 2, 0.0, height], [-hh / 2, 0.0, height]]
    index = 3
    while index < system.getNumParticles() and system.isVirtualSite(index):
        site = system.getVirtualSite(index)
        if not isinstance(site, openmm.ThreeParticleAverageSite) or \
                [site.getParticle(k) for k in range(3)] != [0, 1, 2]:
            raise InputError(f"virtual site {index} is not an average of particles 0, 1, 2 (O, H, H)")
        sites.append(list(sum(site.getWeight(k) * np.array(sites[k]) for k in range(3))))
        index += 1
    if system.getNumParticles() % len(sites):
        raise InputError(f"{system.getNumParticles()} particles are not whole waters of {len(sites)} sites")
    return torch.tensor(sites, dtype=torch.float64)


class RigidBodyTarget:
    """The energy of rigid molecules as a function of their rigid-body coordinates: ``state: [B, M, 7]`` holds each
    molecule's reference point (nm) and unit quaternion (w, x, y, z); the energy (kT) is ``target``'s at the atom
    positions :meth:`RigidBodies.atoms` gives, with gradients carried back through the exact geometry.

    Args:
        target: the energy of atom positions ``[B, M * A, 3]``, e.g. an :class:`~molsamp.targets.OpenMMTarget`.
        bodies: the molecule's rigid geometry.
    """

    def __init__(self, target: Target, bodies: RigidBodies) -> None:
        n_atoms = target.event_shape[0]
        if n_atoms % len(bodies.body):
            raise InputError(f"{n_atoms} atoms are not whole molecules of {len(bodies.body)} atoms")
        self.target, self.bodies = target, bodies
        self.n_molecules = n_atoms // len(bodies.body)
        self.event_shape = (self.n_molecules, 7)
        self.kT = target.kT

    def energy(self, state: torch.Tensor) -> torch.Tensor:
        """Reduced energies ``[B]`` (kT) of rigid-body coordinates ``state: [B, M, 7]``."""
        if tuple(state.shape[1:]) != self.event_shape:
            raise InputError(f"rigid-body coordinates have shape {tuple(state.shape)}; expected [B, "
                             f"{self.n_molecules}, 7] (reference point, unit quaternion)")
        return self.target.energy(self.bodies.atoms(state[..., :3], state[..., 3:]))

    __call__ = energy

    def close(self) -> None:
        """Stop the atom target's workers, if it has any (idempotent)."""
        if hasattr(self.target, "close"):
            self.target.close()

    def __enter__(self) -> RigidBodyTarget:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class HarmonicWells:
    """A toy with a known answer: M independent rigid molecules in a periodic box, each in a harmonic well around its
    site and an orientational well around its lattice orientation,
    u = sum_i k / 2 |d_i|^2 - kappa (q_i . q0_i)^2 (kT), with d_i the minimum-image displacement (nm) from site i;
    the orientational term is the same at q and -q.

    Its normalising constant (Lebesgue in nm^3 per molecule, Haar in the Euler normalisation 8 pi^2 per orientation)
    is exact: per coordinate, sqrt(2 pi / k) erf(L / 2 sqrt(k / 2)); per orientation,
    8 pi^2 exp(kappa / 2) (I0(kappa / 2) - I1(kappa / 2)).

    Args:
        sites: ``[M, 3]`` (nm).
        orientations: ``[M, 4]`` unit quaternions.
        box: ``[3]`` box edges (nm).
        stiffness: k (kT / nm^2).
        concentration: kappa (kT).
    """

    def __init__(self, sites: torch.Tensor, orientations: torch.Tensor, box: torch.Tensor, stiffness: float,
                 concentration: float) -> None:
        self.sites = torch.as_tensor(sites, dtype=torch.float64)
        self.orientations = torch.as_tensor(orientations, dtype=torch.float64)
        check_unit_quaternions(self.orientations)
        self.box = torch.as_tensor(box, dtype=torch.float64)
        self.stiffness, self.concentration = float(stiffness), float(concentration)
        self.event_shape = (len(self.sites), 7)
        self.kT = 1.0

    def energy(self, state: torch.Tensor) -> torch.Tensor:
        """Reduced energies ``[B]`` of rigid-body states ``[B, M, 7]``."""
        box = self.box.to(state)
        displacement = state[..., :3] - self.sites.to(state)
        displacement = displacement - box * torch.round(displacement / box)
        alignment = (state[..., 3:] * self.orientations.to(state)).sum(-1)
        return (0.5 * self.stiffness * displacement.pow(2).sum(-1) - self.concentration * alignment**2).sum(-1)

    __call__ = energy

    def log_partition_function(self) -> float:
        """log Z, exact."""
        from scipy.special import erf, ive

        k, half = self.stiffness, self.box.numpy() / 2
        position = float(np.sum(0.5 * np.log(2 * np.pi / k) + np.log(erf(half * np.sqrt(k / 2)))))
        a = self.concentration / 2
        orientation = np.log(8 * np.pi**2) + self.concentration + np.log(ive(0, a) - ive(1, a))
        return len(self.sites) * (position + float(orientation))
