"""Equivariant flow matching (Klein, Kramer and Noe, NeurIPS 2023): regress the flow's vector field on the straight
paths between prior draws and data, with the prior draws paired to the data by minibatch optimal transport and
aligned to their partners over the symmetries of identical particles (permutations by the Hungarian method,
rotations and reflections by Kabsch), so that the paths are short and the learned flow nearly straight.

Any coupling whose marginals are the prior and the data gives a flow from one to the other. The alignment keeps the
prior marginal because the prior and the (augmented) data are invariant under the symmetries: only the orientation
and labelling of each prior draw change, never its shape.
"""

from __future__ import annotations

__all__ = ["align", "pair", "flow_matching_loss", "train_flow_matching", "random_symmetry"]

from collections.abc import Callable

import numpy as np
import torch

from molsamp.flows.cnf import EquivariantFlow, centred


def _kabsch(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """The orthogonal matrix R ``[D, D]`` (rotation or reflection) that minimises |x R - y| for ``x, y: [N, D]``."""
    u, _, vt = np.linalg.svd(x.T @ y)
    return u @ vt


def _best_permutation(x: np.ndarray, y: np.ndarray, different_type: np.ndarray | None) -> np.ndarray:
    """For each particle of y, the particle of x matched to it (Hungarian method on squared distances), never
    across types (``different_type: [N, N]`` boolean, or None when all particles are identical)."""
    from scipy.optimize import linear_sum_assignment

    cost = ((x[:, None, :] - y[None, :, :]) ** 2).sum(-1)
    if different_type is not None:
        cost = np.where(different_type, np.inf, cost)
    return linear_sum_assignment(cost.T)[1]


def _type_mask(types: list[int] | None) -> np.ndarray | None:
    return None if types is None else np.not_equal.outer(types, types)


def align(x: torch.Tensor, y: torch.Tensor, rounds: int = 4, types: list[int] | None = None) -> torch.Tensor:
    """Each configuration of ``x: [B, N, D]`` relabelled (within each atom type of ``types``, default: all
    particles identical) and rotated (or reflected) towards its partner in ``y: [B, N, D]`` (both centred):
    particles first matched by their distance from the centre (which no rotation changes), then alternating Kabsch
    rotation and Hungarian relabelling, ``rounds`` times. A local search: it finds an exact rotated and relabelled
    copy most of the time, not always."""
    out = centred(x).detach().cpu().double().numpy().copy()
    target = centred(y).detach().cpu().double().numpy()
    mask = _type_mask(types)
    for b in range(len(out)):
        radii = np.linalg.norm(out[b], axis=1)[:, None], np.linalg.norm(target[b], axis=1)[:, None]
        out[b] = out[b][_best_permutation(*radii, mask)]
        for _ in range(rounds):
            out[b] = out[b] @ _kabsch(out[b], target[b])
            out[b] = out[b][_best_permutation(out[b], target[b], mask)]
        out[b] = out[b] @ _kabsch(out[b], target[b])
    return torch.as_tensor(out, dtype=x.dtype, device=x.device)


def _shape_summary(x: torch.Tensor, types: list[int] | None) -> np.ndarray:
    """``[B, N]``: the particles' distances from the centre, sorted within each type (invariant to rotations and
    to relabelling identical particles)."""
    radii = np.linalg.norm(centred(x).detach().cpu().double().numpy(), axis=2)
    if types is None:
        return np.sort(radii, 1)
    kinds = np.asarray(types)
    return np.concatenate([np.sort(radii[:, kinds == kind], 1) for kind in np.unique(kinds)], 1)


def pair(x0: torch.Tensor, x1: torch.Tensor, types: list[int] | None = None) -> torch.Tensor:
    """The prior draws ``x0: [B, N, D]`` reordered into a minibatch optimal-transport pairing with the data ``x1``
    and aligned to their partners (:func:`align`). The transport cost is the squared difference of a
    symmetry-invariant summary of each configuration (:func:`_shape_summary`), which avoids aligning all B^2
    pairs."""
    from scipy.optimize import linear_sum_assignment

    a, b = _shape_summary(x0, types), _shape_summary(x1, types)
    cost = ((a[:, None, :] - b[None, :, :]) ** 2).sum(-1)
    order = linear_sum_assignment(cost.T)[1]
    return align(x0[torch.as_tensor(order, device=x0.device)], x1, types=types)


def random_symmetry(x: torch.Tensor, generator: torch.Generator | None = None, types: list[int] | None = None
                    ) -> torch.Tensor:
    """``x: [B, N, D]`` with each configuration randomly rotated or reflected (Haar on O(D)) and relabelled
    (within each atom type of ``types``; default: all particles identical)."""
    b, n, d = x.shape
    gaussian = torch.randn(b, d, d, generator=generator, dtype=torch.float64)
    q, r = torch.linalg.qr(gaussian)
    q = q * torch.sign(torch.diagonal(r, dim1=1, dim2=2))[:, None, :]  # Haar-distributed orthogonal matrices
    kinds = torch.zeros(n, dtype=torch.long) if types is None else torch.as_tensor(types)
    shuffled = torch.argsort(torch.rand(b, n, generator=generator) + kinds, 1)  # by type, random within a type
    permutation = torch.empty_like(shuffled)
    permutation[:, torch.argsort(kinds, stable=True)] = shuffled
    x = torch.gather(x, 1, permutation[..., None].expand(-1, -1, d).to(x.device))
    return x @ q.to(x.dtype).to(x.device)


def flow_matching_loss(flow: EquivariantFlow, x0: torch.Tensor, x1: torch.Tensor,
                       generator: torch.Generator | None = None) -> torch.Tensor:
    """Mean squared error between the field at x_t = (1 - t) x0 + t x1 (t uniform, one per pair) and the path's
    velocity x1 - x0, per degree of freedom."""
    t = torch.rand(len(x0), generator=generator, dtype=x0.dtype).to(x0.device)
    xt = (1 - t[:, None, None]) * x0 + t[:, None, None] * x1
    return ((flow.field(t, xt) - (x1 - x0)) ** 2).sum((1, 2)).mean() / flow.degrees_of_freedom


def train_flow_matching(flow: EquivariantFlow, data: torch.Tensor, steps: int = 2000, batch_size: int = 128,
                        learning_rate: float = 1e-3, seed: int = 0, progress: bool | None = None,
                        log: Callable[[dict], None] | None = None, log_every: int = 100,
                        average: float | None = None) -> list[float]:
    """Fit ``flow`` to samples ``data: [M, N, D]`` by equivariant flow matching (Adam, cosine-decayed learning
    rate); each batch is randomly rotated and relabelled, paired with prior draws by :func:`pair`. With ``average``
    the flow ends with an exponential moving average of its weights of that decay (see
    :func:`~molsamp.flows.optimisation.minimise`). Returns the loss of every step; ``log`` gets
    ``{"step", "loss"}`` every ``log_every`` steps."""
    from molsamp.flows.optimisation import minimise

    generator = torch.Generator().manual_seed(seed)
    types = flow.config["atom_types"]
    parameter = next(flow.parameters())
    data = centred(data.to(parameter))

    def loss() -> torch.Tensor:
        index = torch.randint(len(data), (batch_size,), generator=generator)
        x1 = random_symmetry(data[index.to(data.device)], generator, types)
        x0 = pair(flow.sample_prior(batch_size, generator), x1, types)
        return flow_matching_loss(flow, x0, x1, generator)

    return minimise(flow, loss, steps, learning_rate, progress, log, log_every, "flow matching", average=average)
