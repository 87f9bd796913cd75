"""A Metropolis-Hastings proposal in torsion space: single-torsion updates guided by the torsion model."""

from __future__ import annotations

__all__ = ["TorsionStep"]

import math

import torch

from molsamp.conformers.model import TorsionMixture


class TorsionStep:
    """A :class:`~molsamp.kernels.Proposal` over torsion angles ``[C, T]`` (rad): each chain changes one randomly
    chosen torsion, by a draw from the model's marginal of that torsion (half of the proposals: jumps between
    wells) or by a Gaussian random-walk step scaled to the torsion's sharpest component (the other half: refinement
    inside a well). ``MetropolisHastings(TorsionStep(q), target)`` is exact for any target over the same torsions;
    with :class:`~molsamp.samplers.GeometricPath` it is the move of the conformer SMC."""

    def __init__(self, mixture: TorsionMixture) -> None:
        self.mixture = mixture
        sharpest = mixture.concentrations.detach().double().max(-1).values
        self.step = (1.0 / sharpest.sqrt()).clamp(0.05, 0.5)  # rad, per torsion

    @torch.no_grad()
    def propose(self, angles: torch.Tensor, generator: torch.Generator | None = None
                ) -> tuple[torch.Tensor, torch.Tensor]:
        n, t = angles.shape
        rows = torch.arange(n)
        which = torch.randint(t, (n,), generator=generator)
        from_model = torch.rand(n, generator=generator) < 0.5
        walk = angles[rows, which] + self.step[which] * torch.randn(n, generator=generator, dtype=torch.float64)
        jump = self.mixture.sample(n, generator)[rows, which]
        new = angles.clone()
        new[rows, which] = torch.remainder(torch.where(from_model, jump, walk) + math.pi, 2 * math.pi) - math.pi
        # A model jump's reverse/forward ratio is that of the changed torsion's marginal; the walk is symmetric.
        marginal_ratio = (self.mixture.marginal_log_prob(angles) - self.mixture.marginal_log_prob(new))[rows, which]
        return new, torch.where(from_model, marginal_ratio.double(), 0.0)
