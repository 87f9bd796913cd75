"""Variational training of the torsion model: minimise the reverse KL divergence to torsional Boltzmann densities."""

from __future__ import annotations

__all__ = ["train_reverse_kl", "train_maximum_likelihood"]

import sys
from collections.abc import Callable, Sequence
from pathlib import Path

import torch

from molsamp.analysis import kish_ess
from molsamp.conformers.features import molecule_graph
from molsamp.conformers.model import TorsionMixtureNet, save_model
from molsamp.conformers.target import TorsionalTarget


def _advantages(f: torch.Tensor) -> torch.Tensor:
    """Leave-one-out baselined, standardised score-function weights of the per-sample losses ``f: [S]``."""
    baseline = (f.sum() - f) / (len(f) - 1)
    advantage = f - baseline
    return advantage / (advantage.std() + 1e-8)


def train_reverse_kl(
    model: TorsionMixtureNet,
    targets: Sequence[TorsionalTarget],
    steps: int = 1000,
    molecules_per_step: int = 8,
    samples_per_molecule: int = 32,
    learning_rate: float = 1e-3,
    beta_start: float = 0.2,
    anneal_fraction: float = 0.5,
    seed: int = 0,
    checkpoint: str | Path | None = None,
    checkpoint_every: int = 100,
    progress: bool | None = None,
    log: Callable[[dict], None] | None = None,
) -> list[dict]:
    """Train ``model`` so that its mixture for each molecule approaches exp(-u(theta)) of that molecule's target.

    Minimises KL(q || p) = E_q[beta u + log q] + const by the score-function (REINFORCE) gradient with a
    leave-one-out baseline; clashing samples (u = +inf) get the worst finite loss of their batch plus 10 kT.
    The inverse temperature beta rises linearly from ``beta_start`` to 1 over the first ``anneal_fraction`` of the
    steps, so the model first spreads over all low-energy regions before it sharpens (reverse KL seeks modes).

    Returns one record per step: ``step``, ``beta``, ``reverse_kl`` (mean over molecules of E_q[beta u + log q] on
    clash-free samples, kT), ``ess_fraction`` (mean Kish ESS / samples at beta), ``clash_fraction``.
    """
    from torch_geometric.data import Batch
    from tqdm import tqdm

    targets = [t for t in targets if t.n_torsions > 0]
    graphs = [molecule_graph(t.molecule, t.torsions) for t in targets]
    generator = torch.Generator().manual_seed(seed)
    model.train()
    optimiser = torch.optim.Adam(model.parameters(), lr=learning_rate)
    history = []
    bar = tqdm(range(steps), disable=not sys.stderr.isatty() if progress is None else not progress, unit="step")
    for step in bar:
        beta = min(1.0, beta_start + (1 - beta_start) * step / max(1, anneal_fraction * steps))
        chosen = torch.randperm(len(targets), generator=generator)[:molecules_per_step].tolist()
        mixtures = model(Batch.from_data_list([graphs[i] for i in chosen]))
        losses, kls, ess, clashes = [], [], [], []
        for index, mixture in zip(chosen, mixtures):
            angles = mixture.sample(samples_per_molecule, generator)
            log_q = mixture.log_prob(angles)
            u = targets[index].energy(angles).to(log_q.dtype)
            finite = torch.isfinite(u)
            clashes.append(1 - finite.double().mean().item())
            if finite.sum() < 2:
                continue
            f = beta * u + log_q.detach()
            f = torch.where(finite, f, f[finite].max() + 10.0)
            losses.append((_advantages(f) * log_q).mean())
            kls.append(f[finite].mean().item())
            log_w = -f
            ess.append(kish_ess(log_w) / len(f))
        if losses:
            optimiser.zero_grad()
            torch.stack(losses).mean().backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimiser.step()
        record = {"step": step, "beta": beta, "reverse_kl": sum(kls) / max(len(kls), 1),
                  "ess_fraction": sum(ess) / max(len(ess), 1), "clash_fraction": sum(clashes) / len(clashes)}
        history.append(record)
        bar.set_postfix(kl=f"{record['reverse_kl']:.2f}", ess=f"{record['ess_fraction']:.2f}")
        if log is not None:
            log(record)
        if checkpoint is not None and ((step + 1) % checkpoint_every == 0 or step + 1 == steps):
            save_model(model, checkpoint, step=step + 1, history=history[-checkpoint_every:])
    return history


def train_maximum_likelihood(
    model: TorsionMixtureNet,
    targets: Sequence[TorsionalTarget],
    angles: Sequence[torch.Tensor],
    log_weights: Sequence[torch.Tensor | None] | None = None,
    steps: int = 500,
    molecules_per_step: int = 8,
    samples_per_molecule: int = 256,
    learning_rate: float = 1e-3,
    seed: int = 0,
) -> list[float]:
    """Fit ``model`` to torsion samples (forward KL): maximise the weighted mean log q of ``angles[m]: [S_m, T_m]``.

    The samples of molecule ``targets[m]`` may come from MD (equal weights) or from a weighted sampler
    (``log_weights[m]``: ``[S_m]``, any additive constant). A mass-covering warm start for :func:`train_reverse_kl`.
    Returns the loss (negative weighted mean log-density, per torsion) of every step.
    """
    from torch_geometric.data import Batch

    graphs = [molecule_graph(t.molecule, t.torsions) for t in targets]
    weights = [torch.softmax(torch.zeros(len(a), dtype=torch.float64) if lw is None else lw.double(), 0)
               for a, lw in zip(angles, log_weights or [None] * len(angles))]
    generator = torch.Generator().manual_seed(seed)
    model.train()
    optimiser = torch.optim.Adam(model.parameters(), lr=learning_rate)
    losses = []
    for _ in range(steps):
        chosen = torch.randperm(len(graphs), generator=generator)[:molecules_per_step].tolist()
        mixtures = model(Batch.from_data_list([graphs[i] for i in chosen]))
        terms = []
        for index, mixture in zip(chosen, mixtures):
            rows = torch.multinomial(weights[index], samples_per_molecule, replacement=True, generator=generator)
            terms.append(-mixture.log_prob(angles[index][rows]).mean() / max(mixture.n_torsions, 1))
        loss = torch.stack(terms).mean()
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        losses.append(loss.item())
    return losses
