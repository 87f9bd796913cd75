"""The Distribution protocol: normalised densities that can be sampled and evaluated, like ``torch.distributions``.

The von Mises torsion model (:class:`~molsamp.conformers.model.TorsionMixture`) and the Timewarp conditional flow
(:class:`~molsamp.timewarp.sampler.TimewarpDistribution`) are Distributions; the flows of later samplers will be too.
A conditional Distribution takes its condition as ``context`` (e.g. the chain's current state); an unconditional one
accepts only ``context=None``.
"""

from __future__ import annotations

__all__ = ["Distribution"]

from typing import Any, Protocol, runtime_checkable

import torch


@runtime_checkable
class Distribution(Protocol):
    """A normalised density q over events of shape ``event_shape``.

    ``sample(n)`` gives ``[n, *event_shape]``; a conditional one takes one draw per row of its ``context``
    (``n == len(context)``). ``log_prob(x)`` gives ``[B]`` in the units of the event's coordinates (1/rad^T for
    angles, 1/nm^(3N) for positions); ``sample_and_log_prob`` gives both, as cheaply as one of them where the model
    allows. Randomness comes from ``generator`` only, so a seed repeats the draws."""

    event_shape: torch.Size

    def sample(self, n: int, generator: torch.Generator | None = None, context: Any = None) -> torch.Tensor: ...

    def log_prob(self, x: torch.Tensor, context: Any = None) -> torch.Tensor: ...

    def sample_and_log_prob(self, n: int, generator: torch.Generator | None = None, context: Any = None
                            ) -> tuple[torch.Tensor, torch.Tensor]: ...
