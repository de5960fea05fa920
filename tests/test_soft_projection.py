from itertools import pairwise

import pytest
import torch
from torch.func import functional_call

from reproduction.testing import brute_nearest, brute_soft_projection
from tg_samplenet.nn.soft_projection import SoftProjection


@pytest.fixture
def problem(make_clouds, device):
    # Clouds of 3 and 1 points are smaller than k = 5.
    pos, batch = make_clouds([9, 3, 1, 12], seed=0, device=device)
    query, query_batch = make_clouds([4, 2, 3, 5], seed=1, device=device)
    return pos, query, batch, query_batch


def test_temperature_is_learned_and_starts_at_one():
    proj = SoftProjection()
    assert isinstance(proj.temperature, torch.nn.Parameter)
    assert proj.temperature.item() == 1.0
    assert [name for name, _ in proj.named_parameters()] == ["temperature"]
    assert proj.sigma.item() == pytest.approx(1.0 + 1e-4)
    assert torch.equal(proj.projection_loss(), proj.sigma)


def test_sigma_has_a_gradient_below_its_bound():
    # t^2 = 0.01 lies below min_sigma = 0.5: sigma = t^2 + min_sigma still moves with t.
    proj = SoftProjection(initial_temperature=0.1, min_sigma=0.5)
    proj.projection_loss().backward()
    assert proj.sigma.item() == pytest.approx(0.51)
    assert proj.temperature.grad.item() == pytest.approx(0.2)  # d(t^2)/dt = 2t
    # The authors' hard bound, max(t^2, min_sigma), would give t no gradient at all here.
    t = torch.tensor(0.1, requires_grad=True)
    torch.clamp(t**2, min=0.5).backward()
    assert float(t.grad) == 0.0


def test_output_gradient_reaches_the_temperature_below_its_bound(problem):
    pos, query, batch, query_batch = problem
    proj = SoftProjection(k=5, initial_temperature=0.1, min_sigma=0.05).to(pos.device)
    query = query.clone().requires_grad_()
    out = proj(pos, query, batch, query_batch)
    out.pos.pow(2).sum().backward()
    assert torch.isfinite(proj.temperature.grad) and proj.temperature.grad.item() != 0.0
    assert torch.isfinite(query.grad).all() and bool(query.grad.abs().sum() > 0)


def test_projection_matches_brute_force(backend, problem):
    pos, query, batch, query_batch = problem
    proj = SoftProjection(k=5, initial_temperature=0.3).to(pos.device)
    out = proj(pos, query, batch, query_batch)
    sigma = 0.3**2 + 1e-4
    expected = brute_soft_projection(pos, query, batch, query_batch, 5, sigma)
    assert torch.allclose(out.pos.cpu(), torch.tensor(expected), atol=1e-5)


def test_weights_on_clouds_smaller_than_k(backend, problem):
    pos, query, batch, query_batch = problem
    proj = SoftProjection(k=5, initial_temperature=0.5).to(pos.device)
    out = proj(pos, query, batch, query_batch)
    assert out.weights.shape == out.neighbors.shape == (query.size(0), 5)
    sizes = torch.bincount(batch)[query_batch]
    real = torch.arange(5, device=pos.device) < sizes.clamp(max=5).unsqueeze(1)
    # Padding slots weigh nothing; real ones form a convex combination of same-cloud points.
    assert bool((out.weights[~real] == 0).all())
    assert bool((out.weights[real] > 0).all())
    assert torch.allclose(out.weights.sum(1), torch.ones(query.size(0), device=pos.device))
    assert bool((batch[out.neighbors][real] == query_batch.unsqueeze(1).expand(-1, 5)[real]).all())
    mixture = (out.weights.unsqueeze(-1) * pos[out.neighbors]).sum(1)
    assert torch.allclose(out.pos, mixture, atol=1e-6)
    # The single-point cloud projects onto its only point.
    lonely = query_batch == 2
    assert torch.allclose(out.pos[lonely], pos[batch == 2].expand(int(lonely.sum()), 3))


