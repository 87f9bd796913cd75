"""A message-passing network over a solute in a periodic solvent, the learned part U_NN(x, t) of neural TI's
interpolating potential (the architecture of Mate, Fleuret and Bereau's neural-TI code, written here in torch).

Nodes are particles (particle 0 is the solute) with scalar and vector features; edges join particles within
``cutoff`` of each other (``solute_cutoff`` for edges to the solute), by minimum-image displacements, with a smooth
cosine cutoff in the squared distance. Time t enters the node and edge embeddings and every message. The readout is
the **mean** over particles and channels: U_NN is intensive, a correction of order one however large the box. The
output is invariant to translations, permutations of the solvent and the box's symmetries; vector features carry
directions, so messages see angles, not only distances.
"""

from __future__ import annotations

__all__ = ["SolventMessagePassing"]

import math

import torch
from torch import nn


def _mlp(sizes: list[int]) -> nn.Sequential:
    layers: list[nn.Module] = []
    for i, (n_in, n_out) in enumerate(zip(sizes[:-1], sizes[1:])):
        layers.append(nn.Linear(n_in, n_out))
        if i < len(sizes) - 2:
            layers.append(nn.SiLU())
    return nn.Sequential(*layers)


class _ChannelMix(nn.Module):
    """A bias-free linear map over the channels of vector features ``[..., channels, 3]`` (equivariant)."""

    def __init__(self, n_in: int, n_out: int) -> None:
        super().__init__()
        self.linear = nn.Linear(n_in, n_out, bias=False)

    def forward(self, v: torch.Tensor) -> torch.Tensor:
        return self.linear(v.transpose(-1, -2)).transpose(-1, -2)


class _Layer(nn.Module):
    def __init__(self, scalars: int, vectors: int, hidden: list[int], aggregation_norm: float) -> None:
        super().__init__()
        self.scalars, self.aggregation_norm = scalars, aggregation_norm
        self.message = _mlp([6 * vectors + 3 * scalars + 1, *hidden, scalars + vectors])
        self.node = _mlp([scalars, *hidden, scalars])
        self.node_vectors = _ChannelMix(vectors, vectors)
        self.edge_vectors = _ChannelMix(3 * vectors, vectors)
        self.edge = _mlp([3 * scalars, *hidden, scalars])

    def forward(self, t_edge: torch.Tensor, h: torch.Tensor, h_vec: torch.Tensor, e: torch.Tensor,
                e_vec: torch.Tensor, envelope: torch.Tensor, senders: torch.Tensor, receivers: torch.Tensor
                ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        vs, vr = h_vec[senders], h_vec[receivers]
        dots = torch.cat([(vr * e_vec).sum(-1), (vs * e_vec).sum(-1), (vs * vr).sum(-1), (vs * vs).sum(-1),
                          (vr * vr).sum(-1), (e_vec * e_vec).sum(-1)], -1)
        weights = self.message(torch.cat([dots, h[senders], h[receivers], e, t_edge[:, None]], -1))
        weights = weights * envelope[:, None]
        w, w_vec = weights[:, : self.scalars], weights[:, self.scalars:]
        d_vec = torch.zeros_like(h_vec).index_add(0, receivers, e_vec * w_vec[..., None]) / self.aggregation_norm
        d_h = torch.zeros_like(h).index_add(0, receivers, w * h[senders]) / self.aggregation_norm
        d_h = self.node(d_h)
        d_vec = self.node_vectors(d_vec)
        d_e_vec = self.edge_vectors(torch.cat([e_vec, d_vec[senders], d_vec[receivers]], 1))
        d_e = self.edge(torch.cat([e, d_h[senders], d_h[receivers]], 1))
        return d_h, d_vec, d_e, d_e_vec


class SolventMessagePassing(nn.Module):
    """U_NN(x, t) ``[B]`` for positions ``x: [B, N, 3]`` in a cubic periodic box of side ``box`` and times
    ``t: [B]``; particle 0 is the solute. ``cutoff`` and ``solute_cutoff`` in the units of x (the authors: 2 and 3
    solvent sigma). Defaults follow the authors: 3 layers, 48 scalar and 16 vector channels, hidden layers of 64,
    aggregated messages divided by 10."""

    def __init__(self, box: float, cutoff: float, solute_cutoff: float, layers: int = 3, scalars: int = 48,
                 vectors: int = 16, hidden: tuple[int, ...] = (64, 64), aggregation_norm: float = 10.0) -> None:
        super().__init__()
        self.box, self.cutoff, self.solute_cutoff = box, cutoff, solute_cutoff
        hidden_sizes = list(hidden)
        self.node_embedding = nn.Linear(3, scalars, bias=False)
        self.edge_embedding = _mlp([1 + 2 * 2 + 1, *hidden_sizes, scalars])
        self.edge_vector_embedding = nn.Linear(1, vectors, bias=False)
        self.layers = nn.ModuleList(_Layer(scalars, vectors, hidden_sizes, aggregation_norm) for _ in range(layers))
        self.vectors = vectors

    def graph(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """Squared distances over the cutoff ``[B, N, N]`` (so 1 at the cutoff), and the edges within it: flat
        sender and receiver indices into the ``B * N`` nodes, and x_sender - x_receiver over the cutoff ``[E, 3]``
        (minimum image)."""
        batch, n, _ = x.shape
        d = x[:, :, None, :] - x[:, None, :, :]
        d = d - self.box * torch.round(d / self.box)
        scale = torch.full((n, n), 1 / self.cutoff, dtype=x.dtype, device=x.device)
        scale[0, :] = scale[:, 0] = 1 / self.solute_cutoff
        d = d * scale[..., None]
        d2 = (d**2).sum(-1) + 10 * torch.eye(n, dtype=x.dtype, device=x.device)  # no self loops
        b, i, j = torch.nonzero(d2 < 1, as_tuple=True)
        return d2, i + n * b, j + n * b, d[b, i, j]

    def forward(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        batch, n, _ = x.shape
        d2, senders, receivers, displacement = self.graph(x)
        edge_d2 = (displacement**2).sum(-1)
        solute = torch.zeros(batch, n, dtype=x.dtype, device=x.device)
        solute[:, 0] = 1
        to_solute = d2[:, :, 0].clone()
        to_solute[:, 0] = 0
        h0 = torch.stack([solute, to_solute], -1).reshape(batch * n, 2)
        t_node = t.repeat_interleave(n)
        t_edge = t_node[receivers]
        h = self.node_embedding(torch.cat([h0, t_node[:, None]], -1))
        h_vec = torch.zeros(batch * n, self.vectors, 3, dtype=x.dtype, device=x.device)
        e = self.edge_embedding(torch.cat([edge_d2[:, None], h0[senders], h0[receivers], t_edge[:, None]], -1))
        e_vec = self.edge_vector_embedding.weight[None, :, :] * displacement[:, None, :]  # [E, vectors, 3]
        envelope = 0.5 * (torch.cos(math.pi * edge_d2) + 1)
        for layer in self.layers:
            d_h, d_vec, d_e, d_e_vec = layer(t_edge, h, h_vec, e, e_vec, envelope, senders, receivers)
            h, h_vec, e, e_vec = h + d_h, h_vec + d_vec, e + d_e, e_vec + d_e_vec
        return h.reshape(batch, -1).mean(1)
