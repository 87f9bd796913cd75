"""A normalising flow for a molecule in internal coordinates: bond lengths, bond angles and torsions of a Z-matrix built
from the bond graph, transformed by coupling layers of rational-quadratic splines (zuko), circular ones on the torsions.

Configurations are Cartesian ``[B, N, 3]`` (nm) up to a rigid motion: the Z-matrix places its first atom at the origin,
its second on the x axis and its third in the xy plane, and the density is with respect to the measure that remains
after integrating out translations and rotations,

    dx = d(translation) d(rotation) * b_1^2 b_2^2 sin(theta_2) prod_i b_i^2 sin(theta_i) db dtheta dphi,

so that log q(x) = log q_ic(ic(x)) - log J(ic(x)) and the importance weights -u(x) - log q(x) are exact for the
Boltzmann density of the molecule (whose energy does not change under rigid motions). Drawn bond lengths <= 0 or
angles outside (0, pi) are not configurations: they get weight 0 (their energy is +inf), which keeps the weights
exact because the flow's support covers every configuration. Unlike an E(3)-equivariant flow, torsions carry the
handedness, so the flow learns the molecule's own stereoisomer from its data; a draw of another one is weighted by
the target (+inf energy with :class:`~molsamp.flows.molecule.StereoisomerTarget`).
"""

from __future__ import annotations

__all__ = ["ZMatrix", "InternalCoordinateFlow", "standardisation", "train_internal_flow"]

import math
from collections import deque
from collections.abc import Callable

import mdtraj
import torch
from torch import nn


