"""Boltzmann generators for molecular crystals: a normalising flow over the positions and orientations of rigid
molecules around their lattice sites (after Kohler, Invernizzi, de Haan and Noe, "Rigid body flows for sampling
molecular crystal structures", ICML 2023), in a chart around the lattice with a quasi-harmonic prior.

**States** ``[B, M, 7]`` hold each molecule's reference point (nm) and unit quaternion (w, x, y, z). Densities are
over reference points (Lebesgue, nm^3 per molecule) and orientations (the Haar measure of SO(3) normalised as Euler
angles, sin(beta) d alpha d beta d gamma, total 8 pi^2, so a uniform orientation has density 1 / 8 pi^2): q and -q
are one orientation and get one density, and exp(-u) needs no Jacobian.

**Chart** (:class:`LatticeChart`): local coordinates y in R^D of a state: the displacements (nm) of the reference
points from their lattice sites, wrapped into the periodic box, and the rotation vectors (rad) of each molecule's
rotation relative to its lattice orientation, each squashed smoothly onto all of R (displacements by atanh over the
half box, rotation angles by atanh over pi; both the identity to first order), so that every y is one state and
every state (but a set of measure zero: half-box displacements, half-turn rotations) one y. For a
translation-invariant energy (a periodic crystal), the displacements are those of molecules 2..M relative to
molecule 1, and molecule 1's position is uniform over the box: the crystal's free translation is sampled exactly.

**Flow** (:class:`CrystalFlow`): y = mu + L T(z), z standard normal, T a stack of rational-quadratic spline
couplings (zuko; the identity outside [-B, B]), mu and L L^T the mean and covariance of local coordinates fitted to
MD samples (a quasi-harmonic model of the crystal). Every map is a bijection with an analytic Jacobian, so log q is
exact for every state.
"""

from __future__ import annotations

__all__ = ["LatticeChart", "CrystalFlow", "SPLITS", "rotation_vector_to_quaternion", "quaternion_to_rotation_vector",
           "quaternion_product", "log_haar_density"]

import math
from typing import Any

import torch
from torch import nn

from molsamp.errors import InputError
from molsamp.flows.rigid_bodies import check_unit_quaternions

LOG_EULER_VOLUME = math.log(8 * math.pi**2)
"""log of SO(3)'s volume in the Euler-angle normalisation of the Haar measure."""


