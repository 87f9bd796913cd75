"""Timewarp's conditional flow p(x(t + tau), v | x(t)) over all atoms (Klein et al., NeurIPS 2023), small enough for
a CPU.

Positions x (nm) are augmented with auxiliary variables v ~ N(0, I) of the same shape. Starting from Gaussian noise
(z_x, z_v), affine coupling layers alternately transform the velocity half given the position half and the reverse;
every layer's scale and shift come from an atom-wise transformer that sees each atom's features (element, residue,
backbone name), the conditioning positions x(t) (centred) and the other half, with attention biased by the
interatomic distances of x(t) and of the current candidate. The final position half is a displacement:
x(t + tau) = x(t) + exp(log_step) z_x. Translation of x(t) moves the proposal with it; rotations are learned from
randomly rotated training pairs; atoms are treated as a set (no positional encoding), so the model serves any peptide.
The log-density is exact (sum of log-scales), as Metropolis-Hastings needs.
"""

from __future__ import annotations

__all__ = ["TimewarpFlow", "save_model", "load_model"]

import math
import os
from pathlib import Path

import torch
from torch import nn

from molsamp.checkpoints import load_checkpoint, save_checkpoint
from molsamp.timewarp.features import N_FEATURES

_LOG_2PI = math.log(2 * math.pi)


