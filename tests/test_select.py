import copy

import numpy as np
import pytest
import torch
from torch_geometric.nn.pool.connect import FilterEdges
from torch_geometric.nn.pool.select import SelectOutput
from torch_geometric.utils import scatter

from tg_samplenet.nn.sampler import SampleNet
from tg_samplenet.nn.select import SampleNetSelect, SampleNetSelectOutput
from tg_samplenet.nn.weighted_gather import weighted_gather


def loop_gather(src, index, weight):
    # One output row at a time: sum_j w[m, j] * src[index[m, j]].
    rows = []
    for m in range(index.size(0)):
        rows.append(sum(weight[m, j] * src[index[m, j]] for j in range(index.size(1))))
    return torch.stack(rows)


@pytest.mark.parametrize("trailing", [(), (4,), (2, 3)])
def test_weighted_gather_equals_the_loop(trailing):
    generator = torch.Generator().manual_seed(0)
    src = torch.randn(10, *trailing, generator=generator, dtype=torch.float64)
    index = torch.randint(0, 10, (6, 3), generator=generator)
    weight = torch.rand(6, 3, generator=generator, dtype=torch.float64)
    out = weighted_gather(src, index, weight)
    assert out.shape == (6, *trailing)
    torch.testing.assert_close(out, loop_gather(src, index, weight))
    assert torch.equal(weighted_gather(src, index[:, 0]), src[index[:, 0]])


def test_weighted_gather_takes_labels_from_the_heaviest_neighbour():
    labels = torch.tensor([10, 11, 12, 13])
    index = torch.tensor([[0, 1, 2], [3, 2, 1]])
    weight = torch.tensor([[0.2, 0.5, 0.3], [0.1, 0.1, 0.8]])
    assert weighted_gather(labels, index, weight).tolist() == [11, 11]
    mask = torch.tensor([True, False, True, False])
    assert weighted_gather(mask, index, weight).tolist() == [False, False]


def test_weighted_gather_is_differentiable_in_src_and_weight():
    generator = torch.Generator().manual_seed(1)
    src = torch.randn(7, 2, generator=generator, dtype=torch.float64, requires_grad=True)
    weight = torch.rand(4, 3, generator=generator, dtype=torch.float64, requires_grad=True)
    index = torch.randint(0, 7, (4, 3), generator=generator)
    assert torch.autograd.gradcheck(lambda s, w: weighted_gather(s, index, w), (src, weight))


def test_weighted_gather_keeps_the_dtype_of_src():
    src = torch.randn(5, 3).half()
    out = weighted_gather(src, torch.tensor([[0, 1]]), torch.tensor([[0.5, 0.5]]))
    assert out.dtype == torch.float16


def test_weighted_gather_rejects_mismatched_tables():
    src = torch.randn(5, 3)
    with pytest.raises(ValueError, match=r"index and weight must both be \[M, k\]"):
        weighted_gather(src, torch.zeros(2, 3, dtype=torch.long), torch.ones(2, 2))
    with pytest.raises(ValueError, match=r"index must be \[M\] without weight"):
        weighted_gather(src, torch.zeros(2, 3, dtype=torch.long))
    with pytest.raises(TypeError, match="src must be a per-point tensor"):
        weighted_gather(3.0, torch.zeros(2, dtype=torch.long))


@pytest.fixture
def select():
    torch.manual_seed(0)
    return SampleNetSelect(SampleNet(num_out_points=12, k=4))


