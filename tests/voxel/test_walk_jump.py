"""Walk-jump against exact answers: on a Gaussian mixture the denoiser is known exactly, so the law of the jump
(posterior means of the smoothed density's draws) is known, and the sampler must reproduce it."""

import math

import pytest
import torch

from molsamp.analysis import wasserstein2
from molsamp.kernels import ChainState
from molsamp.voxel import GaussianMixture, UnderdampedWalk, walk_jump

ANGLES = torch.arange(8) * 2 * math.pi / 8
RING = GaussianMixture(torch.stack([4 * ANGLES.cos(), 4 * ANGLES.sin()], 1), [0.3] * 8)


def test_the_mixture_denoiser_is_the_posterior_mean():
    single = GaussianMixture([[1.0, -2.0]], [0.5])
    y = torch.tensor([[0.0, 0.0], [3.0, 1.0]], dtype=torch.float64)
    shrink = 0.25 / (0.25 + 0.81)
    torch.testing.assert_close(single.denoise(y, 0.9), single.means + shrink * (y - single.means))


def test_the_walk_samples_a_standard_normal_from_its_score():
    generator = torch.Generator().manual_seed(0)
    start = ChainState(torch.zeros(4000, 2, dtype=torch.float64), torch.zeros(4000))
    state = UnderdampedWalk(lambda y: -y, n_steps=300, step_size=0.1).step(start, generator)
    assert state.x.mean(0).abs().max() < 0.06
    assert (state.x.var(0) - 1).abs().max() < 0.08


def agrees_with(x: torch.Tensor, exact: torch.Tensor) -> bool:
    """Whether ``x`` has the exact law's mode occupancy (equal by symmetry) and its distribution of distances to
    the nearest mode (two-sample Kolmogorov-Smirnov), each at the 0.1% level."""
    from scipy.stats import chisquare, ks_2samp

    def nearest(samples):
        distances = torch.cdist(samples, RING.means)
        return distances.argmin(1), distances.min(1).values

    modes, distances = nearest(x)
    occupancy = torch.bincount(modes, minlength=len(RING.means)).numpy()
    return chisquare(occupancy).pvalue > 1e-3 and ks_2samp(distances, nearest(exact)[1]).pvalue > 1e-3


@pytest.mark.parametrize("measurements", [1, 4])
def test_walk_jump_reproduces_the_law_of_the_jump_on_a_mixture(measurements):
    generator = torch.Generator().manual_seed(1)
    sigma, n = 1.0, 2000
    effective = sigma / math.sqrt(measurements)
    exact, again = (RING.denoise(RING.sample(n, effective, generator), effective) for _ in range(2))
    start = sigma * torch.randn(n, 2, generator=generator, dtype=torch.float64)
    sampled = walk_jump(RING, start, sigma, measurements, walk_steps=200, generator=generator, progress=False)[0]
    unwalked = walk_jump(RING, start, sigma, measurements, walk_steps=0, generator=generator, progress=False)[0]
    assert agrees_with(sampled, exact)
    assert not agrees_with(unwalked, exact)
    assert wasserstein2(sampled, exact) < 1.5 * wasserstein2(again, exact)


def test_chains_carry_on_between_jumps():
    generator = torch.Generator().manual_seed(3)
    samples = walk_jump(RING, torch.zeros(5, 2, dtype=torch.float64), 1.0, walk_steps=20, jumps=3,
                        generator=generator, progress=False)
    assert samples.shape == (3, 5, 2) and not torch.equal(samples[0], samples[1])
