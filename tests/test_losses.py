import pytest
import torch

from reproduction.testing import brute_chamfer, nn_squared_distances, split_clouds
from tg_samplenet.losses import (
    average_nn_distance,
    chamfer_distance,
    max_nn_distance,
    nn_squared_distance,
    progressive_loss,
    samplenet_loss,
    simplification_loss,
)
from tg_samplenet.nn.sampler import SampleNet


def brute_la(X, Y):
    return sum(nn_squared_distances(X, Y)) / len(X)


def brute_lm(X, Y):
    return max(nn_squared_distances(X, Y))


def brute_simplification(Q, P, beta, gamma, delta):
    return brute_la(Q, P) + beta * brute_lm(Q, P) + (gamma + delta * len(Q)) * brute_la(P, Q)


def reduce(values, reduction):
    return sum(values) / len(values) if reduction == "mean" else sum(values)


@pytest.fixture
def problem(make_clouds):
    x, batch_x = make_clouds([5, 8, 1], seed=0, dtype=torch.float64)
    y, batch_y = make_clouds([7, 2, 4], seed=1, dtype=torch.float64)
    return x, y, batch_x, batch_y


def test_nn_terms_match_brute_force(backend, problem):
    x, y, batch_x, batch_y = problem
    X, Y = split_clouds(x, batch_x, 3), split_clouds(y, batch_y, 3)
    expected = [
        d
        for cloud_x, cloud_y in zip(X, Y, strict=True)
        for d in nn_squared_distances(cloud_x, cloud_y)
    ]
    assert nn_squared_distance(x, y, batch_x, batch_y).tolist() == pytest.approx(expected)
    la = average_nn_distance(x, y, batch_x, batch_y)
    assert la.tolist() == pytest.approx([brute_la(a, b) for a, b in zip(X, Y, strict=True)])
    lm = max_nn_distance(x, y, batch_x, batch_y)
    assert lm.tolist() == pytest.approx([brute_lm(a, b) for a, b in zip(X, Y, strict=True)])
    # Both are asymmetric: the reverse direction is its own term.
    la_back = average_nn_distance(y, x, batch_y, batch_x)
    assert la_back.tolist() == pytest.approx([brute_la(b, a) for a, b in zip(X, Y, strict=True)])


def test_terms_without_batch_vectors(make_clouds):
    x, _ = make_clouds([6], seed=2, dtype=torch.float64)
    y, _ = make_clouds([4], seed=3, dtype=torch.float64)
    X, Y = x.tolist(), y.tolist()
    assert average_nn_distance(x, y).tolist() == pytest.approx([brute_la(X, Y)])
    assert max_nn_distance(x, y).tolist() == pytest.approx([brute_lm(X, Y)])


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_chamfer_distance(backend, problem, reduction):
    x, y, batch_x, batch_y = problem
    X, Y = split_clouds(x, batch_x, 3), split_clouds(y, batch_y, 3)
    per_cloud = [brute_chamfer(a, b) for a, b in zip(X, Y, strict=True)]
    value = chamfer_distance(x, y, batch_x, batch_y, reduction=reduction)
    if reduction == "none":
        assert value.tolist() == pytest.approx(per_cloud)
    else:
        assert value.item() == pytest.approx(reduce(per_cloud, reduction))


def test_chamfer_gradient_reaches_both_inputs(problem):
    x, y, batch_x, batch_y = (t.clone() for t in problem)
    x.requires_grad_()
    y.requires_grad_()
    chamfer_distance(x, y, batch_x, batch_y).backward()
    for grad in (x.grad, y.grad):
        assert bool(torch.isfinite(grad).all()) and bool(grad.abs().sum() > 0)


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_simplification_loss(backend, problem, reduction):
    q, p, batch_q, batch_p = problem
    Q, P = split_clouds(q, batch_q, 3), split_clouds(p, batch_p, 3)
    per_cloud = [brute_simplification(a, b, 2.0, 0.5, 0.1) for a, b in zip(Q, P, strict=True)]
    value = simplification_loss(
        q, p, batch_q, batch_p, beta=2.0, gamma=0.5, delta=0.1, reduction=reduction
    )
    if reduction == "none":
        assert value.tolist() == pytest.approx(per_cloud)
    else:
        assert value.item() == pytest.approx(reduce(per_cloud, reduction))