def test_hard_mode_is_the_nearest_neighbour(backend, problem):
    pos, query, batch, query_batch = problem
    proj = SoftProjection(k=5).to(pos.device)
    out = proj(pos, query, batch, query_batch, hard=True)
    expected = brute_nearest(pos, query, batch, query_batch)
    assert torch.equal(out.pos, pos[expected])
    assert out.weights.sum(1).tolist() == [1.0] * query.size(0)
    assert bool(((out.weights == 0) | (out.weights == 1)).all())


def test_gradcheck_in_double_precision(make_clouds):
    pos, batch = make_clouds([6, 3], seed=2, dtype=torch.float64)
    query, query_batch = make_clouds([3, 2], seed=3, dtype=torch.float64)
    proj = SoftProjection(k=4, min_sigma=1e-3).double()
    temperature = torch.tensor(0.7, dtype=torch.float64, requires_grad=True)

    def project(query, pos, temperature):
        out = functional_call(proj, {"temperature": temperature}, (pos, query, batch, query_batch))
        return out.pos, out.weights

    inputs = (query.requires_grad_(), pos.requires_grad_(), temperature)
    assert torch.autograd.gradcheck(project, inputs, fast_mode=True)


def test_converges_to_the_nearest_neighbour_as_t_goes_to_zero(make_clouds):
    pos, batch = make_clouds([30], seed=4, dtype=torch.float64)
    query, query_batch = make_clouds([10], seed=5, dtype=torch.float64)
    nearest = pos[brute_nearest(pos, query, batch, query_batch)]
    errors, off_mass = [], []
    for t in (1.0, 0.5, 0.25, 0.1, 0.05, 0.02, 0.01, 0.002):
        proj = SoftProjection(k=7, initial_temperature=t, min_sigma=0.0).double()
        out = proj(pos, query, batch, query_batch)
        errors.append((out.pos - nearest).norm(dim=1).mean().item())
        off_mass.append((1 - out.weights[:, 0].min()).item())  # mass off the nearest
    assert all(a > b for a, b in pairwise(errors)), errors
    assert all(a > b for a, b in pairwise(off_mass)), off_mass
    assert errors[-1] < 1e-6


def test_carry_mixes_features_and_picks_labels(problem):
    pos, query, batch, query_batch = problem
    proj = SoftProjection(k=5, initial_temperature=0.4).to(pos.device)
    out = proj(pos, query, batch, query_batch)
    features = torch.randn(pos.size(0), 2, 4, device=pos.device)
    labels = torch.arange(pos.size(0), device=pos.device) * 10
    mixed = out.carry(features)
    assert mixed.shape == (query.size(0), 2, 4)
    for i in range(query.size(0)):
        expected = sum(out.weights[i, j] * features[out.neighbors[i, j]] for j in range(5))
        assert torch.allclose(mixed[i], expected, atol=1e-6)
    best = out.neighbors[torch.arange(query.size(0)), out.weights.argmax(1)]
    assert torch.equal(out.carry(labels), labels[best])


def test_fixed_temperature_is_a_buffer():
    proj = SoftProjection(learn_temperature=False, min_sigma=0.01)
    assert list(proj.parameters()) == []
    assert "temperature" in dict(proj.named_buffers())
    proj.set_sigma(0.04)
    assert proj.sigma.item() == pytest.approx(0.04)
    proj.set_sigma(0.001)  # below the bound: t = 0
    assert proj.temperature.item() == 0.0 and proj.sigma.item() == pytest.approx(0.01)
    proj.reset_parameters()
    assert proj.temperature.item() == 1.0


def test_no_queries_gives_an_empty_projection(device):
    proj = SoftProjection(k=3).to(device)
    out = proj(torch.rand(4, 3, device=device), torch.empty(0, 3, device=device))
    assert out.pos.shape == (0, 3) and out.weights.shape == out.neighbors.shape == (0, 3)
    out = proj(torch.empty(0, 3, device=device), torch.empty(0, 3, device=device))
    assert out.pos.shape == (0, 3)
    with pytest.raises(ValueError, match="pos is empty"):
        proj(torch.empty(0, 3, device=device), torch.rand(2, 3, device=device))


def test_repr():
    assert repr(SoftProjection()) == "SoftProjection(k=7, temperature=1, learned=True)"
    fixed = SoftProjection(k=3, initial_temperature=0.25, learn_temperature=False)
    assert repr(fixed) == "SoftProjection(k=3, temperature=0.25, learned=False)"