def quaternion_product(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Hamilton product ``a b`` of quaternions ``[..., 4]`` (w, x, y, z): the rotation b, then a."""
    a, b = torch.broadcast_tensors(a, b)
    aw, av = a[..., :1], a[..., 1:]
    bw, bv = b[..., :1], b[..., 1:]
    return torch.cat([aw * bw - (av * bv).sum(-1, keepdim=True),
                      aw * bv + bw * av + torch.linalg.cross(av, bv, dim=-1)], -1)


def _conjugate(q: torch.Tensor) -> torch.Tensor:
    return torch.cat([q[..., :1], -q[..., 1:]], -1)


def rotation_vector_to_quaternion(omega: torch.Tensor) -> torch.Tensor:
    """Unit quaternions ``[..., 4]`` (w >= 0 for angles up to pi) of rotation vectors ``omega: [..., 3]`` (rad)."""
    angle = omega.norm(dim=-1, keepdim=True)
    return torch.cat([torch.cos(angle / 2), 0.5 * torch.sinc(angle / (2 * math.pi)) * omega], -1)


def quaternion_to_rotation_vector(q: torch.Tensor) -> torch.Tensor:
    """Rotation vectors ``[..., 3]`` (rad, angle in [0, pi]) of unit quaternions ``q: [..., 4]``; q and -q give the
    same vector."""
    q = torch.where(q[..., :1] < 0, -q, q)
    w, v = q[..., :1], q[..., 1:]
    sine = v.norm(dim=-1, keepdim=True)
    safe = torch.where(sine > 1e-8, sine, torch.ones_like(sine))
    scale = torch.where(sine > 1e-8, 2 * torch.atan2(sine, w) / safe, 2 / w)  # angle / sin(angle / 2)
    return scale * v


def log_haar_density(omega: torch.Tensor) -> torch.Tensor:
    """log of the Haar measure's density ``2 (1 - cos theta) / theta^2`` (Euler normalisation) with respect to
    Lebesgue measure on rotation vectors ``omega: [..., 3]``: ``[...]``."""
    angle = omega.norm(dim=-1)
    return 2 * torch.log(torch.sinc(angle / (2 * math.pi)))


class LatticeChart:
    """Local coordinates of rigid molecules around a lattice (see the module's docstring).

    Args:
        sites: lattice reference points ``[M, 3]`` (nm).
        orientations: lattice orientations, unit quaternions ``[M, 4]``.
        box: edges ``[3]`` (nm) of the orthorhombic periodic box.
        translation_invariant: whether the energy is unchanged by a global shift (a periodic crystal): molecule 1's
            position is then uniform over the box and the others are placed relative to it.
    """

    def __init__(self, sites: torch.Tensor, orientations: torch.Tensor, box: torch.Tensor,
                 translation_invariant: bool = True) -> None:
        self.sites = torch.as_tensor(sites, dtype=torch.float64)
        self.orientations = torch.as_tensor(orientations, dtype=torch.float64)
        self.box = torch.as_tensor(box, dtype=torch.float64).reshape(-1)
        if self.sites.ndim != 2 or self.sites.shape[1] != 3 or self.orientations.shape != (len(self.sites), 4):
            raise InputError(f"a lattice needs sites [M, 3] and orientations [M, 4], got {tuple(self.sites.shape)} "
                             f"and {tuple(self.orientations.shape)}")
        if self.box.shape != (3,) or not bool((self.box > 0).all()):
            raise InputError(f"the box must be 3 positive edges (nm, orthorhombic), got {self.box.tolist()}")
        check_unit_quaternions(self.orientations)
        self.translation_invariant = translation_invariant
        self.n_molecules = len(self.sites)
        self.n_displaced = self.n_molecules - 1 if translation_invariant else self.n_molecules
        self.dim = 3 * self.n_displaced + 3 * self.n_molecules

    def _wrap(self, v: torch.Tensor) -> torch.Tensor:
        box = self.box.to(v)
        return v - box * torch.round(v / box)

    def translations(self, tolerance: float = 0.005) -> torch.Tensor:
        """The lattice's translational symmetries as permutations ``[G, M]`` of its molecules (the identity first):
        row g maps molecule i to the molecule ``perm[i]`` whose site is site i shifted by one translation (within
        ``tolerance`` nm: a minimised supercell is periodic only to about 1e-3 nm) with the same orientation (within
        about 5 degrees). A supercell of n unit cells has n of them; relabelling a state's molecules by one gives a
        copy of the crystal as likely as the state."""
        sites, orientations = self.sites, self.orientations
        permutations = []
        for shift in sites - sites[0]:
            offsets = self._wrap(sites[None, :, :] - (sites[:, None, :] + shift)).norm(dim=-1)  # [i, j]
            aligned = (orientations @ orientations.T).abs() > 1 - 1e-3
            match = (offsets < tolerance) & aligned
            if bool((match.sum(1) == 1).all()):
                permutations.append(match.double().argmax(1))
        return torch.stack(permutations)

    def local(self, state: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Local coordinates ``y: [B, D]`` of states ``[B, M, 7]`` and log|d state / d y| ``[B]`` (Lebesgue x Haar
        per molecule; with a translation-invariant energy, molecule 1's uniform position contributes -log V): log
        p_state = log p_y - this."""
        x, q = state[..., :3], state[..., 3:]
        sites, orientations = self.sites.to(state), self.orientations.to(state)
        if self.translation_invariant:
            displacement = self._wrap(x[:, 1:] - x[:, :1] - (sites[1:] - sites[:1]))
        else:
            displacement = self._wrap(x - sites)
        half = self.box.to(state) / 2
        omega = quaternion_to_rotation_vector(quaternion_product(_conjugate(orientations), q))
        angle = omega.norm(dim=-1, keepdim=True)
        y_displacement = half * torch.atanh((displacement / half).clamp(-1 + 1e-15, 1 - 1e-15))
        y_rotation = omega * _atanh_ratio(angle / math.pi)
        y = torch.cat([y_displacement.flatten(1), y_rotation.flatten(1)], 1)
        return y, self._log_jacobian(y_displacement, y_rotation)

    def state(self, y: torch.Tensor, shift: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """States ``[B, M, 7]`` of local coordinates ``y: [B, D]`` (molecule 1 at ``shift: [B, 3]`` nm, default its
        site, when translation invariant) and log|d state / d y| ``[B]`` as :meth:`local`'s."""
        sites, orientations = self.sites.to(y), self.orientations.to(y)
        y_displacement = y[:, :3 * self.n_displaced].reshape(len(y), self.n_displaced, 3)
        y_rotation = y[:, 3 * self.n_displaced:].reshape(len(y), self.n_molecules, 3)
        half = self.box.to(y) / 2
        displacement = half * torch.tanh(y_displacement / half)
        omega = y_rotation * _tanh_ratio(y_rotation.norm(dim=-1, keepdim=True) / math.pi)
        if self.translation_invariant:
            first = sites[:1].expand(len(y), 1, 3) if shift is None else shift[:, None, :]
            x = torch.cat([first, first + sites[1:] - sites[:1] + displacement], 1)
        else:
            x = sites + displacement
        q = quaternion_product(orientations, rotation_vector_to_quaternion(omega))
        return torch.cat([x, q], -1), self._log_jacobian(y_displacement, y_rotation)

    def _log_jacobian(self, y_displacement: torch.Tensor, y_rotation: torch.Tensor) -> torch.Tensor:
        """log|d state / d y|: the squashes' derivatives, the Haar measure's density in rotation vectors, and molecule
        1's uniform position."""
        half = self.box.to(y_displacement) / 2
        squash_displacement = _log_sech_squared(y_displacement / half).sum((1, 2))
        radius = y_rotation.norm(dim=-1) / math.pi  # omega = pi tanh(radius) along y_rotation
        squash_rotation = _log_sech_squared(radius) + 2 * torch.log(_tanh_ratio(radius))
        omega = y_rotation * _tanh_ratio(radius[..., None])
        log_jacobian = squash_displacement + (squash_rotation + log_haar_density(omega)).sum(-1)
        if self.translation_invariant:
            log_jacobian = log_jacobian + torch.log(self.box).sum()
        return log_jacobian


def _tanh_ratio(r: torch.Tensor) -> torch.Tensor:
    """tanh(r) / r, 1 at r = 0."""
    safe = torch.where(r > 1e-6, r, torch.ones_like(r))
    return torch.where(r > 1e-6, torch.tanh(safe) / safe, 1 - r**2 / 3)


def _atanh_ratio(s: torch.Tensor) -> torch.Tensor:
    """atanh(s) / s for s in [0, 1), 1 at s = 0."""
    s = s.clamp(max=1 - 1e-15)
    safe = torch.where(s > 1e-6, s, torch.ones_like(s))
    return torch.where(s > 1e-6, torch.atanh(safe) / safe, 1 + s**2 / 3)


def _log_sech_squared(r: torch.Tensor) -> torch.Tensor:
    """log(1 - tanh(r)^2), the log-derivative of tanh, without overflow."""
    a = r.abs()
    return 2 * (math.log(2) - a - torch.nn.functional.softplus(-2 * a))


class _Coupling(nn.Module):
    """Monotone rational-quadratic splines (zuko) on the coordinates outside ``mask``, their parameters computed by
    ``net`` from the coordinates inside (``[B, n_in] -> [B, n_out * (3 bins - 1)]``); the identity outside [-bound,
    bound], and at initialisation when ``net``'s output is zero.

    With ``float32_net`` the net keeps float32 weights and computes in float32 whatever the flow's dtype (casts such
    as ``.double()`` pass it by): about 3 times faster on a CPU. The splines and their log-determinants stay in the
    flow's dtype, and the inverse feeds the net the same unchanged coordinates, so the log-density is that of the
    map computed, up to the float32 rounding of the spline parameters (which depends on the batch: about 1e-7 in
    log q)."""

    def __init__(self, mask: torch.Tensor, net: nn.Module, bins: int, bound: float, float32_net: bool = False) -> None:
        super().__init__()
        self.register_buffer("mask", mask)
        self.net, self.bins, self.bound, self.float32_net = net, bins, bound, float32_net

    def _apply(self, fn, recurse=True):
        super()._apply(fn, recurse)
        if self.float32_net:
            self.net.float()
        return self

    def _spline(self, z: torch.Tensor):
        from zuko.transforms import MonotonicRQSTransform

        given = z[:, self.mask]
        if self.float32_net:
            given = given.float()
        parameters = self.net(given).to(z.dtype).reshape(len(z), -1, 3 * self.bins - 1)
        widths, heights, derivatives = parameters.split([self.bins, self.bins, self.bins - 1], -1)
        return MonotonicRQSTransform(widths, heights, derivatives, bound=self.bound)

    def forward(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        moved, log_det = self._spline(z).call_and_ladj(z[:, ~self.mask])
        out = z.clone()
        out[:, ~self.mask] = moved
        return out, log_det.sum(-1)

    def inverse(self, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        spline = self._spline(y)
        moved = spline.inv(y[:, ~self.mask])
        out = y.clone()
        out[:, ~self.mask] = moved
        return out, -spline.call_and_ladj(moved)[1].sum(-1)


SPLITS = ("molecules", "coordinates")
"""How a :class:`CrystalFlow`'s attention couplings split the coordinates (see its ``split``)."""


def _mlp(n_in: int, hidden: int, n_out: int) -> nn.Sequential:
    """An MLP with two hidden layers whose output starts at zero."""
    net = nn.Sequential(nn.Linear(n_in, hidden), nn.SiLU(), nn.Linear(hidden, hidden), nn.SiLU(),
                        nn.Linear(hidden, n_out))
    nn.init.zeros_(net[-1].weight)
    nn.init.zeros_(net[-1].bias)
    return net


class _MoleculeAttention(nn.Module):
    """Spline parameters ``[B, n_out, n_parameters]`` for the coordinates at ``slots[~mask]`` from those at
    ``slots[mask]`` (``[B, n_in]``) by self-attention over molecules: each molecule a token of its six coordinates
    (molecule * 6 + 0..2 for the displacement, 3..5 for the rotation; zero where not given) plus a learned embedding,
    ``blocks`` pre-norm transformer blocks of ``width`` channels; its size does not grow with the crystal and its
    output starts at zero."""

    def __init__(self, slots: torch.Tensor, mask: torch.Tensor, n_molecules: int, width: int, n_parameters: int,
                 blocks: int = 2, heads: int = 4) -> None:
        super().__init__()
        self.register_buffer("given", slots[mask])
        self.register_buffer("wanted", slots[~mask])
        self.n_molecules, self.n_parameters = n_molecules, n_parameters
        self.embed = nn.Linear(6, width)
        self.molecule_embedding = nn.Parameter(torch.randn(n_molecules, width) / math.sqrt(width))
        block = nn.TransformerEncoderLayer(width, heads, 2 * width, dropout=0.0, batch_first=True, norm_first=True)
        self.encoder = nn.TransformerEncoder(block, blocks, enable_nested_tensor=False)
        self.head = nn.Linear(width, 6 * n_parameters)
        nn.init.zeros_(self.head.weight)
        nn.init.zeros_(self.head.bias)

    def forward(self, given: torch.Tensor) -> torch.Tensor:
        tokens = given.new_zeros(len(given), self.n_molecules * 6)
        tokens[:, self.given] = given
        hidden = self.encoder(self.embed(tokens.reshape(len(given), self.n_molecules, 6)) + self.molecule_embedding)
        return self.head(hidden).reshape(len(given), self.n_molecules * 6, self.n_parameters)[:, self.wanted]


class CrystalFlow(nn.Module):
    """A normalised flow density over rigid-molecule states around a lattice (see the module's docstring); a
    :class:`~molsamp.distributions.Distribution` with ``event_shape`` (M, 7).

    Args:
        chart: the lattice's local coordinates.
        mean: ``[D]`` mean of the local coordinates.
        covariance: ``[D, D]`` their covariance (positive definite).
        layers: spline couplings.
        hidden: width of each coupling's conditioner.
        bins: spline bins.
        bound: B: the splines act on [-B, B] of the whitened coordinates and are the identity outside.
        seed: seeds the couplings' masks (and nothing else).
        conditioner: ``"mlp"``: each coupling moves a random half of the coordinates, conditioned on the others by an
            MLP (its size grows with the crystal's squared size); ``"attention"``: each coupling moves the
            coordinates of a random half of the molecules, conditioned on the others' by self-attention over
            molecules (its size independent of the crystal's).
        float32_conditioner: the conditioners compute in float32 (about 3 times faster on a CPU; the splines, the
            chart and the log-densities stay in float64, log q that of the map computed up to about 1e-7).
        split: what an attention coupling moves: ``"molecules"``, all six coordinates of a random half of the
            molecules (a molecule's coordinates then never condition one another beyond the prior's correlations);
            ``"coordinates"``, a random half of all coordinates, as the MLP couplings do.
    """

    def __init__(self, chart: LatticeChart, mean: torch.Tensor, covariance: torch.Tensor, layers: int = 8,
                 hidden: int = 256, bins: int = 8, bound: float = 5.0, seed: int = 0,
                 conditioner: str = "mlp", float32_conditioner: bool = False, split: str = "molecules") -> None:
        super().__init__()
        self.chart = chart
        self.event_shape = torch.Size((chart.n_molecules, 7))
        mean = torch.as_tensor(mean, dtype=torch.float64)
        covariance = torch.as_tensor(covariance, dtype=torch.float64)
        self.config = {"chart": {"sites": chart.sites, "orientations": chart.orientations, "box": chart.box,
                                 "translation_invariant": chart.translation_invariant},
                       "mean": mean, "covariance": covariance,
                       "layers": layers, "hidden": hidden, "bins": bins, "bound": bound, "seed": seed,
                       "conditioner": conditioner, "float32_conditioner": float32_conditioner, "split": split}
        if mean.shape != (chart.dim,) or covariance.shape != (chart.dim, chart.dim):
            raise InputError(f"the chart has {chart.dim} local coordinates; got a mean {tuple(mean.shape)} and a "
                             f"covariance {tuple(covariance.shape)}")
        cholesky, info = torch.linalg.cholesky_ex(covariance)
        if int(info):
            raise InputError("the covariance of the local coordinates is not positive definite")
        if split not in SPLITS:
            raise InputError(f"unknown split {split!r}; use one of {', '.join(SPLITS)}")
        self.register_buffer("mean", mean)
        self.register_buffer("cholesky", cholesky)
        self.couplings = nn.ModuleList(self._couplings(conditioner, layers, hidden, bins, bound, seed,
                                                       float32_conditioner, split))
        self.to(torch.float64)

    def _couplings(self, conditioner: str, layers: int, hidden: int, bins: int, bound: float, seed: int,
                   float32_net: bool, split: str) -> list[_Coupling]:
        """``layers`` couplings in pairs, the second of each pair moving what the first conditions on."""
        def halves(n: int) -> list[torch.Tensor]:
            return [torch.randperm(n, generator=torch.Generator().manual_seed(seed + k)) < n // 2
                    for k in range(layers // 2)]

        n_parameters = 3 * bins - 1
        if conditioner == "mlp":
            return [_Coupling(mask, _mlp(int(mask.sum()), hidden, int((~mask).sum()) * n_parameters), bins, bound,
                              float32_net) for pair in halves(self.chart.dim) for mask in (pair, ~pair)]
        if conditioner == "attention":
            chart = self.chart
            first = chart.n_molecules - chart.n_displaced  # molecule 1 has no displacement when translation invariant
            displaced = torch.arange(first, chart.n_molecules).repeat_interleave(3) * 6 + torch.arange(3).repeat(
                chart.n_displaced)
            rotated = torch.arange(chart.n_molecules).repeat_interleave(3) * 6 + 3 + torch.arange(3).repeat(
                chart.n_molecules)
            slots = torch.cat([displaced, rotated])
            if split == "molecules":
                masks = [molecules[slots // 6] for pair in halves(chart.n_molecules) for molecules in (pair, ~pair)]
            else:
                masks = [mask for pair in halves(chart.dim) for mask in (pair, ~pair)]
            return [_Coupling(mask, _MoleculeAttention(slots, mask, chart.n_molecules, hidden, n_parameters), bins,
                              bound, float32_net) for mask in masks]
        raise InputError(f"unknown conditioner {conditioner!r}; use 'mlp' or 'attention'")

    @staticmethod
    def _log_base(z: torch.Tensor) -> torch.Tensor:
        return -0.5 * (z**2).sum(-1) - 0.5 * z.shape[1] * math.log(2 * math.pi)

    def _log_scale(self) -> torch.Tensor:
        return torch.log(torch.diagonal(self.cholesky)).sum()

    def transform(self, z: torch.Tensor, shift: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """States ``[B, M, 7]`` of base points ``z: [B, D]`` (molecule 1 at ``shift: [B, 3]`` nm when translation
        invariant) and their exact log-densities ``[B]``: the flow's map, differentiable in its parameters."""
        log_q = self._log_base(z)
        for coupling in self.couplings:
            z, log_det = coupling(z)
            log_q = log_q - log_det
        state, log_jacobian = self.chart.state(self.mean + z @ self.cholesky.T, shift)
        return state, log_q - self._log_scale() - log_jacobian

    def inverse(self, state: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor]:
        """Base points ``z: [B, D]``, molecule 1's positions ``[B, 3]`` (None unless translation invariant) and the
        exact log-densities ``[B]`` of states ``[B, M, 7]``: :meth:`transform` undone."""
        state = torch.as_tensor(state, dtype=torch.float64)
        if tuple(state.shape[1:]) != tuple(self.event_shape):
            raise InputError(f"states have shape {tuple(state.shape)}; expected [B, {self.chart.n_molecules}, 7]")
        check_unit_quaternions(state[..., 3:])
        y, log_jacobian = self.chart.local(state)
        z = torch.linalg.solve_triangular(self.cholesky, (y - self.mean).T, upper=False).T
        log_q = torch.zeros(len(z), dtype=torch.float64, device=z.device)
        for coupling in reversed(self.couplings):
            z, log_det = coupling.inverse(z)
            log_q = log_q + log_det
        shift = state[:, 0, :3] if self.chart.translation_invariant else None
        return z, shift, log_q + self._log_base(z) - self._log_scale() - log_jacobian

    def sample_and_log_prob(self, n: int, generator: torch.Generator | None = None, context: None = None
                            ) -> tuple[torch.Tensor, torch.Tensor]:
        """States ``[n, M, 7]`` and their exact log-densities ``[n]``; differentiable in the flow's parameters (the
        reverse-KL loss needs it), so call under ``torch.no_grad()`` when sampling only."""
        if context is not None:
            raise InputError("a crystal flow is unconditional: context must be None")
        device = self.mean.device
        z = torch.randn(n, self.chart.dim, generator=generator, dtype=torch.float64, device=device)
        shift = None
        if self.chart.translation_invariant:
            shift = torch.rand(n, 3, generator=generator, dtype=torch.float64, device=device) * self.chart.box.to(device)
        return self.transform(z, shift)

    def sample(self, n: int, generator: torch.Generator | None = None, context: None = None) -> torch.Tensor:
        with torch.no_grad():
            return self.sample_and_log_prob(n, generator)[0]

    def log_prob(self, state: torch.Tensor, context: None = None) -> torch.Tensor:
        """Exact log-densities ``[B]`` of states ``[B, M, 7]``."""
        if context is not None:
            raise InputError("a crystal flow is unconditional: context must be None")
        return self.inverse(state)[2]

    @classmethod
    def from_config(cls, chart: dict[str, Any], mean: torch.Tensor, covariance: torch.Tensor, **options: Any
                    ) -> CrystalFlow:
        """The flow of a checkpoint's ``config`` (the chart as a mapping of its arguments)."""
        return cls(LatticeChart(**chart), mean, covariance, **options)

    @classmethod
    def fit(cls, chart: LatticeChart, states: torch.Tensor, shrinkage: float = 0.1, scale: float = 1.0,
            symmetric: bool = True, harmonic: torch.Tensor | None = None, harmonic_weight: float = 0.9,
            **options: Any) -> CrystalFlow:
        """A flow whose prior is the Gaussian of the local coordinates of ``states`` ``[S, M, 7]`` (e.g. MD frames),
        with the copies of each state under the lattice's translations (:meth:`LatticeChart.translations`) when
        ``symmetric`` (a supercell of n cells gets n times the data: the covariance of D coordinates from S frames
        is off by about D^2 / 4S kT of KL divergence), its covariance shrunk towards its diagonal by ``shrinkage``,
        or towards the ``harmonic`` covariance ``[D, D]`` (:func:`~molsamp.flows.crystals.harmonic_covariance`,
        free of sampling noise) by ``harmonic_weight`` when given, and multiplied by ``scale`` (e.g. the ratio of
        temperatures when the frames come from another one); the couplings start as the identity."""
        states = torch.as_tensor(states, dtype=torch.float64)
        if symmetric and chart.translation_invariant:
            states = torch.cat([states[:, permutation] for permutation in chart.translations()])
        y, _ = chart.local(states)
        mean = y.mean(0)
        sample = torch.cov(y.T)
        if harmonic is None:
            covariance = (1 - shrinkage) * sample + shrinkage * torch.diag(torch.diagonal(sample))
        else:
            if not 0.0 <= harmonic_weight <= 1.0:
                raise InputError(f"harmonic_weight must be in [0, 1], got {harmonic_weight}")
            covariance = (1 - harmonic_weight) * sample + harmonic_weight * torch.as_tensor(harmonic).to(sample)
        return cls(chart, mean, scale * covariance, **options)
