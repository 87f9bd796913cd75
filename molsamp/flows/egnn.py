"""An E(n)-equivariant graph network (Satorras, Hoogeboom and Welling 2021) as the time-dependent vector field of a
continuous normalising flow over identical particles.

Every particle starts with the same features (those of the time t), so the field is equivariant to permutations of
the particles, to rotations and reflections, and invariant to translations; its output has zero mean over the
particles, so a flow that starts centred stays centred.
"""

from __future__ import annotations

__all__ = ["EGNNField"]

import torch
from torch import nn


def _mlp(inputs: int, hidden: int, outputs: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(inputs, hidden), nn.SiLU(), nn.Linear(hidden, hidden), nn.SiLU(),
                         nn.Linear(hidden, outputs))


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
        pair = torch.cat([h[:, :, None].expand(-1, -1, n, -1), h[:, None, :].expand(-1, n, -1, -1), squared,
                          t[:, None, None, None].expand(-1, n, n, 1)], -1)
        diagonal = torch.eye(n, dtype=x.dtype, device=x.device)[None, :, :, None]
        off_diagonal = 1.0 - diagonal
        message = self.message(pair) * off_diagonal
        distance = (squared + diagonal).sqrt()  # 1 on the diagonal, where sqrt(0) would give infinite derivatives
        step = difference / (distance + 1.0) * self.coordinate(message)
        x = x + (step * off_diagonal).sum(2) / (n - 1)
        if self.feature is not None:
            h = h + self.feature(torch.cat([h, message.sum(2)], -1))
        return h, x


class EGNNField(nn.Module):
    """Vector field v(t, x) ``[B, N, D]`` for positions ``x: [B, N, D]`` and times ``t: [B]`` (or a scalar), equivariant
    to E(D) and to permutations of the N identical particles, with zero mean over the particles.

    Args:
        hidden: width of the features and of every MLP.
        layers: number of EGNN layers.
    """

    def __init__(self, hidden: int = 32, layers: int = 3) -> None:
        super().__init__()
        self.config = {"hidden": hidden, "layers": layers}
        self.embed = nn.Linear(1, hidden)
        self.layers = nn.ModuleList(_Layer(hidden, last=k == layers - 1) for k in range(layers))

    def forward(self, t: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        t = torch.as_tensor(t, dtype=x.dtype, device=x.device).expand(x.shape[0])
        h = self.embed(t[:, None, None].expand(-1, x.shape[1], 1))
        y = x
        for layer in self.layers:
            h, y = layer(h, y, t)
        v = y - x
        return v - v.mean(1, keepdim=True)
