"""The optimisation loop shared by the flows trained on data: Adam with a cosine-decayed learning rate, a progress
bar, the mean loss logged every ``log_every`` steps, and optionally an exponential moving average of the weights."""

from __future__ import annotations

__all__ = ["minimise"]

import sys
from collections.abc import Callable

import numpy as np
import torch


def minimise(model: torch.nn.Module, loss: Callable[[], torch.Tensor], steps: int, learning_rate: float,
             progress: bool | None = None, log: Callable[[dict], None] | None = None, log_every: int = 100,
             description: str = "training", max_grad_norm: float | None = None,
             average: float | None = None) -> list[float]:
    """Minimise ``loss()`` (a new batch each call) over ``model``'s parameters by ``steps`` steps of Adam from
    ``learning_rate``, cosine-decayed to 0, gradients clipped to ``max_grad_norm`` if given; the model is in
    training mode meanwhile. With ``average`` (a decay, e.g. 0.999) an exponential moving average of the parameters
    is kept, updated after every step, and the model ends holding it. Returns the loss of every step; ``log`` gets
    ``{"step", "loss"}`` (mean over the last ``log_every`` steps)."""
    from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn
    from tqdm import tqdm

    optimiser = torch.optim.Adam(model.parameters(), lr=learning_rate)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimiser, steps)
    averaged = None if average is None else AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(average))
    model.train()
    losses = []
    show = sys.stderr.isatty() if progress is None else progress
    for step in tqdm(range(steps), disable=not show, unit="step", desc=description):
        value = loss()
        optimiser.zero_grad()
        value.backward()
        if max_grad_norm is not None:
            torch.nn.utils.clip_grad_norm_(model.parameters(), max_grad_norm)
        optimiser.step()
        schedule.step()
        if averaged is not None:
            averaged.update_parameters(model)
        losses.append(float(value.detach()))
        if log is not None and (step + 1) % log_every == 0:
            log({"step": step + 1, "loss": float(np.mean(losses[-log_every:]))})
    if averaged is not None:
        with torch.no_grad():
            for parameter, mean in zip(model.parameters(), averaged.module.parameters()):
                parameter.copy_(mean)
    model.eval()
    return losses
