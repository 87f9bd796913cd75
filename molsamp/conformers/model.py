"""Von Mises mixture model of torsion angles, conditioned on the molecular graph (after VonMisesNet).

A message-passing network over atoms and bonds gives, for every rotatable torsion of any molecule, a mixture of K
von Mises distributions; torsions are independent given the graph. The model is a Distribution over ``[B, T]``
torsion angles (rad): ``sample(n)`` and ``log_prob(angles)``, normalised on the torus.
"""

from __future__ import annotations

__all__ = ["TorsionMixtureNet", "TorsionMixture", "save_model", "load_model"]

import functools
import math
from pathlib import Path

import torch
from torch import Tensor, nn

from molsamp.checkpoints import load_checkpoint, save_checkpoint
from molsamp.conformers.features import ATOM_FEATURES, BOND_FEATURES

_MAX_CONCENTRATION = 500.0


class TorsionMixture:
    """Independent von Mises mixtures, one per torsion: weights ``[T, K]``, means ``[T, K]`` (rad), and
    concentrations ``[T, K]`` (1/rad^2). A :class:`~molsamp.distributions.Distribution` over angles ``[B, T]``
    (unconditional: ``context`` must be None)."""

    def __init__(self, logits: Tensor, means: Tensor, concentrations: Tensor) -> None:
        self.logits = torch.log_softmax(logits, dim=-1)
        self.means, self.concentrations = means, concentrations
        self.event_shape = torch.Size((self.logits.shape[0],))

    @classmethod
    def uniform(cls, n_torsions: int) -> TorsionMixture:
        """The flat density on the torus of ``n_torsions`` angles (a model-free proposal)."""
        zeros = torch.zeros(n_torsions, 1)
        return cls(zeros, zeros, torch.zeros(n_torsions, 1))

    def with_uniform(self, weight: float) -> TorsionMixture:
        """This mixture blended with the flat density, which gets ``weight`` (in (0, 1)): a defensive proposal that
        reaches every angle, including states the model misses."""
        if not 0.0 < weight < 1.0:
            raise ValueError(f"uniform weight must be in (0, 1), got {weight}")
        flat = torch.zeros(self.n_torsions, 1, dtype=self.means.dtype)
        return TorsionMixture(torch.cat([self.logits + math.log1p(-weight), flat + math.log(weight)], -1),
                              torch.cat([self.means, flat], -1), torch.cat([self.concentrations, flat], -1))

    @property
    def n_torsions(self) -> int:
        return self.logits.shape[0]

    def log_prob(self, angles: Tensor, context: None = None) -> Tensor:
        """Log-density ``[B]`` (1/rad^T) of torsion angles ``[B, T]`` (rad), with respect to the flat measure on the
        torus."""
        _no_context(context)
        return self.marginal_log_prob(angles).sum(-1)

    def sample_and_log_prob(self, n: int, generator: torch.Generator | None = None, context: None = None
                            ) -> tuple[Tensor, Tensor]:
        """``[n, T]`` angles and their log-density ``[n]``."""
        angles = self.sample(n, generator, context)
        return angles, self.log_prob(angles)

    def marginal_log_prob(self, angles: Tensor) -> Tensor:
        """Log-density ``[B, T]`` of each torsion's marginal at ``angles`` ``[B, T]`` (rad)."""
        kappa = self.concentrations
        log_normaliser = math.log(2 * math.pi) + torch.log(torch.special.i0e(kappa)) + kappa
        per_component = self.logits + kappa * torch.cos(angles[..., None] - self.means) - log_normaliser
        return torch.logsumexp(per_component, dim=-1)

    @torch.no_grad()
    def sample(self, n: int, generator: torch.Generator | None = None, context: None = None) -> Tensor:
        """``[n, T]`` torsion angles in (-pi, pi]."""
        _no_context(context)
        t, k = self.logits.shape
        component = torch.multinomial(self.logits.exp().expand(n, t, k).reshape(-1, k), 1, generator=generator)
        component = component.reshape(n, t, 1)
        mean = self.means.expand(n, t, k).gather(-1, component)[..., 0]
        kappa = self.concentrations.expand(n, t, k).gather(-1, component)[..., 0]
        angles = mean + _von_mises_standard(kappa, generator)
        return torch.remainder(angles + math.pi, 2 * math.pi) - math.pi


def _no_context(context) -> None:
    if context is not None:
        raise ValueError("a TorsionMixture is unconditional: context must be None")


