"""Ramachandran basins and their populations."""

import math

import pytest
import torch

from molsamp.analysis import RAMACHANDRAN_STATES, ramachandran_populations, ramachandran_states
from molsamp.errors import InputError


def degrees(*values):
    return torch.tensor([math.radians(v) for v in values], dtype=torch.float64)


def test_each_basin_by_its_textbook_angles():
    phi = degrees(-80, -150, -65, 60, 75)  # C7eq, beta, alpha_R, alpha_L, C7ax
    psi = degrees(75, 155, -40, 45, -60)
    names = [RAMACHANDRAN_STATES[i] for i in ramachandran_states(phi, psi)]
    assert names == ["beta", "beta", "alpha_R", "alpha_L", "alpha_L"]


def test_populations_sum_to_one_and_follow_the_weights():
    phi, psi = degrees(-150, -65, 60), degrees(155, -40, 45)
    assert ramachandran_populations(phi, psi) == pytest.approx({"beta": 1 / 3, "alpha_R": 1 / 3, "alpha_L": 1 / 3})
    weighted = ramachandran_populations(phi, psi, log_weights=torch.log(torch.tensor([2.0, 1.0, 1.0])))
    assert weighted == pytest.approx({"beta": 0.5, "alpha_R": 0.25, "alpha_L": 0.25})


def test_mismatched_shapes_raise():
    with pytest.raises(InputError, match="shape"):
        ramachandran_states(degrees(-60, -60), degrees(-40))