class ZMatrix:
    """A Z-matrix of a molecule: an ``order`` of its atoms in which the second is bonded to the first, the third is
    placed by a bond to ``third[0]`` (one of the first two) and an angle with ``third[1]`` (the other), and every
    later atom by its ``references`` (parent, angle atom, torsion atom), three atoms placed before it: a bond length
    to the parent, a bond angle with the angle atom and a dihedral with the torsion atom. Build one from a bond graph
    with :meth:`from_topology`."""

    def __init__(self, order: list[int], third: list[int], references: list[list[int]]) -> None:
        n = len(order)
        if n < 4 or sorted(order) != list(range(n)) or len(references) != n - 3:
            raise ValueError(f"not a Z-matrix: {n} atoms in order, {len(references)} reference triples")
        self.order, self.third, self.references = list(order), list(third), [list(r) for r in references]
        self.n_atoms = n

    @property
    def config(self) -> dict:
        """The constructor's arguments (plain lists, for a checkpoint)."""
        return {"order": self.order, "third": self.third, "references": self.references}

    @classmethod
    def from_topology(cls, topology: mdtraj.Topology) -> ZMatrix:
        """References chosen from the bond graph by a breadth-first walk from the atom with the most heavy
        neighbours: each atom's parent is the atom it was reached from, the angle atom the parent's parent, the
        torsion atom a placed neighbour of the angle atom (a proper dihedral) where there is one.

        Raises ValueError for a molecule with fewer than 4 atoms or a bond graph that is not connected."""
        n = topology.n_atoms
        if n < 4:
            raise ValueError(f"a Z-matrix needs at least 4 atoms, not {n}")
        neighbours: list[list[int]] = [[] for _ in range(n)]
        for a, b in topology.bonds:
            neighbours[a.index].append(b.index)
            neighbours[b.index].append(a.index)
        heavy = [atom.element.symbol != "H" for atom in topology.atoms]
        root = max(range(n), key=lambda i: (sum(heavy[j] for j in neighbours[i]), len(neighbours[i]), -i))
        parent = {root: -1}
        order, queue = [root], deque([root])
        while queue:
            atom = queue.popleft()
            for other in sorted(neighbours[atom], key=lambda j: (not heavy[j], j)):
                if other not in parent:
                    parent[other] = atom
                    order.append(other)
                    queue.append(other)
        if len(order) != n:
            raise ValueError(f"the bond graph is not connected: {n - len(order)} of {n} atoms unreachable")
        placed = set(order[:3])
        references = []
        for atom in order[3:]:
            p = parent[atom]
            a = parent[p] if parent[p] >= 0 else next(j for j in neighbours[p] if j in placed and j != atom)
            candidates = [j for j in neighbours[a] if j in placed and j not in (p, atom)]
            candidates += [j for j in neighbours[p] if j in placed and j not in (a, atom)]
            candidates += [j for j in order if j in placed and j not in (p, a, atom)]
            references.append([p, a, candidates[0]])
            placed.add(atom)
        third_parent = parent[order[2]]
        return cls(order, [third_parent, order[1] if third_parent == order[0] else order[0]], references)

    @property
    def n_features(self) -> int:
        """3N - 6: N - 1 bond lengths, N - 2 angles, N - 3 torsions."""
        return 3 * self.n_atoms - 6

    def to_internal(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Bond lengths ``[B, N - 1]`` (x's unit), angles ``[B, N - 2]`` and torsions ``[B, N - 3]`` (rad, [-pi, pi))
        of Cartesian ``x: [B, N, 3]``."""
        a0, a1, a2 = self.order[:3]
        p2, q2 = self.third
        atoms = torch.as_tensor(self.order[3:], device=x.device)
        bonds = [_distance(x[:, a1], x[:, a0]), _distance(x[:, a2], x[:, p2])]
        angles = [_angle(x[:, a2], x[:, p2], x[:, q2])]
        p, a, d = torch.as_tensor(self.references, device=x.device).T
        bonds = torch.cat([torch.stack(bonds, 1), _distance(x[:, atoms], x[:, p])], 1)
        angles = torch.cat([torch.stack(angles, 1), _angle(x[:, atoms], x[:, p], x[:, a])], 1)
        return bonds, angles, _torsion(x[:, atoms], x[:, p], x[:, a], x[:, d])

    def to_cartesian(self, bonds: torch.Tensor, angles: torch.Tensor, torsions: torch.Tensor) -> torch.Tensor:
        """Cartesian ``[B, N, 3]`` with the first atom at the origin, the second on +x and the third in the xy plane
        (y > 0): the inverse of :meth:`to_internal` up to a rigid motion."""
        a0, a1, a2 = self.order[:3]
        p2 = self.third[0]
        batch = len(bonds)
        x = bonds.new_zeros(batch, self.n_atoms, 3)
        x[:, a1, 0] = bonds[:, 0]
        axis = 1.0 if p2 == a0 else -1.0  # direction from p2 towards q2 along x
        x[:, a2, 0] = x[:, p2, 0] + axis * bonds[:, 1] * torch.cos(angles[:, 0])
        x[:, a2, 1] = bonds[:, 1] * torch.sin(angles[:, 0])
        for k, (atom, (p, a, d)) in enumerate(zip(self.order[3:], self.references)):
            x[:, atom] = _place(x[:, p], x[:, a], x[:, d], bonds[:, k + 2], angles[:, k + 1], torsions[:, k])
        return x

    def log_jacobian(self, bonds: torch.Tensor, angles: torch.Tensor) -> torch.Tensor:
        """log J ``[B]``: the Cartesian volume per unit internal-coordinate volume, rigid motions integrated out."""
        return 2 * bonds.log().sum(1) + angles.sin().log().sum(1)


def _distance(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return (x - y).norm(dim=-1)


def _angle(x: torch.Tensor, centre: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    u, v = x - centre, y - centre
    return torch.atan2(torch.linalg.cross(u, v).norm(dim=-1), (u * v).sum(-1))


def _torsion(x: torch.Tensor, p: torch.Tensor, a: torch.Tensor, d: torch.Tensor) -> torch.Tensor:
    """The dihedral x-p-a-d (rad)."""
    b0, b1, b2 = p - x, a - p, d - a
    n1, n2 = torch.linalg.cross(b0, b1), torch.linalg.cross(b1, b2)
    m = torch.linalg.cross(n1, b1 / b1.norm(dim=-1, keepdim=True))
    return torch.atan2((m * n2).sum(-1), (n1 * n2).sum(-1))


def _place(p: torch.Tensor, a: torch.Tensor, d: torch.Tensor, bond: torch.Tensor, angle: torch.Tensor,
           torsion: torch.Tensor) -> torch.Tensor:
    """The position whose bond to ``p``, angle with ``a`` and dihedral with ``a``, ``d`` are given (NeRF)."""
    u = p - a
    u = u / u.norm(dim=-1, keepdim=True)
    normal = torch.linalg.cross(a - d, u)
    normal = normal / normal.norm(dim=-1, keepdim=True)
    m = torch.linalg.cross(normal, u)
    local = torch.stack([-bond * torch.cos(angle), bond * torch.sin(angle) * torch.cos(torsion),
                         -bond * torch.sin(angle) * torch.sin(torsion)], -1)
    return p + local[..., :1] * u + local[..., 1:2] * m + local[..., 2:] * normal


class _Coupling(nn.Module):
    """Rational-quadratic splines (zuko) on the features outside ``mask``, their parameters computed by an MLP from
    the features inside (torsions fed as cos and sin): monotone splines on [-bound, bound] (the identity outside) for
    the standardised bond lengths and angles, circular splines on [-pi, pi) for the torsions. The identity at
    initialisation (the MLP's output starts at zero)."""

    def __init__(self, mask: torch.Tensor, periodic: torch.Tensor, hidden: int, bins: int, bound: float) -> None:
        super().__init__()
        self.register_buffer("mask", mask)
        self.register_buffer("given_periodic", periodic[mask])
        self.register_buffer("moved_periodic", periodic[~mask])
        n_in = int(mask.sum() + self.given_periodic.sum())
        n_out = int((~mask).sum()) * (3 * bins - 1)
        self.net = nn.Sequential(nn.Linear(n_in, hidden), nn.SiLU(), nn.Linear(hidden, hidden), nn.SiLU(),
                                 nn.Linear(hidden, n_out))
        nn.init.zeros_(self.net[-1].weight)
        nn.init.zeros_(self.net[-1].bias)
        self.bins, self.bound = bins, bound

    def _splines(self, z: torch.Tensor):
        from zuko.transforms import CircularShiftTransform, ComposedTransform, MonotonicRQSTransform

        given = z[:, self.mask]
        angles = given[:, self.given_periodic]
        features = torch.cat([given[:, ~self.given_periodic], angles.cos(), angles.sin()], 1)
        parameters = self.net(features).reshape(len(z), -1, 3 * self.bins - 1)
        widths, heights, derivatives = parameters.split([self.bins, self.bins, self.bins - 1], -1)
        linear = MonotonicRQSTransform(*(p[:, ~self.moved_periodic] for p in (widths, heights, derivatives)),
                                       bound=self.bound)
        circular = ComposedTransform(CircularShiftTransform(bound=math.pi), MonotonicRQSTransform(
            *(p[:, self.moved_periodic] for p in (widths, heights, derivatives)), bound=math.pi))
        return linear, circular

    def _apply_splines(self, z: torch.Tensor, inverse: bool) -> tuple[torch.Tensor, torch.Tensor]:
        linear, circular = self._splines(z)
        moved = z[:, ~self.mask]
        out_moved = torch.empty_like(moved)
        log_det = z.new_zeros(len(z))
        for spline, columns in ((linear, ~self.moved_periodic), (circular, self.moved_periodic)):
            if columns.any():
                values = moved[:, columns]
                if inverse:
                    values = spline.inv(values)
                    log_det = log_det - spline.call_and_ladj(values)[1].sum(-1)
                else:
                    values, ladj = spline.call_and_ladj(values)
                    log_det = log_det + ladj.sum(-1)
                out_moved[:, columns] = values
        out = z.clone()
        out[:, ~self.mask] = out_moved
        return out, log_det

    def forward(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self._apply_splines(z, inverse=False)

    def inverse(self, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self._apply_splines(y, inverse=True)


class InternalCoordinateFlow(nn.Module):
    """q(x) over configurations ``[B, N, 3]`` (nm) of one molecule up to rigid motions (module docstring), a
    :class:`~molsamp.distributions.Distribution` with exact log-densities from one pass of coupling layers.

    Features: log bond lengths and logits of angle / pi, each standardised by ``mean`` and ``std`` (``[2N - 3]``, of
    the training data), and torsions in [-pi, pi); the base is a standard normal on the first and uniform on the
    torsions. Every feature vector is a valid configuration, so every draw is one.

    Args:
        zmatrix: the molecule's :class:`ZMatrix` (or its ``config``).
        mean, std: standardisation ``[2N - 3]`` of the log bond lengths and angle logits (of the training data;
            default 0 and 1, as when the weights are loaded afterwards).
        layers: coupling layers (masks alternate between random halves of the features and their complements).
        hidden, bins, bound: MLP width, spline bins, range [-bound, bound] of the monotone splines.
        seed: of the random masks.
    """

    def __init__(self, zmatrix: ZMatrix | dict, mean: torch.Tensor | None = None, std: torch.Tensor | None = None,
                 layers: int = 8, hidden: int = 256, bins: int = 8, bound: float = 5.0, seed: int = 0) -> None:
        super().__init__()
        self.zmatrix = zmatrix if isinstance(zmatrix, ZMatrix) else ZMatrix(**zmatrix)
        n, d = self.zmatrix.n_atoms, self.zmatrix.n_features
        self.config = {"zmatrix": self.zmatrix.config, "layers": layers, "hidden": hidden, "bins": bins,
                       "bound": bound, "seed": seed}
        self.event_shape = torch.Size((n, 3))
        self.register_buffer("mean", torch.zeros(2 * n - 3) if mean is None else torch.as_tensor(mean).float().clone())
        self.register_buffer("std", torch.ones(2 * n - 3) if std is None else torch.as_tensor(std).float().clone())
        periodic = torch.arange(d) >= 2 * n - 3
        generator = torch.Generator().manual_seed(seed)
        couplings = []
        for k in range(layers):
            if k % 2 == 0:
                mask = torch.zeros(d, dtype=torch.bool)
                mask[torch.randperm(d, generator=generator)[: d // 2]] = True
            couplings.append(_Coupling(mask if k % 2 == 0 else ~mask, periodic, hidden, bins, bound))
        self.couplings = nn.ModuleList(couplings)
        self.n_linear = 2 * n - 3

    def _base_log_prob(self, z: torch.Tensor) -> torch.Tensor:
        linear = z[:, : self.n_linear]
        return (-0.5 * (linear**2).sum(1) - 0.5 * self.n_linear * math.log(2 * math.pi)
                - (z.shape[1] - self.n_linear) * math.log(2 * math.pi))

    def features(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Features ``[B, 3N - 6]`` of ``x: [B, N, 3]`` and log |d features / dx| ``[B]`` (rigid motions out)."""
        bonds, angles, torsions = self.zmatrix.to_internal(x)
        y = _unbounded(bonds, angles)
        f = (y - self.mean.to(y)) / self.std.to(y)
        return torch.cat([f, torsions], 1), self._log_det(bonds, angles)

    def configurations(self, f: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Centred Cartesian ``[B, N, 3]`` of features ``f`` and log |d features / dx| ``[B]``."""
        y = f[:, : self.n_linear] * self.std.to(f) + self.mean.to(f)
        n = self.zmatrix.n_atoms
        bonds, angles = y[:, : n - 1].exp(), math.pi * torch.sigmoid(y[:, n - 1:])
        x = self.zmatrix.to_cartesian(bonds, angles, f[:, self.n_linear:])
        return x - x.mean(1, keepdim=True), self._log_det(bonds, angles)

    def _log_det(self, bonds: torch.Tensor, angles: torch.Tensor) -> torch.Tensor:
        """log |d features / dx| ``[B]``: d log b / db = 1 / b, d logit(a / pi) / da = 1 / (a (1 - a / pi)), the
        standardisation, and the Z-matrix's 1 / J."""
        return (-bonds.log().sum(1) - (angles * (1 - angles / math.pi)).log().sum(1)
                - self.std.to(bonds).log().sum() - self.zmatrix.log_jacobian(bonds, angles))

    def log_prob(self, x: torch.Tensor, context: None = None) -> torch.Tensor:
        """Log-density ``[B]`` at ``x: [B, N, 3]`` (any position and orientation)."""
        if context is not None:
            raise ValueError("an InternalCoordinateFlow is unconditional: context must be None")
        f, log_det = self.features(x)
        z, total = f, log_det
        for coupling in reversed(self.couplings):
            z, step = coupling.inverse(z)
            total = total + step
        return self._base_log_prob(z) + total

    def sample_and_log_prob(self, n: int, generator: torch.Generator | None = None, context: None = None
                            ) -> tuple[torch.Tensor, torch.Tensor]:
        """``n`` centred configurations ``[n, N, 3]`` and their log-densities ``[n]``."""
        if context is not None:
            raise ValueError("an InternalCoordinateFlow is unconditional: context must be None")
        parameter = self.mean
        d = self.zmatrix.n_features
        z = torch.randn(n, d, generator=generator, dtype=parameter.dtype, device=parameter.device)
        uniform = torch.rand(n, d - self.n_linear, generator=generator, dtype=parameter.dtype, device=parameter.device)
        z[:, self.n_linear:] = (2 * uniform - 1) * math.pi
        log_q = self._base_log_prob(z)
        f = z
        for coupling in self.couplings:
            f, step = coupling(f)
            log_q = log_q - step
        x, log_det = self.configurations(f)
        return x, log_q + log_det

    def sample(self, n: int, generator: torch.Generator | None = None, context: None = None) -> torch.Tensor:
        return self.sample_and_log_prob(n, generator, context)[0]


def train_internal_flow(flow: InternalCoordinateFlow, data: torch.Tensor, steps: int = 1500, batch_size: int = 256,
                        learning_rate: float = 1e-3, seed: int = 0, target=None, energy_steps: int = 0,
                        energy_learning_rate: float = 3e-4, energy_cutoff: float = 100.0,
                        progress: bool | None = None, log: Callable[[dict], None] | None = None,
                        average: float | None = None) -> list[float]:
    """Fit ``flow`` to configurations ``data: [M, N, 3]``: ``steps`` of maximum likelihood (Adam from
    ``learning_rate``, cosine-decayed), then, with a ``target`` whose reduced energy u(x) is differentiable,
    ``energy_steps`` of maximum likelihood plus the reverse KL E_q[u + log q] on the flow's own draws (the combined
    loss of Noe et al., Science 2019) from ``energy_learning_rate``, cosine-decayed, gradients clipped to norm 100.

    Maximum likelihood alone fits the data but leaves the flow's weights degenerate (a 60-dimensional density
    learned from correlated MD frames); the energy term trains the flow on the target itself. Above
    ``energy_cutoff`` kT over the data's median energy, u enters the loss as cutoff + log(1 + u - cutoff), so that
    clashing draws do not dominate the gradient; draws with a non-finite energy are left out of the step. Returns
    the loss of every step; ``log`` gets the losses. ``average``: each stage ends with an exponential moving average
    of the weights of that decay (see :func:`~molsamp.flows.optimisation.minimise`)."""
    from molsamp.flows.optimisation import minimise

    generator = torch.Generator().manual_seed(seed)
    data = data.to(flow.mean)

    def likelihood() -> torch.Tensor:
        index = torch.randint(len(data), (batch_size,), generator=generator)
        return -flow.log_prob(data[index.to(data.device)]).mean()

    losses = minimise(flow, likelihood, steps, learning_rate, progress, log, description="maximum likelihood",
                      average=average)
    if target is None or energy_steps == 0:
        return losses
    with torch.no_grad():
        cutoff = float(target.energy(data[:1000].double()).nanmedian()) + energy_cutoff

    def combined() -> torch.Tensor:
        x, log_q = flow.sample_and_log_prob(batch_size, generator)
        u = target.energy(x.double()).to(log_q)
        finite = torch.isfinite(u)  # an overflow (atoms on top of each other) is dropped, not trained on
        u, log_q = u[finite], log_q[finite]
        u = torch.where(u < cutoff, u, cutoff + torch.log1p((u - cutoff).clamp(min=0)))
        return likelihood() + (u + log_q).mean()

    return losses + minimise(flow, combined, energy_steps, energy_learning_rate, progress,
                             None if log is None else lambda entry: log({**entry, "step": steps + entry["step"]}),
                             description="likelihood + energy", max_grad_norm=100.0, average=average)


def standardisation(zmatrix: ZMatrix, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean and standard deviation ``[2N - 3]`` of the log bond lengths and angle logits of ``x: [M, N, 3]``: the
    ``mean`` and ``std`` of an :class:`InternalCoordinateFlow` for these data."""
    y = _unbounded(*zmatrix.to_internal(x.double())[:2])
    return y.mean(0), y.std(0)


def _unbounded(bonds: torch.Tensor, angles: torch.Tensor) -> torch.Tensor:
    """``[B, 2N - 3]``: log bond lengths and logit(angle / pi), the flow's bond and angle features before
    standardisation (any real values are a valid configuration)."""
    return torch.cat([bonds.log(), torch.logit(angles / math.pi)], 1)
