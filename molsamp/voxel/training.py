"""The denoiser model and its training (neural empirical Bayes): a U-Net learns E[x | y] for clean grids x of
augmented training molecules and y = x + s * noise; then (x_hat(y) - y) / s^2 is the score of the smoothed density
p_s(y) (Miyasawa/Tweedie), which the walk-jump sampler walks on.

VoxMol trains at one noise level s = sigma. For the multi-measurement sampler (m measurements y_1..y_m of one x),
the walk on the j-th measurement needs E[x | y_1..y_j], which is the denoiser at s = sigma / sqrt(j) applied to the
mean of y_1..y_j; so the network here takes s as an extra input channel and is trained at s = sigma / sqrt(j) for
j drawn uniformly from 1..``measurements``.

Training is resumable: model, averaged model, optimiser and random state go to ``<output>.state.pt`` every
``checkpoint_every`` steps; the final checkpoint holds the exponential moving average of the weights (as VoxMol).
"""

from __future__ import annotations

__all__ = ["TRAINING_SHIFT", "Denoiser", "DenoiserTraining", "train_denoiser", "load_denoiser"]

import copy
import dataclasses
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

import torch
from torch import nn

from molsamp.errors import InputError
from molsamp.voxel.data import MoleculeSet
from molsamp.voxel.grids import VoxelGrid, augment
from molsamp.voxel.unet import UNet3d

TRAINING_SHIFT = 0.25
"""Largest random shift of a training molecule along each axis (Å; VoxMol: 0.5 Å in a box without margins)."""


class Denoiser(nn.Module):
    """x_hat(y, s) = E[x | y] for grids of ``grid`` noised at a level s (in units of the densities, whose atom
    peaks are 1) of ``sigma / sqrt(j)``, j = 1..``measurements``. The default sigma, 0.75, gives an atom of the
    default grid about the signal-to-noise ratio of VoxMol's atoms at its sigma of 0.9."""

    def __init__(self, grid: dict, sigma: float = 0.75, measurements: int = 4,
                 widths: Sequence[int] = (16, 32, 64, 128), blocks: int = 1) -> None:
        super().__init__()
        self.grid = VoxelGrid(**{**grid, "elements": tuple(grid["elements"])})
        self.sigma, self.measurements = sigma, measurements
        channels = len(self.grid.elements)
        self.network = UNet3d(channels + 1, channels, widths, blocks)
        self.config = {"grid": dataclasses.asdict(self.grid), "sigma": sigma, "measurements": measurements,
                       "widths": list(widths), "blocks": blocks}

    def forward(self, y: torch.Tensor, noise: torch.Tensor | float) -> torch.Tensor:
        """x_hat ``[B, channels, S, S, S]`` of ``y`` of that shape noised at ``noise`` (a number or ``[B]``)."""
        level = torch.as_tensor(noise, dtype=y.dtype, device=y.device).expand(len(y))
        return self.network(torch.cat([y, level[:, None, None, None, None].expand(-1, 1, *y.shape[2:])], 1))


@dataclasses.dataclass(frozen=True)
class DenoiserTraining:
    """Settings of :func:`train_denoiser` (learning rate of Adam, reached linearly over the first ``warmup_steps``;
    ``ema``: decay of the weight average, reached after a warm-up of min(ema, (1 + step) / (10 + step)) when
    training from scratch)."""

    steps: int = 4000
    batch_size: int = 16
    learning_rate: float = 1e-3
    warmup_steps: int = 0
    ema: float = 0.998
    shift: float = TRAINING_SHIFT
    checkpoint_every: int = 100


