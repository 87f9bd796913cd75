"""The Distribution protocol: normalised densities that can be sampled and evaluated, like ``torch.distributions``.

The von Mises torsion model (:class:`~molsamp.conformers.model.TorsionMixture`) and the Timewarp conditional flow
(:class:`~molsamp.timewarp.proposal.TimewarpDistribution`) are Distributions; the flows of later samplers will be too.
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

    ``sample(n)`` gives ``[n, *event_shape]`` (for a conditional one, ``n`` per context row: ``[n, C, *event]``
    collapses to ``[C, *event]`` when ``n`` is None); ``log_prob(x)`` gives ``[B]`` in the units of the event's
    coordinates (1/rad^T for angles, 1/nm^(3N) for positions); ``sample_and_log_prob`` gives both, as cheaply as
    one of them where the model allows."""

    event_shape: torch.Size

    def sample(self, n: int, generator: torch.Generator | None = None, context: Any = None) -> torch.Tensor: ...

    def log_prob(self, x: torch.Tensor, context: Any = None) -> torch.Tensor: ...

    def sample_and_log_prob(self, n: int, generator: torch.Generator | None = None, context: Any = None
                            ) -> tuple[torch.Tensor, torch.Tensor]: ...