def test_training_output_is_the_soft_projection(select, make_clouds):
    pos, batch = make_clouds([30, 3, 20], seed=2)  # the second cloud has fewer than k points
    out = select(pos, batch)
    assert isinstance(out, SelectOutput) and isinstance(out, SampleNetSelectOutput)
    sample = out.sample
    M, k = sample.neighbors.shape
    assert (out.num_nodes, out.num_clusters) == (pos.size(0), M)
    assert torch.equal(out.node_index, sample.neighbors.reshape(-1))
    assert torch.equal(out.cluster_index, torch.arange(M).repeat_interleave(k))
    # Each output point's weights are a distribution over its neighbours of its own cloud.
    torch.testing.assert_close(scatter(out.weight, out.cluster_index, 0, M), torch.ones(M))
    assert torch.equal(batch[out.node_index], sample.batch[out.cluster_index])
    # PyG's reduction of the selection gives the soft-projected points and the carry.
    pooled = scatter(pos[out.node_index] * out.weight[:, None], out.cluster_index, 0, M, "sum")
    torch.testing.assert_close(pooled, sample.pos)
    x = torch.randn(pos.size(0), 5)
    expected = scatter(x[out.node_index] * out.weight[:, None], out.cluster_index, 0, M, "sum")
    torch.testing.assert_close(out.carry(x), expected)
    torch.testing.assert_close(sample.carry(x), expected)


def test_training_carries_gradients_to_the_sampler(select, make_clouds):
    pos, batch = make_clouds([25, 25], seed=3)
    out = select(pos, batch)
    x = torch.randn(pos.size(0), 4, requires_grad=True)
    out.carry(x).pow(2).sum().backward()
    assert x.grad is not None and select.sampler.projection.temperature.grad is not None
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in select.sampler.parameters())


def test_eval_output_is_the_hard_sample(select, make_clouds):
    pos, batch = make_clouds([30, 8, 20], seed=4)
    select.eval()
    out = select(pos, batch)
    expected = copy.deepcopy(select.sampler).eval()(pos, batch).index
    assert torch.equal(out.node_index, expected)
    assert torch.equal(out.cluster_index, torch.arange(expected.numel()))
    assert out.weight is None and out.num_clusters == expected.numel()
    x = torch.randn(pos.size(0), 3)
    assert torch.equal(out.carry(x), x[expected])


def test_composes_with_pygs_connect(select, make_clouds):
    pos, batch = make_clouds([16, 12], seed=5)
    # Each point linked to the next one of its cloud.
    src = torch.arange(pos.size(0) - 1)
    keep = batch[src] == batch[src + 1]
    edge_index = torch.stack([src[keep], src[keep] + 1])
    select.eval()
    out = select(pos, batch)
    connected = FilterEdges()(out, edge_index, batch=batch)
    assert torch.equal(connected.batch, batch[out.node_index])
    # Brute force: an edge survives when both ends are sampled, renumbered by output slot.
    slot = {int(i): c for c, i in enumerate(out.node_index)}
    expected = sorted(
        (slot[int(a)], slot[int(b)]) for a, b in edge_index.t() if int(a) in slot and int(b) in slot
    )
    assert sorted(map(tuple, connected.edge_index.t().tolist())) == expected
    select.train()
    out = select(pos, batch)
    assert torch.equal(FilterEdges.get_pooled_batch(out, batch), out.sample.batch)
    with pytest.raises(ValueError, match="only one node"):
        FilterEdges()(out, edge_index, batch=batch)  # soft clusters hold k nodes


def test_ratio_gives_fps_counts(make_clouds):
    sizes = [25, 50, 1, 7]
    pos, batch = make_clouds(sizes, seed=6)
    select = SampleNetSelect(SampleNet(num_out_points=50), ratio=0.6).eval()
    out = select(pos, batch)
    counts = torch.bincount(batch[out.node_index], minlength=len(sizes)).tolist()
    assert counts == [int(np.ceil(np.float32(n) * np.float32(0.6))) for n in sizes]


def test_repr_and_bad_arguments():
    sampler = SampleNet(num_out_points=8)
    assert repr(SampleNetSelect(sampler)) == "SampleNetSelect(SampleNet(8, k=7), num_samples=8)"
    assert repr(SampleNetSelect(sampler, ratio=0.25)).endswith("ratio=0.25)")
    with pytest.raises(TypeError, match="wraps a SampleNet"):
        SampleNetSelect(torch.nn.Linear(3, 3))
    with pytest.raises(ValueError, match="not both"):
        SampleNetSelect(sampler, ratio=0.5, num_samples=4)
    with pytest.raises(ValueError, match=r"ratio must lie in \(0, 1\]"):
        SampleNetSelect(sampler, ratio=2.0)