def train_denoiser(molecules: MoleculeSet, output: str | os.PathLike, grid: VoxelGrid = VoxelGrid(),
                   sigma: float = 0.75, measurements: int = 4, widths: Sequence[int] = (16, 32, 64, 128),
                   settings: DenoiserTraining = DenoiserTraining(), seed: int = 0,
                   device: torch.device | str | None = None, progress: bool | None = None,
                   log: Callable[[dict], None] | None = None, init: Denoiser | None = None, **card) -> Denoiser:
    """Train a :class:`Denoiser` on ``molecules`` (randomly rotated and shifted each time they are drawn) and write
    its averaged weights to ``output`` with ``card`` (data, command) in the checkpoint's metadata. ``log`` gets
    ``{"step", "loss"}`` (squared error summed over a grid, averaged over the batch) every ``checkpoint_every``
    steps. Resumes from ``<output>.state.pt`` when it exists; the same seed gives the same model on one machine.
    ``init``, a denoiser of the same architecture, supplies the starting weights (to continue training a shipped
    model with a fresh optimiser; the weight average then starts from them at full decay, and a learning-rate
    warm-up keeps the fresh optimiser's first steps from undoing them)."""
    from tqdm import tqdm

    from molsamp.checkpoints import save_checkpoint, save_training_state

    device = torch.device(device or "cpu")
    state_path = Path(f"{os.fspath(output)}.state.pt")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = Denoiser(dataclasses.asdict(grid), sigma, measurements, widths).to(device)
    if init is not None:
        if init.config != model.config:
            raise InputError(f"the initial denoiser's configuration {init.config} differs from this run's "
                             f"{model.config}")
        model.load_state_dict(init.state_dict())
    average = copy.deepcopy(model).requires_grad_(False)
    optimiser = torch.optim.Adam(model.parameters(), lr=settings.learning_rate)
    generator = torch.Generator().manual_seed(seed)
    start, losses = 0, []
    if state_path.exists():
        saved = torch.load(state_path, map_location=device, weights_only=True)
        model.load_state_dict(saved["model"])
        average.load_state_dict(saved["average"])
        optimiser.load_state_dict(saved["optimiser"])
        generator.set_state(saved["generator"])
        start, losses = int(saved["step"]), saved["losses"].tolist()
        if start > settings.steps:
            raise InputError(f"{state_path} has trained {start} steps, more than the {settings.steps} asked for")
    show = sys.stderr.isatty() if progress is None else progress
    window: list[float] = []
    for step in tqdm(range(start, settings.steps), initial=start, total=settings.steps, unit="step",
                     desc="denoiser", disable=not show):
        indices = torch.randint(len(molecules), (settings.batch_size,), generator=generator)
        types, positions = molecules.batch(indices.tolist(), grid)
        positions = augment(types, positions, settings.shift, generator)
        clean = grid.voxelize(types, positions).to(device)
        j = torch.randint(1, measurements + 1, (len(clean),), generator=generator)
        noise = (sigma / j.sqrt()).to(device, clean.dtype)
        noisy = clean + noise[:, None, None, None, None] * torch.randn(clean.shape, generator=generator).to(device)
        loss = ((model(noisy, noise) - clean) ** 2).sum() / len(clean)
        optimiser.zero_grad()
        loss.backward()
        for group in optimiser.param_groups:
            group["lr"] = settings.learning_rate * min(1.0, (step + 1) / max(settings.warmup_steps, 1))
        optimiser.step()
        decay = settings.ema if init is not None else min(settings.ema, (1 + step) / (10 + step))
        with torch.no_grad():
            for kept, current in zip(average.parameters(), model.parameters()):
                kept.lerp_(current, 1 - decay)
        window.append(float(loss.detach()))
        if (step + 1) % settings.checkpoint_every == 0 or step + 1 == settings.steps:
            losses.append(sum(window) / len(window))
            window = []
            if log is not None:
                log({"step": step + 1, "loss": losses[-1]})
            save_training_state({"model": model.state_dict(), "average": average.state_dict(),
                                 "optimiser": optimiser.state_dict(), "generator": generator.get_state(),
                                 "step": step + 1, "losses": torch.tensor(losses)}, state_path)
    save_checkpoint(average, output, "voxel-denoiser", steps=settings.steps, seed=seed,
                    settings=dataclasses.asdict(settings), losses=losses, **card)
    return average.eval()


def load_denoiser(path: str | os.PathLike, grid: VoxelGrid | None = None,
                  device: torch.device | str | None = None) -> Denoiser:
    """The denoiser saved at ``path``; :class:`~molsamp.errors.InputError` if it is not one, or was trained for
    another grid than ``grid`` (when given)."""
    from molsamp.checkpoints import load_checkpoint

    model = load_checkpoint(path, "voxel-denoiser", Denoiser, device)
    if grid is not None and model.grid != grid:
        raise InputError(f"{path}: the denoiser was trained for a {model.grid.size}^3 grid of "
                         f"{model.grid.resolution} Å voxels ({', '.join(model.grid.elements)}), not for a "
                         f"{grid.size}^3 grid of {grid.resolution} Å voxels ({', '.join(grid.elements)})")
    return model