def test_unknown_reduction_is_rejected(problem):
    with pytest.raises(ValueError, match="reduction must be"):
        chamfer_distance(*problem, reduction="max")


@pytest.fixture
def trained_output(make_clouds):
    pos, batch = make_clouds([20, 12], seed=4, dtype=torch.float64)
    torch.manual_seed(4)
    sampler = SampleNet(num_out_points=16, k=4).double()
    return sampler, pos, batch


def test_samplenet_loss(trained_output):
    sampler, pos, batch = trained_output
    out = sampler(pos, batch)
    Q = split_clouds(out.simplified.detach(), out.simplified_batch, 2)
    P = split_clouds(pos, batch, 2)
    ls = sum(brute_simplification(q, p, 1.0, 1.0, 0.0) for q, p in zip(Q, P, strict=True)) / 2
    task = torch.tensor(0.7, dtype=torch.float64)
    loss = samplenet_loss(task, out, pos, batch, alpha=30.0, lmbda=2.0)
    assert loss.item() == pytest.approx(0.7 + 30.0 * ls + 2.0 * out.sigma.item())
    loss.backward()
    assert sampler.projection.temperature.grad is not None
    no_sigma = samplenet_loss(task, out, pos, batch, alpha=30.0, lmbda=0.0)
    assert no_sigma.item() == pytest.approx(0.7 + 30.0 * ls)


def test_samplenet_loss_without_projection(trained_output):
    _, pos, batch = trained_output
    torch.manual_seed(4)
    out = SampleNet(num_out_points=16, skip_projection=True).double()(pos, batch)
    Q = split_clouds(out.simplified.detach(), out.simplified_batch, 2)
    P = split_clouds(pos, batch, 2)
    ls = sum(brute_simplification(q, p, 1.0, 1.0, 0.0) for q, p in zip(Q, P, strict=True)) / 2
    loss = samplenet_loss(torch.tensor(0.0, dtype=torch.float64), out, pos, batch, alpha=1.0)
    assert loss.item() == pytest.approx(ls)


@pytest.mark.parametrize("reduction", ["sum", "mean"])
@pytest.mark.parametrize("control_sizes", [None, [3, 5, 16]])
def test_progressive_loss_is_the_sum_over_control_sizes(trained_output, reduction, control_sizes):
    sampler, pos, batch = trained_output
    out = sampler(pos, batch)
    sizes = control_sizes
    if sizes is None:  # the powers of two up to m = 16
        sizes, c = [], 2
        while c <= 16:
            sizes, c = sizes + [c], 2 * c
    P = split_clouds(pos, batch, 2)
    task_of = []

    def task_loss_fn(part):
        task_of.append(int(part.counts.max()))
        return part.pos.pow(2).sum()

    terms = []
    for c in sizes:
        rows = torch.cat([(out.batch == b).nonzero().view(-1)[:c] for b in range(2)])
        task = out.pos[rows].pow(2).sum().item()
        Q = [q[:c] for q in split_clouds(out.simplified.detach(), out.simplified_batch, 2)]
        ls = (
            sum(brute_simplification(q, p, 1.0, 0.5, 1 / 30) for q, p in zip(Q, P, strict=True)) / 2
        )
        terms.append(task + 30.0 * ls)
    expected = reduce(terms, reduction) + 1.0 * out.sigma.item()

    loss = progressive_loss(
        task_loss_fn, out, pos, batch, control_sizes=control_sizes, reduction=reduction
    )
    assert task_of == sizes
    assert loss.item() == pytest.approx(expected)


def test_progressive_loss_rejects_bad_arguments(trained_output):
    sampler, pos, batch = trained_output
    out = sampler(pos, batch)
    with pytest.raises(ValueError, match="reduction must be 'sum' or 'mean'"):
        progressive_loss(lambda part: part.pos.sum(), out, pos, batch, reduction="none")
    with pytest.raises(ValueError, match="at least one control size"):
        progressive_loss(lambda part: part.pos.sum(), out, pos, batch, control_sizes=[])
