"""The Timewarp flow: exact log-density (change of variables), invertibility, symmetries, checkpoints."""

import pytest
import torch

from molsamp.errors import InputError
from molsamp.systems import load
from molsamp.timewarp.features import N_FEATURES, atom_features
from molsamp.timewarp.model import TimewarpFlow, load_model, save_model


@pytest.fixture(scope="module")
def ala2():
    system = load("ala2")
    return torch.as_tensor(system.positions), atom_features(system.topology).double()


def perturbed_flow(seed=0, **config):
    """A flow with random (not zero-initialised) output layers, so every coupling does something."""
    torch.manual_seed(seed)
    flow = TimewarpFlow(hidden=16, heads=2, layers=1, couplings=4, **config).double()
    for parameter in flow.parameters():
        parameter.data += 0.1 * torch.randn_like(parameter)
    return flow


def test_features_describe_every_atom(ala2):
    x, features = ala2
    assert features.shape == (22, N_FEATURES)
    assert torch.allclose(features[:, :6].sum(1), torch.ones(22, dtype=torch.float64))  # one element each


def test_log_density_is_the_change_of_variables(ala2):
    """log|det J| of the forward map from a full Jacobian equals the flow's own sum of log-scales."""
    x, features = ala2
    x, features = x[:4][None], features[:4]  # four atoms keep the Jacobian small: 24 x 24
    flow = perturbed_flow()
    z = torch.randn(1, 2, 4, 3, dtype=torch.float64)

    def forward(flat):
        z_x, z_v = flat.reshape(2, 1, 4, 3)
        x_next, v, _ = flow.forward_transform(z_x, z_v, x, features)
        return torch.cat([x_next.flatten(), v.flatten()])

    jacobian = torch.autograd.functional.jacobian(forward, z.flatten())
    _, _, log_det = flow.forward_transform(z[:, 0], z[:, 1], x, features)
    assert torch.linalg.slogdet(jacobian).logabsdet.item() == pytest.approx(log_det.item(), abs=1e-8)


def test_sampled_log_density_matches_the_inverse(ala2):
    x, features = ala2
    flow = perturbed_flow()
    x_cond = x[None].repeat(3, 1, 1)
    x_next, v, log_q = flow.sample(x_cond, features, torch.Generator().manual_seed(0))
    assert torch.allclose(flow.log_prob(x_next, v, x_cond, features), log_q, atol=1e-9)
    assert x_next.shape == v.shape == x_cond.shape and torch.isfinite(log_q).all()


def test_translation_moves_the_proposal_with_the_state(ala2):
    x, features = ala2
    flow = perturbed_flow()
    x_cond = x[None].repeat(2, 1, 1)
    x_next, v, _ = flow.sample(x_cond, features, torch.Generator().manual_seed(1))
    shift = torch.tensor([0.3, -1.2, 2.0], dtype=torch.float64)
    assert torch.allclose(flow.log_prob(x_next + shift, v, x_cond + shift, features),
                          flow.log_prob(x_next, v, x_cond, features), atol=1e-9)


def test_relabelling_atoms_changes_nothing(ala2):
    x, features = ala2
    flow = perturbed_flow()
    x_cond = x[None].repeat(2, 1, 1)
    x_next, v, log_q = flow.sample(x_cond, features, torch.Generator().manual_seed(2))
    order = torch.randperm(22, generator=torch.Generator().manual_seed(3))
    relabelled = flow.log_prob(x_next[:, order], v[:, order], x_cond[:, order], features[order])
    assert torch.allclose(relabelled, log_q, atol=1e-8)


def test_checkpoint_round_trip(tmp_path, ala2):
    x, features = ala2
    flow = perturbed_flow()
    save_model(flow, tmp_path / "flow.pt", tau_ps=500.0)
    loaded = load_model(tmp_path / "flow.pt").double()
    x_cond = x[None]
    x_next, v, log_q = flow.sample(x_cond, features, torch.Generator().manual_seed(4))
    assert torch.allclose(loaded.log_prob(x_next, v, x_cond, features), log_q)
    assert loaded.metadata == {"tau_ps": 500.0}


def test_bad_checkpoints_are_named(tmp_path):
    (tmp_path / "garbage.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(InputError, match="garbage.pt: not a readable torch checkpoint"):
        load_model(tmp_path / "garbage.pt")
    torch.save({"format": "something-else"}, tmp_path / "other.pt")
    with pytest.raises(InputError, match="not a molsamp timewarp checkpoint"):
        load_model(tmp_path / "other.pt")
    flow = perturbed_flow()
    save_model(flow, tmp_path / "flow.pt")
    checkpoint = torch.load(tmp_path / "flow.pt", weights_only=True)
    checkpoint["config"]["hidden"] = 32
    torch.save(checkpoint, tmp_path / "mismatch.pt")
    with pytest.raises(InputError, match="weights do not match the architecture"):
        load_model(tmp_path / "mismatch.pt")
    with pytest.raises(InputError, match="does not exist"):
        load_model(tmp_path / "missing.pt")
