"""The denoiser: a small 3D U-Net that maps a noisy voxel grid y = x + sigma * noise to an estimate of the clean
grid x (VoxMol's x-prediction; its network has 111M parameters and self-attention, this one is sized for a CPU).

Residual blocks (GroupNorm, SiLU, 3x3x3 convolutions) at each level, stride-2 convolutions down, transposed
convolutions up, skip connections by concatenation. Not equivariant to grid rotations (neither is VoxMol's); the
training data's random rotations teach it the symmetry approximately.
"""

from __future__ import annotations

__all__ = ["UNet3d"]

from collections.abc import Sequence

import torch
from torch import nn


def _norm(channels: int) -> nn.GroupNorm:
    return nn.GroupNorm(min(8, channels), channels)


class _Residual(nn.Module):
    def __init__(self, inputs: int, outputs: int) -> None:
        super().__init__()
        self.body = nn.Sequential(_norm(inputs), nn.SiLU(), nn.Conv3d(inputs, outputs, 3, padding=1),
                                  _norm(outputs), nn.SiLU(), nn.Conv3d(outputs, outputs, 3, padding=1))
        self.skip = nn.Conv3d(inputs, outputs, 1) if inputs != outputs else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.skip(x) + self.body(x)


class UNet3d(nn.Module):
    """``forward(y: [B, inputs, S, S, S]) -> [B, outputs, S, S, S]``; ``S`` must be divisible by
    2^(len(widths) - 1). ``widths`` are the feature channels per level, finest first; ``blocks`` residual blocks per
    level on the way down (one more on the way up)."""

    def __init__(self, inputs: int, outputs: int, widths: Sequence[int] = (16, 32, 64, 128), blocks: int = 1
                 ) -> None:
        super().__init__()
        self.inputs = nn.Conv3d(inputs, widths[0], 3, padding=1)
        self.down = nn.ModuleList()
        self.downsample = nn.ModuleList()
        for level, width in enumerate(widths):
            previous = widths[max(level - 1, 0)]
            self.down.append(nn.Sequential(*[_Residual(previous if i == 0 else width, width) for i in range(blocks)]))
            if level + 1 < len(widths):
                self.downsample.append(nn.Conv3d(width, width, 3, stride=2, padding=1))
        self.up = nn.ModuleList()
        self.upsample = nn.ModuleList()
        for level in reversed(range(len(widths) - 1)):
            self.upsample.append(nn.ConvTranspose3d(widths[level + 1], widths[level], 4, stride=2, padding=1))
            self.up.append(nn.Sequential(_Residual(2 * widths[level], widths[level]),
                                         *[_Residual(widths[level], widths[level]) for _ in range(blocks)]))
        self.outputs = nn.Sequential(_norm(widths[0]), nn.SiLU(), nn.Conv3d(widths[0], outputs, 3, padding=1))
        self.levels = len(widths)

    def forward(self, y: torch.Tensor) -> torch.Tensor:
        if y.shape[-1] % 2 ** (self.levels - 1):
            raise ValueError(f"grid size {y.shape[-1]} is not divisible by {2 ** (self.levels - 1)}")
        h = self.inputs(y)
        skips = []
        for level, block in enumerate(self.down):
            h = block(h)
            if level + 1 < self.levels:
                skips.append(h)
                h = self.downsample[level](h)
        for upsample, block in zip(self.upsample, self.up):
            h = block(torch.cat([upsample(h), skips.pop()], 1))
        return self.outputs(h)
