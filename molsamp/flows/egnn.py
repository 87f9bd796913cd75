"""An E(n)-equivariant graph network (Satorras, Hoogeboom and Welling 2021) as the time-dependent vector field of a
continuous normalising flow over identical particles.

Every particle starts with the features of the time t (plus, in a molecule, those of its atom class), so the field is
equivariant to permutations of identical particles, to rotations and reflections, and invariant to translations;
its output has zero mean over the particles, so a flow that starts centred stays centred.
"""

from __future__ import annotations

__all__ = ["EGNNField"]

import torch
from torch import nn


def _mlp(inputs: int, hidden: int, outputs: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(inputs, hidden), nn.SiLU(), nn.Linear(hidden, hidden), nn.SiLU(),
                         nn.Linear(hidden, outputs))


def _pair_linear(linear: nn.Linear, h: torch.Tensor, squared: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """``linear`` applied to the concatenation [h_i, h_j, |x_i - x_j|^2, t] of every pair ``[B, N, N, 2F + 2]``,
    computed as a sum of per-particle projections broadcast over the pairs, without forming the concatenation (the
    same numbers, a third of the work of the message network)."""
    f = h.shape[-1]
    weight = linear.weight
    return ((h @ weight[:, :f].T)[:, :, None] + (h @ weight[:, f:2 * f].T)[:, None, :] + squared * weight[:, 2 * f]
            + t[:, None, None, None] * weight[:, 2 * f + 1] + linear.bias)


class _Layer(nn.Module):
    """One EGNN layer: messages from features and squared distances, a coordinate update along the differences
    (scaled by 1/(d + 1) for stability) and, except in the last layer, a residual feature update."""

    def __init__(self, hidden: int, last: bool = False) -> None:
        super().__init__()
        self.message = _mlp(2 * hidden + 2, hidden, hidden)
        self.coordinate = _mlp(hidden, hidden, 1)
        self.feature = None if last else _mlp(2 * hidden, hidden, hidden)

    def forward(self, h: torch.Tensor, x: torch.Tensor, t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        n = x.shape[1]
        difference = x[:, :, None, :] - x[:, None, :, :]  # [B, N, N, D]
        squared = (difference**2).sum(-1, keepdim=True)
        diagonal = torch.eye(n, dtype=x.dtype, device=x.device)[None, :, :, None]
        off_diagonal = 1.0 - diagonal
        message = self.message[1:](_pair_linear(self.message[0], h, squared, t)) * off_diagonal
        distance = (squared + diagonal).sqrt()  # 1 on the diagonal, where sqrt(0) would give infinite derivatives
        step = difference / (distance + 1.0) * self.coordinate(message)
        x = x + (step * off_diagonal).sum(2) / (n - 1)
        if self.feature is not None:
            h = h + self.feature(torch.cat([h, message.sum(2)], -1))
        return h, x


class EGNNField(nn.Module):
    """Vector field v(t, x) ``[B, N, D]`` for positions ``x: [B, N, D]`` and times ``t: [B]`` (or a scalar), equivariant
    to E(D) and to permutations of identical particles, with zero mean over the particles.

    Args:
        hidden: width of the features and of every MLP.
        layers: number of EGNN layers.
        atom_types: for a molecule, the class ``[N]`` of each atom (0, 1, ...): atoms of one class are identical
            (exchanged by a symmetry of the molecule), so the field is equivariant to permutations within classes.
            None: all particles identical.
        length_unit: positions are fed to the network in this unit (e.g. 0.1 for a molecule in nm, so that the
            network sees Angstrom) and its output scaled back: v(x) = L f(x / L), with the same divergence as f.
    """

    def __init__(self, hidden: int = 32, layers: int = 3, atom_types: list[int] | None = None,
                 length_unit: float = 1.0) -> None:
        super().__init__()
        self.config = {"hidden": hidden, "layers": layers}
        self.length_unit = length_unit
        self.embed = nn.Linear(1, hidden)
        self.atom_type = None
        if atom_types is not None:
            self.register_buffer("atom_types", torch.as_tensor(atom_types, dtype=torch.long))
            self.atom_type = nn.Embedding(max(atom_types) + 1, hidden)
        self.layers = nn.ModuleList(_Layer(hidden, last=k == layers - 1) for k in range(layers))

    def forward(self, t: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        t = torch.as_tensor(t, dtype=x.dtype, device=x.device).expand(x.shape[0])
        h = self.embed(t[:, None, None].expand(-1, x.shape[1], 1))
        if self.atom_type is not None:
            h = h + self.atom_type(self.atom_types)
        x = x / self.length_unit
        y = x
        for layer in self.layers:
            h, y = layer(h, y, t)
        v = y - x
        return (v - v.mean(1, keepdim=True)) * self.length_unit
