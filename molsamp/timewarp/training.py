"""Maximum-likelihood training of the Timewarp flow on transition pairs of several peptides."""

from __future__ import annotations

__all__ = ["train_timewarp", "negative_log_likelihood"]

import sys
from collections.abc import Callable, Sequence
from pathlib import Path

import torch

from molsamp.timewarp.data import TransitionPairs, random_rotations
from molsamp.timewarp.model import TimewarpFlow, save_model


def negative_log_likelihood(model: TimewarpFlow, pairs: TransitionPairs, index: torch.Tensor,
                            generator: torch.Generator | None = None, rotate: bool = True) -> torch.Tensor:
    """Mean -log p(x1, v | x0) per degree of freedom (nats) over the pairs ``index``, with v ~ N(0, I) drawn fresh
    and (if ``rotate``) each pair turned by one random rotation about the origin."""
    x0, x1 = pairs.x0[index], pairs.x1[index]
    if rotate:
        rotation = random_rotations(len(index), generator, x0.dtype)
        centre = x0.mean(1, keepdim=True)
        x0, x1 = (x0 - centre) @ rotation.transpose(1, 2), (x1 - centre) @ rotation.transpose(1, 2)
    v = torch.randn(x1.shape, generator=generator, dtype=x1.dtype)
    return -model.log_prob(x1, v, x0, pairs.features).mean() / (2 * x1[0].numel())


def train_timewarp(model: TimewarpFlow, datasets: Sequence[TransitionPairs], steps: int = 5000,
                   batch_size: int = 32, learning_rate: float = 5e-4, seed: int = 0,
                   validation: Sequence[TransitionPairs] = (), checkpoint: str | Path | None = None,
                   checkpoint_every: int = 500, progress: bool | None = None,
                   log: Callable[[dict], None] | None = None) -> list[dict]:
    """Adam on the negative log-likelihood of randomly rotated pairs; each step draws one peptide (weighted by its
    number of pairs) and a batch of its pairs. Every ``checkpoint_every`` steps the validation NLL is computed and
    the model saved to ``checkpoint``. Returns (and passes to ``log``) one record per evaluation."""
    from tqdm import tqdm

    generator = torch.Generator().manual_seed(seed)
    optimiser = torch.optim.Adam(model.parameters(), lr=learning_rate)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimiser, max(steps, 1))
    sizes = torch.tensor([len(d) for d in datasets], dtype=torch.float64)
    history, running = [], []
    show = sys.stderr.isatty() if progress is None else progress
    for step in tqdm(range(1, steps + 1), disable=not show, unit="step", desc="timewarp"):
        pairs = datasets[int(torch.multinomial(sizes, 1, generator=generator))]
        index = torch.randint(len(pairs), (batch_size,), generator=generator)
        loss = negative_log_likelihood(model, pairs, index, generator)
        optimiser.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 10.0)
        optimiser.step()
        scheduler.step()
        running.append(loss.item())
        if step % checkpoint_every == 0 or step == steps:
            record = {"step": step, "train_nll": sum(running) / len(running)}
            with torch.no_grad():
                for held_out in validation:
                    index = torch.arange(0, len(held_out), max(len(held_out) // 256, 1))
                    record[f"validation_nll_{held_out.name}"] = negative_log_likelihood(
                        model, held_out, index, torch.Generator().manual_seed(0)).item()
            history.append(record)
            running = []
            if log is not None:
                log(record)
            if checkpoint is not None:
                save_model(model, checkpoint, tau_ps=datasets[0].tau, trained_on=[d.name for d in datasets],
                           steps=step, history=history)
    return history
