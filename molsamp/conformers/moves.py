"""MCMC moves in torsion space: single-torsion Metropolis-Hastings updates guided by the torsion model."""

from __future__ import annotations

__all__ = ["TorsionMoves"]

import math

import torch

from molsamp.conformers.model import TorsionMixture
from molsamp.conformers.target import TorsionalTarget
from molsamp.samplers import metropolis_accept


class TorsionMoves:
    """An MCMC kernel for pi_beta ∝ q^(1 - beta) exp(-beta u) over torsion angles ``[N, T]``.

    Each move changes one randomly chosen torsion of every particle, by a draw from the model's marginal of that
    torsion (half of the moves: jumps between wells) or by a Gaussian random-walk step scaled to the torsion's
    sharpest component (the other half: refinement inside a well), and accepts it with the Metropolis-Hastings ratio.
    One energy evaluation per particle and move. Use as the ``move`` of :func:`molsamp.samplers.annealed_smc`.
    """

    def __init__(self, mixture: TorsionMixture, target: TorsionalTarget, moves: int,
                 generator: torch.Generator | None = None) -> None:
        self.mixture, self.target, self.moves, self.generator = mixture, target, moves, generator
        sharpest = mixture.concentrations.detach().double().max(-1).values
        self.step = (1.0 / sharpest.sqrt()).clamp(0.05, 0.5)  # rad, per torsion

    def __call__(self, angles: torch.Tensor, lq: torch.Tensor, lp: torch.Tensor, beta: float):
        accepted = 0
        n, t = angles.shape
        rows = torch.arange(n)
        for _ in range(self.moves):
            which = torch.randint(t, (n,), generator=self.generator)
            from_model = torch.rand(n, generator=self.generator) < 0.5
            walk = angles[rows, which] + self.step[which] * torch.randn(n, generator=self.generator, dtype=torch.float64)
            jump = self.mixture.sample(n, self.generator)[rows, which]
            new = angles.clone()
            new[rows, which] = torch.remainder(torch.where(from_model, jump, walk) + math.pi, 2 * math.pi) - math.pi
            with torch.no_grad():
                new_lq = self.mixture.log_prob(new).double()
            new_lp = -self.target.energy(new)
            delta_q, delta_p = new_lq - lq, torch.nan_to_num(new_lp - lp, nan=-math.inf)
            # Random walk: symmetric proposal. Model jump: the proposal ratio cancels q's share of pi_beta.
            log_alpha = torch.where(from_model, beta * (delta_p - delta_q), (1 - beta) * delta_q + beta * delta_p)
            accept = metropolis_accept(log_alpha, self.generator)
            angles = torch.where(accept[:, None], new, angles)
            lq, lp = torch.where(accept, new_lq, lq), torch.where(accept, new_lp, lp)
            accepted += int(accept.sum())
        return angles, lq, lp, accepted / (n * self.moves)