class _AttentionBlock(nn.Module):
    """Pre-norm transformer block whose attention logits get an additive per-head bias ``[B, heads, N, N]``."""

    def __init__(self, hidden: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.norm1, self.norm2 = nn.LayerNorm(hidden), nn.LayerNorm(hidden)
        self.qkv = nn.Linear(hidden, 3 * hidden)
        self.project = nn.Linear(hidden, hidden)
        self.mlp = nn.Sequential(nn.Linear(hidden, 2 * hidden), nn.SiLU(), nn.Linear(2 * hidden, hidden))

    def forward(self, h: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
        batch, n, hidden = h.shape
        q, k, v = self.qkv(self.norm1(h)).reshape(batch, n, 3, self.heads, -1).permute(2, 0, 3, 1, 4)
        logits = q @ k.transpose(-1, -2) / math.sqrt(q.shape[-1]) + bias
        attended = (logits.softmax(-1) @ v).transpose(1, 2).reshape(batch, n, hidden)
        h = h + self.project(attended)
        return h + self.mlp(self.norm2(h))


class _Conditioner(nn.Module):
    """Per-atom scale and shift ``[B, N, 3]`` each from atom features, x(t) and the other half."""

    def __init__(self, hidden: int, heads: int, layers: int, n_basis: int = 16, max_distance: float = 1.2) -> None:
        super().__init__()
        self.heads = heads
        self.embed = nn.Linear(N_FEATURES + 6, hidden)
        self.register_buffer("centres", torch.linspace(0.0, max_distance, n_basis))
        self.width = max_distance / n_basis
        self.bias = nn.Linear(2 * n_basis, heads * layers)
        self.blocks = nn.ModuleList(_AttentionBlock(hidden, heads) for _ in range(layers))
        self.out = nn.Linear(hidden, 6)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)

    def _basis(self, x: torch.Tensor) -> torch.Tensor:
        d = torch.cdist(x, x)
        return torch.exp(-(((d[..., None] - self.centres) / self.width) ** 2))

    def forward(self, features: torch.Tensor, x_cond: torch.Tensor, other: torch.Tensor,
                candidate: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        batch, n = x_cond.shape[:2]
        h = self.embed(torch.cat([features.expand(batch, -1, -1), x_cond, other], -1))
        bias = self.bias(torch.cat([self._basis(x_cond), self._basis(candidate)], -1))  # [B, N, N, heads*layers]
        bias = bias.permute(0, 3, 1, 2).reshape(batch, len(self.blocks), self.heads, n, n)
        for k, block in enumerate(self.blocks):
            h = block(h, bias[:, k])
        scale, shift = self.out(h).chunk(2, -1)
        return torch.tanh(scale), shift


class TimewarpFlow(nn.Module):
    """Conditional flow over (x(t + tau), v) given x(t) and per-atom features ``[N, N_FEATURES]``.

    Args:
        hidden: transformer width.
        heads: attention heads.
        layers: transformer layers per conditioner.
        couplings: affine coupling layers (alternating velocity / position half).
    """

    def __init__(self, hidden: int = 64, heads: int = 4, layers: int = 2, couplings: int = 6) -> None:
        super().__init__()
        self.config = {"hidden": hidden, "heads": heads, "layers": layers, "couplings": couplings}
        self.conditioners = nn.ModuleList(_Conditioner(hidden, heads, layers) for _ in range(couplings))
        self.log_step = nn.Parameter(torch.tensor(math.log(0.05)))  # nm: the initial proposal is a 0.05 nm jiggle

    @staticmethod
    def _centre(x: torch.Tensor) -> torch.Tensor:
        return x - x.mean(1, keepdim=True)

    def _scale_shift(self, k: int, features: torch.Tensor, centred: torch.Tensor, z_x: torch.Tensor,
                     z_v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Layer k's scale and shift. Odd layers move the position half and may only look at the velocity half;
        even layers move the velocity half and also see the candidate positions' distances."""
        if k % 2 == 1:
            return self.conditioners[k](features, centred, z_v, centred)
        return self.conditioners[k](features, centred, z_x, centred + self.log_step.exp() * z_x)

    def forward_transform(self, z_x: torch.Tensor, z_v: torch.Tensor, x_cond: torch.Tensor, features: torch.Tensor
                          ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Noise (z_x, z_v) to (x(t + tau), v) given x(t); returns them and log|det| of the map ``[B]``."""
        centred = self._centre(x_cond)
        log_det = z_x[0].numel() * self.log_step.expand(len(x_cond))
        for k in range(len(self.conditioners)):
            scale, shift = self._scale_shift(k, features, centred, z_x, z_v)
            if k % 2 == 1:
                z_x = z_x * scale.exp() + shift
            else:
                z_v = z_v * scale.exp() + shift
            log_det = log_det + scale.sum((1, 2))
        return x_cond + self.log_step.exp() * z_x, z_v, log_det

    def inverse_transform(self, x_next: torch.Tensor, v: torch.Tensor, x_cond: torch.Tensor, features: torch.Tensor
                          ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(x(t + tau), v) back to noise given x(t); returns it and log|det| of the forward map ``[B]``."""
        centred = self._centre(x_cond)
        z_x, z_v = (x_next - x_cond) / self.log_step.exp(), v
        log_det = z_x[0].numel() * self.log_step.expand(len(x_cond))
        for k in reversed(range(len(self.conditioners))):
            scale, shift = self._scale_shift(k, features, centred, z_x, z_v)
            if k % 2 == 1:
                z_x = (z_x - shift) * (-scale).exp()
            else:
                z_v = (z_v - shift) * (-scale).exp()
            log_det = log_det + scale.sum((1, 2))
        return z_x, z_v, log_det

    def sample(self, x_cond: torch.Tensor, features: torch.Tensor, generator: torch.Generator | None = None
               ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Draw (x(t + tau), v) ~ p(. | x(t)) for a batch ``x_cond [B, N, 3]``; returns them and their log-density."""
        z_x, z_v = (torch.randn(x_cond.shape, generator=generator, dtype=x_cond.dtype, device=x_cond.device)
                    for _ in range(2))
        x_next, v, log_det = self.forward_transform(z_x, z_v, x_cond, features)
        return x_next, v, _standard_normal_log_density(z_x, z_v) - log_det

    def log_prob(self, x_next: torch.Tensor, v: torch.Tensor, x_cond: torch.Tensor, features: torch.Tensor
                 ) -> torch.Tensor:
        """log p(x(t + tau), v | x(t)) ``[B]`` (x in nm)."""
        z_x, z_v, log_det = self.inverse_transform(x_next, v, x_cond, features)
        return _standard_normal_log_density(z_x, z_v) - log_det


def _standard_normal_log_density(*z: torch.Tensor) -> torch.Tensor:
    return sum(-0.5 * (part**2).sum((1, 2)) - 0.5 * part[0].numel() * _LOG_2PI for part in z)


def save_model(model: TimewarpFlow, path: str | os.PathLike, **metadata) -> Path:
    """Write a checkpoint: the model's configuration and weights, and ``metadata`` (training details)
    (:func:`~molsamp.checkpoints.save_checkpoint`)."""
    return save_checkpoint(model, path, "timewarp", **metadata)


def load_model(path: str | os.PathLike) -> TimewarpFlow:
    """Read a checkpoint written by :func:`save_model`; :class:`InputError` if it is missing, corrupted or not a
    Timewarp checkpoint of this version."""
    return load_checkpoint(path, "timewarp", TimewarpFlow)
