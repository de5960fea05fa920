r"""The reproduction's PointNet++ (``reproduction/tasks/pointnet2.py``): its max aggregation
against a brute-force maximum per centre, ties and empty centres included."""

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from reproduction.tasks.pointnet2 import MaskedMaxAggregation, PointNet2


def brute_force_max(x, index, num_centres, grad_out):
    # Each centre's maximum (0 for a centre without edges) and each edge's gradient: the
    # centre's gradient shared equally among the edges that tie for its maximum.
    out = torch.zeros(num_centres, x.size(1), dtype=x.dtype)
    grad = torch.zeros_like(x)
    for s in range(num_centres):
        edges = (index == s).nonzero().view(-1)
        for c in range(x.size(1)):
            if edges.numel() == 0:
                continue
            values = x[edges, c]
            out[s, c] = values.max()
            winners = edges[values == values.max()]
            grad[winners, c] = grad_out[s, c] / winners.numel()
    return out, grad


@settings(max_examples=40, deadline=None)
@given(
    num_edges=st.integers(0, 40),
    num_centres=st.integers(1, 9),
    channels=st.integers(1, 5),
    levels=st.integers(1, 4),
    seed=st.integers(0, 2**16),
)
def test_values_and_gradients_are_a_brute_force_maximum_per_centre(
    num_edges, num_centres, channels, levels, seed
):
    # Few distinct values force ties (at 0 too); some centres get no edge at all.
    g = torch.Generator().manual_seed(seed)
    values = torch.randint(-levels, levels + 1, (num_edges, channels), generator=g).double()
    index = torch.randint(0, num_centres, (num_edges,), generator=g).sort().values
    grad_out = torch.randn(num_centres, channels, generator=g, dtype=torch.double)
    x = values.clone().requires_grad_()
    out = MaskedMaxAggregation()(x, index, dim_size=num_centres)
    (grad,) = torch.autograd.grad(out, x, grad_out) if num_edges else (torch.zeros_like(x),)
    want_out, want_grad = brute_force_max(values, index, num_centres, grad_out)
    assert torch.equal(out.detach(), want_out)
    assert torch.allclose(grad, want_grad)


def test_pointnet2_trains_with_it_as_with_pygs_max_aggregation():
    # The same model, data and seed with PyG's MaxAggregation: the same loss, and the same
    # gradients (real-valued features have no ties).
    from torch_geometric.nn.aggr import MaxAggregation

    def loss_and_grads(aggregation):
        torch.manual_seed(0)
        model = PointNet2(3, width=64)
        for layer in (model.sa1_module, model.sa2_module):
            layer.conv.aggr_module = aggregation()
        pos = torch.rand(4 * 64, 3, generator=torch.Generator().manual_seed(1))
        batch = torch.arange(4).repeat_interleave(64)
        torch.manual_seed(2)  # fps' random starts
        loss = model(pos, batch)[torch.arange(4), torch.tensor([0, 1, 2, 0])].mean()
        return loss, torch.autograd.grad(loss, list(model.parameters()))

    want_loss, want = loss_and_grads(MaxAggregation)
    loss, got = loss_and_grads(MaskedMaxAggregation)
    assert float(loss) == pytest.approx(float(want_loss), rel=1e-6)
    for a, b in zip(got, want):
        assert torch.allclose(a, b, rtol=1e-4, atol=1e-6)


def test_the_set_abstractions_aggregate_with_it():
    model = PointNet2(10, width=64)
    assert isinstance(model.sa1_module.conv.aggr_module, MaskedMaxAggregation)
    assert isinstance(model.sa2_module.conv.aggr_module, MaskedMaxAggregation)


def test_without_gradients_it_is_pygs_reduction():
    # Inference keeps no mask: the same values as PyG's MaxAggregation, empty centres 0.
    from torch_geometric.nn.aggr import MaxAggregation

    x = torch.randn(30, 4)
    index = torch.randint(0, 8, (30,)).sort().values
    with torch.no_grad():
        got = MaskedMaxAggregation()(x.requires_grad_(), index, dim_size=10)
    assert torch.equal(got, MaxAggregation()(x.detach(), index, dim_size=10))
    assert not got.requires_grad


def _clouds(num_clouds=4, n=64, seed=1):
    pos = torch.rand(num_clouds * n, 3, generator=torch.Generator().manual_seed(seed))
    return pos, torch.arange(num_clouds).repeat_interleave(n)


def test_bf16_training_runs_the_mlps_in_bfloat16_and_finds_centres_in_float32():
    model = PointNet2(3, width=64, training_dtype=torch.bfloat16)
    seen = {}
    for name in ("sa1_module.conv.local_nn", "sa2_module.conv.local_nn", "sa3_nn", "mlp"):
        model.get_submodule(name).register_forward_hook(
            lambda module, args, out, name=name: seen.__setitem__(name, out.dtype)
        )
    centres_from = []

    def recording(fps):
        def sample(pos, *args, **kwargs):
            centres_from.append(pos.dtype)
            return fps(pos, *args, **kwargs)

        return sample

    for layer in (model.sa1_module, model.sa2_module):
        layer.fps = recording(layer.fps)
    pos, batch = _clouds()

    out = model.train()(pos, batch)
    assert set(seen.values()) == {torch.bfloat16} and len(seen) == 4
    assert centres_from == [torch.float32, torch.float32]
    assert out.dtype == torch.float32

    seen.clear()
    model.eval()(pos, batch)
    assert set(seen.values()) == {torch.float32}


def test_bf16_training_is_float32_inference_and_a_float32_step_to_bfloat16_precision():
    def build(dtype):
        torch.manual_seed(0)
        return PointNet2(3, width=64, training_dtype=dtype)

    pos, batch = _clouds()
    low, full = build(torch.bfloat16), build(None)
    outs = []
    for model in (low, full):
        torch.manual_seed(2)  # fps' random starts
        with torch.no_grad():
            outs.append(model.eval()(pos, batch))
    assert torch.equal(outs[0], outs[1])
    # A training step (which also moves BatchNorm's running statistics): bfloat16 keeps 8
    # significant bits, a relative error of a few 2^-8 through three layers.
    losses = []
    for model in (low, full):
        torch.manual_seed(2)
        losses.append(float(F.nll_loss(model.train()(pos, batch), torch.tensor([0, 1, 2, 0]))))
    assert losses[0] == pytest.approx(losses[1], rel=5e-2)
    assert losses[0] != losses[1]  # it did compute in bfloat16


def test_training_dtype_asks_the_device_and_falls_back_to_float32(monkeypatch):
    from reproduction.config import POINTNET2
    from reproduction.pointnet2 import training_dtype

    assert POINTNET2["cpu-real"].bf16_training and not POINTNET2["cpu"].bf16_training
    assert training_dtype(POINTNET2["cpu"], "cpu") is None
    monkeypatch.setattr(torch.ops.mkldnn, "_is_mkldnn_bf16_supported", lambda: True)
    assert training_dtype(POINTNET2["cpu-real"], "cpu") == torch.bfloat16
    monkeypatch.setattr(torch.ops.mkldnn, "_is_mkldnn_bf16_supported", lambda: False)
    with pytest.warns(UserWarning, match="training in float32"):
        assert training_dtype(POINTNET2["cpu-real"], "cpu") is None