def _von_mises_standard(kappa: Tensor, generator: torch.Generator | None) -> Tensor:
    """Samples of von Mises(0, kappa) by Best and Fisher's (1979) rejection method, one per entry of ``kappa``."""
    kappa = kappa.double().clamp(min=1e-6)
    tau = 1 + torch.sqrt(1 + 4 * kappa**2)
    rho = (tau - torch.sqrt(2 * tau)) / (2 * kappa)
    r = (1 + rho**2) / (2 * rho)
    result = torch.empty_like(kappa)
    pending = torch.ones_like(kappa, dtype=torch.bool)
    while pending.any():
        u1, u2, u3 = torch.rand((3, *kappa.shape), generator=generator, dtype=kappa.dtype, device=kappa.device)
        z = torch.cos(math.pi * u1)
        f = (1 + r * z) / (r + z)
        c = kappa * (r - f)
        accept = pending & ((c * (2 - c) - u2 > 0) | (torch.log(c / u2) + 1 - c >= 0))
        result = torch.where(accept, torch.sign(u3 - 0.5) * torch.acos(f.clamp(-1, 1)), result)
        pending &= ~accept
    return result


class TorsionMixtureNet(nn.Module):
    """Graph network mapping a molecule with its torsions to a :class:`TorsionMixture`.

    Args:
        hidden: width of atom embeddings.
        layers: message-passing layers (GINE convolutions with bond features, residual).
        components: von Mises components K per torsion.
    """

    def __init__(self, hidden: int = 64, layers: int = 4, components: int = 6) -> None:
        super().__init__()
        convolution = _gine_conv()
        self.config = {"hidden": hidden, "layers": layers, "components": components}
        self.embed = nn.Linear(ATOM_FEATURES, hidden)
        self.convolutions = nn.ModuleList(
            convolution(nn.Sequential(nn.Linear(hidden, hidden), nn.SiLU(), nn.Linear(hidden, hidden)),
                        edge_dim=BOND_FEATURES)
            for _ in range(layers)
        )
        self.norms = nn.ModuleList(nn.LayerNorm(hidden) for _ in range(layers))
        self.head = nn.Sequential(nn.Linear(4 * hidden, 2 * hidden), nn.SiLU(), nn.Linear(2 * hidden, hidden), nn.SiLU(),
                                  nn.Linear(hidden, 4 * components))
        self.components = components

    def forward(self, graph) -> list[TorsionMixture]:
        """One :class:`TorsionMixture` per molecule of a torch-geometric ``Data`` or ``Batch``."""
        h = self.embed(graph.x)
        for convolution, norm in zip(self.convolutions, self.norms):
            h = h + convolution(norm(h), graph.edge_index, graph.edge_attr)
        quads = graph.torsion_index  # [4, T_total]
        out = self.head(torch.cat([h[quads[0]], h[quads[1]], h[quads[2]], h[quads[3]]], dim=-1))
        out = out.reshape(-1, self.components, 4)
        logits, means = out[..., 0], torch.atan2(out[..., 1], out[..., 2])
        concentrations = nn.functional.softplus(out[..., 3]).clamp(max=_MAX_CONCENTRATION) + 1e-3
        counts = _torsions_per_graph(graph)
        return [TorsionMixture(*parts) for parts in zip(logits.split(counts), means.split(counts),
                                                         concentrations.split(counts))]


@functools.cache
def _gine_conv() -> type:
    """torch-geometric's GINEConv with a ``propagate`` of its own. For a layer without one, torch-geometric 2.8
    generates a TorchScript-ready ``propagate`` as a ``*_propagate_*.py`` file in the temporary folder and leaves it
    there; with one, it runs its generic message passing (the same numbers) and writes nothing."""
    from torch_geometric.nn import GINEConv

    class GINEConvWithoutCodegen(GINEConv):
        def propagate(self, *args, **kwargs):
            return super().propagate(*args, **kwargs)

    return GINEConvWithoutCodegen


def _torsions_per_graph(graph) -> list[int]:
    """Number of torsions of each molecule in a Data (one molecule) or Batch."""
    if not hasattr(graph, "num_graphs") or not hasattr(graph, "_slice_dict"):
        return [graph.torsion_index.shape[1]]
    slices = graph._slice_dict["torsion_index"]
    return (slices[1:] - slices[:-1]).tolist()


def save_model(model: TorsionMixtureNet, path, **metadata) -> Path:
    """Write ``model`` (weights, architecture and ``metadata``) to ``path`` atomically
    (:func:`~molsamp.checkpoints.save_checkpoint`)."""
    return save_checkpoint(model, path, "torsion-mixture", **metadata)


def load_model(path, device: torch.device | str | None = None) -> TorsionMixtureNet:
    """A :class:`TorsionMixtureNet` from a checkpoint written by :func:`save_model`; ``.metadata`` holds its card."""
    return load_checkpoint(path, "torsion-mixture", TorsionMixtureNet, device)
