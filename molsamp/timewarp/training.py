"""Training the Timewarp flow on transition pairs of several peptides: maximum likelihood, then (as Timewarp's second
stage) the Metropolis-Hastings acceptance of its proposals under the peptides' energies."""

from __future__ import annotations

__all__ = ["train_timewarp", "negative_log_likelihood", "acceptance_loss"]

import sys
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import torch

from molsamp.flows.rigid_bodies import random_rotations
from molsamp.timewarp.data import TransitionPairs
from molsamp.timewarp.model import TimewarpFlow, save_model
from molsamp.timewarp.sampler import TimewarpDistribution, TimewarpProposal


def _rotated(pairs: TransitionPairs, index: torch.Tensor, generator: torch.Generator | None, rotate: bool
             ) -> tuple[torch.Tensor, torch.Tensor]:
    """The pairs ``index``, each turned (if ``rotate``) by one random rotation about its first frame's centre."""
    x0, x1 = pairs.x0[index], pairs.x1[index]
    if rotate:
        rotation = random_rotations(len(index), generator, x0.dtype)
        centre = x0.mean(1, keepdim=True)
        x0, x1 = (x0 - centre) @ rotation.transpose(1, 2), (x1 - centre) @ rotation.transpose(1, 2)
    return x0, x1


def negative_log_likelihood(model: TimewarpFlow, pairs: TransitionPairs, index: torch.Tensor,
                            generator: torch.Generator | None = None, rotate: bool = True) -> torch.Tensor:
    """Mean -log p(x1, v | x0) per degree of freedom (nats) over the pairs ``index``, with v ~ N(0, I) drawn fresh
    and (if ``rotate``) each pair turned by one random rotation about the origin."""
    x0, x1 = _rotated(pairs, index, generator, rotate)
    v = torch.randn(x1.shape, generator=generator, dtype=x1.dtype)
    return -model.log_prob(x1, v, x0, pairs.features).mean() / (2 * x1[0].numel())


def acceptance_loss(model: TimewarpFlow, pairs: TransitionPairs, index: torch.Tensor,
                    energy: Callable[[torch.Tensor], torch.Tensor], generator: torch.Generator | None = None,
                    rotate: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """Timewarp's acceptance loss: mean -log alpha per degree of freedom over proposals from the states ``x0`` of
    the pairs ``index`` (MD samples), where alpha is the Metropolis-Hastings acceptance probability of
    :class:`~molsamp.timewarp.sampler.TimewarpProposal` under the reduced ``energy`` (kT, differentiable). Returns the loss
    and the mean acceptance probability (no gradient)."""
    x0, _ = _rotated(pairs, index, generator, rotate)
    proposal = TimewarpProposal(TimewarpDistribution(model, pairs.features))
    x1, log_q_ratio = proposal.propose(x0, generator)
    u0, u1 = energy(x0.double()).detach().to(x0.dtype), energy(x1.double()).to(x0.dtype)
    log_ratio = u0 - u1 + log_q_ratio
    log_alpha = torch.nan_to_num(log_ratio, nan=-1e6, posinf=0.0, neginf=-1e6).clamp(max=0.0)
    return -log_alpha.mean() / (2 * x0[0].numel()), log_alpha.detach().exp().mean()


def train_timewarp(model: TimewarpFlow, datasets: Sequence[TransitionPairs], steps: int = 5000,
                   batch_size: int = 32, learning_rate: float = 5e-4, seed: int = 0,
                   validation: Sequence[TransitionPairs] = (), checkpoint: str | Path | None = None,
                   checkpoint_every: int = 500, progress: bool | None = None,
                   log: Callable[[dict], None] | None = None,
                   energies: Mapping[str, Callable[[torch.Tensor], torch.Tensor]] | None = None,
                   acceptance_weight: float = 0.0) -> list[dict]:
    """Adam on the negative log-likelihood of randomly rotated pairs; each step draws one peptide (weighted by its
    number of pairs) and a batch of its pairs. With ``acceptance_weight > 0`` the loss adds that times
    :func:`acceptance_loss` under ``energies[name]`` (reduced energy of each peptide, e.g. an
    :class:`~molsamp.targets.OpenMMTarget`). Every ``checkpoint_every`` steps the validation NLL is computed and
    the model saved to ``checkpoint``. Returns (and passes to ``log``) one record per evaluation."""
    from tqdm import tqdm

    generator = torch.Generator().manual_seed(seed)
    model.train()
    optimiser = torch.optim.Adam(model.parameters(), lr=learning_rate)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimiser, max(steps, 1))
    sizes = torch.tensor([len(d) for d in datasets], dtype=torch.float64)
    history, running, running_acceptance = [], [], []
    show = sys.stderr.isatty() if progress is None else progress
    for step in tqdm(range(1, steps + 1), disable=not show, unit="step", desc="timewarp"):
        pairs = datasets[int(torch.multinomial(sizes, 1, generator=generator))]
        index = torch.randint(len(pairs), (batch_size,), generator=generator)
        loss = negative_log_likelihood(model, pairs, index, generator)
        running.append(loss.item())
        if acceptance_weight > 0:
            penalty, acceptance = acceptance_loss(model, pairs, index, energies[pairs.name], generator)
            loss = loss + acceptance_weight * penalty
            running_acceptance.append(acceptance.item())
        optimiser.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 10.0)
        optimiser.step()
        scheduler.step()
        if step % checkpoint_every == 0 or step == steps:
            record = {"step": step, "train_nll": sum(running) / len(running)}
            if running_acceptance:
                record["train_acceptance"] = sum(running_acceptance) / len(running_acceptance)
            with torch.no_grad():
                for held_out in validation:
                    index = torch.arange(0, len(held_out), max(len(held_out) // 256, 1))
                    record[f"validation_nll_{held_out.name}"] = negative_log_likelihood(
                        model, held_out, index, torch.Generator().manual_seed(0)).item()
            history.append(record)
            running, running_acceptance = [], []
            if log is not None:
                log(record)
            if checkpoint is not None:
                save_model(model, checkpoint, tau_ps=datasets[0].tau, trained_on=[d.name for d in datasets],
                           steps=step, history=history)
    return history
