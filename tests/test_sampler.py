import pytest
import torch

from reproduction.testing import (
    brute_farthest_points,
    brute_hard_sample,
    brute_nearest,
    brute_soft_projection,
    float32_ceil,
    squared_distance,
)
from tg_samplenet.nn.output import SampleNetOutput
from tg_samplenet.nn.sampler import SampleNet


def per_cloud(index, batch, num_clouds):
    return [index[batch == b].tolist() for b in range(num_clouds)]


def brute_matched(pos, batch, simplified, simplified_batch, counts):
    # Per cloud: the matched points of the inference step, without the FPS completion.
    index = torch.tensor(
        brute_hard_sample(pos, batch, simplified, simplified_batch, counts, complete=False)
    )
    return per_cloud(index, batch[index], len(counts))


def collapse_head(sampler, value=0.5):
    # Every simplified point becomes (value, value, value): matching then keeps a single
    # point per cloud, and farthest point sampling must complete the rest.
    with torch.no_grad():
        sampler.head.lins[-1].weight.zero_()
        sampler.head.lins[-1].bias.fill_(value)
    return sampler


def test_acceptance(backend, device, make_clouds):
    sizes = [1024, 500, 20, 1, 300]
    pos, batch = make_clouds(sizes, seed=0, device=device)
    torch.manual_seed(0)
    sampler = SampleNet(num_out_points=32).to(device)

    sampler.eval()
    out = sampler(pos, batch)
    assert per_cloud_counts(out, 5) == [min(32, n) for n in sizes]
    assert out.counts.tolist() == [min(32, n) for n in sizes]
    for cloud, index in enumerate(per_cloud(out.index, out.batch, 5)):
        assert len(set(index)) == len(index)
        assert all(batch[j] == cloud for j in index)
    assert torch.equal(out.pos, pos[out.index])
    assert torch.equal(out.batch, batch[out.index])
    again = sampler(pos, batch)
    assert torch.equal(again.index, out.index) and torch.equal(again.pos, out.pos)
    assert torch.equal(again.batch, out.batch)

    out = sampler(pos, batch, ratio=0.3)
    expected = [float32_ceil(n, 0.3) for n in sizes]
    assert per_cloud_counts(out, 5) == expected
    assert out.index.unique().numel() == out.index.numel()
    try:
        import torch_cluster
    except ImportError:
        torch_cluster = None
    if torch_cluster is not None:
        reference = batch.cpu()[torch_cluster.fps(pos.cpu(), batch.cpu(), 0.3, False)]
        assert per_cloud_counts(out, 5) == torch.bincount(reference, minlength=5).tolist()

    sampler.train()
    out = sampler(pos, batch)
    out.pos.pow(2).sum().backward()
    grads = {name: p.grad for name, p in sampler.named_parameters()}
    assert all(g is not None and bool(torch.isfinite(g).all()) for g in grads.values())
    for name in ("point_mlp.lins.0.weight", "head.lins.3.weight", "projection.temperature"):
        assert float(grads[name].abs().sum()) > 0, name


def per_cloud_counts(out, num_clouds):
    return torch.bincount(out.batch, minlength=num_clouds).tolist()


def test_architecture_sizes():
    sampler = SampleNet(num_out_points=32)
    assert sampler.point_mlp.channel_list == [3, 64, 64, 64, 128, 128]
    assert sampler.head.channel_list == [128, 256, 256, 256, 96]
    point_shapes = [tuple(lin.weight.shape) for lin in sampler.point_mlp.lins]
    assert point_shapes == [(64, 3), (64, 64), (64, 64), (128, 64), (128, 128)]
    head_shapes = [tuple(lin.weight.shape) for lin in sampler.head.lins]
    assert head_shapes == [(256, 128), (256, 256), (256, 256), (96, 256)]
    # Every per-point layer is normalised; the head's last layer is plain.
    assert len(sampler.point_mlp.norms) == 5 and len(sampler.head.norms) == 3
    assert sampler.projection.k == 7


def test_training_yields_soft_projected_points(make_clouds):
    sizes = [15, 4, 9]
    pos, batch = make_clouds(sizes, seed=1)
    torch.manual_seed(1)
    sampler = SampleNet(num_out_points=6, k=5, initial_temperature=0.3)
    out = sampler(pos, batch)
    counts = [min(6, n) for n in sizes]
    assert out.counts.tolist() == counts and per_cloud_counts(out, 3) == counts
    assert out.simplified.shape == (18, 3)
    assert out.simplified_batch.tolist() == [b for b in range(3) for _ in range(6)]
    # The first min(m, n_i) simplified points of each cloud are projected.
    keep = torch.cat([torch.arange(b * 6, b * 6 + c) for b, c in enumerate(counts)])
    query, query_batch = out.simplified[keep].detach(), out.simplified_batch[keep]
    assert torch.equal(out.batch, query_batch)
    expected = brute_soft_projection(pos, query, batch, query_batch, 5, out.sigma.item())
    assert torch.allclose(out.pos.detach(), torch.tensor(expected), atol=1e-5)
    assert out.pos.requires_grad
    assert out.sigma.item() == pytest.approx(0.3**2 + 1e-4)
    assert torch.allclose(out.weights.sum(1), torch.ones(len(keep)))
    best = out.neighbors[torch.arange(len(keep)), out.weights.argmax(1)]
    assert torch.equal(out.index, best)


def test_eval_yields_hard_indices(make_clouds):
    sizes = [30, 12, 5]
    pos, batch = make_clouds(sizes, seed=2)
    torch.manual_seed(2)
    sampler = SampleNet(num_out_points=8).eval()
    out = sampler(pos, batch)
    assert out.weights is None and out.neighbors is None and out.sigma is None
    assert out.index.dtype == torch.long and torch.equal(out.pos, pos[out.index])
    matched = brute_matched(pos, batch, out.simplified, out.simplified_batch, [8, 8, 5])
    for cloud, index in enumerate(per_cloud(out.index, out.batch, 3)):
        assert index[: len(matched[cloud])] == matched[cloud]  # matched points come first
        assert len(set(index)) == len(index) == min(8, sizes[cloud])


def test_eval_completes_with_farthest_points(make_clouds):
    sizes = [25, 10, 1]
    pos, batch = make_clouds(sizes, seed=3, dtype=torch.float64)
    sampler = collapse_head(SampleNet(num_out_points=6).double()).eval()
    out = sampler(pos, batch)
    points, offset = pos.tolist(), 0
    for cloud, n in enumerate(sizes):
        members = list(range(offset, offset + n))
        first = min(members, key=lambda j: squared_distance(points[j], [0.5, 0.5, 0.5]))
        expected = [first] + brute_farthest_points(points, min(6, n) - 1, [first], members)
        assert per_cloud(out.index, out.batch, 3)[cloud] == expected
        offset += n


def test_without_completion_a_cloud_can_get_fewer_points(make_clouds):
    sizes = [25, 10, 1]
    pos, batch = make_clouds(sizes, seed=3)
    sampler = collapse_head(SampleNet(num_out_points=6, complete_fps=False)).eval()
    out = sampler(pos, batch)
    matched = brute_matched(pos, batch, out.simplified, out.simplified_batch, [6, 6, 1])
    assert per_cloud(out.index, out.batch, 3) == matched
    assert [len(m) for m in matched] == [1, 1, 1]
    assert out.counts.tolist() == per_cloud_counts(out, 3)  # counts what was returned
    assert repr(sampler) == "SampleNet(6, k=7, complete_fps=False)"


def test_progressive_order_gives_prefixes(make_clouds):
    sizes = [40, 13, 1, 25]
    pos, batch = make_clouds(sizes, seed=4)
    torch.manual_seed(4)
    sampler = SampleNet(num_out_points=24, progressive=True).eval()
    full = sampler(pos, batch, num_samples=30)  # past m: completed by FPS
    assert per_cloud_counts(full, 4) == [min(30, n) for n in sizes]
    for c in (1, 5, 12, 24):
        part = sampler(pos, batch, num_samples=c)
        assert per_cloud(part.index, part.batch, 4) == [
            index[:c] for index in per_cloud(full.index, full.batch, 4)
        ]

    sampler.train()
    full = sampler(pos, batch)
    for c in (1, 5, 12):
        part = sampler(pos, batch, num_samples=c)
        cut = full.prefix(c)
        assert torch.allclose(part.pos, cut.pos) and torch.equal(part.index, cut.index)
        assert torch.equal(part.batch, cut.batch)


def test_prefix_cuts_each_cloud(make_clouds):
    sizes = [10, 3, 7]
    pos, batch = make_clouds(sizes, seed=5)
    torch.manual_seed(5)
    out = SampleNet(num_out_points=8, k=4)(pos, batch)
    cut = out.prefix(4)
    assert isinstance(cut, SampleNetOutput)
    assert cut.counts.tolist() == [4, 3, 4]
    for b in range(3):
        rows = (out.batch == b).nonzero().view(-1)[:4]
        assert torch.equal(cut.index[cut.batch == b], out.index[rows])
        assert torch.equal(cut.pos[cut.batch == b], out.pos[rows])
        assert torch.equal(cut.weights[cut.batch == b], out.weights[rows])
        assert torch.equal(cut.neighbors[cut.batch == b], out.neighbors[rows])
        q_rows = (out.simplified_batch == b).nonzero().view(-1)[:4]
        assert torch.equal(cut.simplified[cut.simplified_batch == b], out.simplified[q_rows])
    assert cut.sigma is out.sigma


def test_skip_projection_trains_on_the_simplified_points(make_clouds):
    sizes = [12, 4]
    pos, batch = make_clouds(sizes, seed=6)
    torch.manual_seed(6)
    sampler = SampleNet(num_out_points=6, skip_projection=True)
    out = sampler(pos, batch)
    keep = torch.cat([torch.arange(0, 6), torch.arange(6, 10)])
    assert torch.equal(out.pos, out.simplified[keep])
    assert out.sigma is None and out.weights is None
    assert out.index.tolist() == brute_nearest(pos, out.pos, batch, out.batch)
    assert repr(sampler) == "SampleNet(6, k=7, skip_projection=True)"
    sampler.eval()
    out = sampler(pos, batch)
    assert per_cloud_counts(out, 2) == [6, 4] and torch.equal(out.pos, pos[out.index])


def test_same_seed_same_outputs(make_clouds):
    pos, batch = make_clouds([20, 9], seed=7)
    outputs = []
    for _ in range(2):
        torch.manual_seed(123)
        sampler = SampleNet(num_out_points=8)
        train = sampler(pos, batch)
        sampler.eval()
        outputs.append((train, sampler(pos, batch)))
    (train_a, eval_a), (train_b, eval_b) = outputs
    assert torch.equal(train_a.pos, train_b.pos) and torch.equal(train_a.index, train_b.index)
    assert torch.equal(eval_a.index, eval_b.index)


@pytest.mark.parametrize("training", [True, False])
def test_empty_input(device, training):
    sampler = SampleNet(num_out_points=4).to(device).train(training)
    out = sampler(torch.empty(0, 3, device=device))
    assert out.pos.shape == (0, 3) and out.index.shape == out.batch.shape == (0,)
    assert out.counts.tolist() == []
    out = sampler(torch.empty(0, 3, device=device), num_clouds=2)
    assert out.pos.shape == (0, 3) and out.counts.tolist() == [0, 0]


@pytest.mark.parametrize("training", [True, False])
def test_empty_clouds_get_no_points(make_clouds, training):
    pos, batch = make_clouds([6, 0, 5], seed=8)
    torch.manual_seed(8)
    sampler = SampleNet(num_out_points=4).train(training)
    out = sampler(pos, batch, num_clouds=4)  # cloud 3 is a trailing empty one
    assert out.counts.tolist() == [4, 0, 4, 0] and per_cloud_counts(out, 4) == [4, 0, 4, 0]


def test_a_cloud_smaller_than_the_request_gets_all_its_points(device, make_clouds):
    pos, batch = make_clouds([5, 40], seed=9, device=device)
    torch.manual_seed(9)
    sampler = SampleNet(num_out_points=16).to(device)
    assert per_cloud_counts(sampler(pos, batch), 2) == [5, 16]
    sampler.eval()
    out = sampler(pos, batch)
    assert sorted(per_cloud(out.index, out.batch, 2)[0]) == [0, 1, 2, 3, 4]


def test_save_and_load(tmp_path, make_clouds):
    pos, batch = make_clouds([20, 9], seed=10)
    torch.manual_seed(10)
    sampler = SampleNet(num_out_points=8, k=5, point_channels=(16, 32), head_channels=(32,))
    sampler(pos, batch)  # moves the BatchNorm statistics away from their initial values
    sampler.eval()
    path = tmp_path / "nested" / "sampler.pt"
    sampler.save(path)
    loaded = SampleNet.load(path)
    assert loaded.config == sampler.config
    assert loaded.config["point_channels"] == [16, 32] and loaded.config["k"] == 5
    state, loaded_state = sampler.state_dict(), loaded.state_dict()
    assert state.keys() == loaded_state.keys()
    assert all(torch.equal(state[key], loaded_state[key]) for key in state)
    loaded.eval()
    assert torch.equal(loaded(pos, batch).index, sampler(pos, batch).index)
    torch.save({"weights": 1}, tmp_path / "other.pt")
    with pytest.raises(ValueError, match="not a SampleNet file"):
        SampleNet.load(tmp_path / "other.pt")


def test_repr():
    assert repr(SampleNet(32)) == "SampleNet(32, k=7)"
    assert repr(SampleNet(64, k=16, progressive=True)) == "SampleNet(64, k=16, progressive=True)"


def test_carry_in_eval_gathers(make_clouds):
    pos, batch = make_clouds([20, 6], seed=11)
    torch.manual_seed(11)
    sampler = SampleNet(num_out_points=8).eval()
    out = sampler(pos, batch)
    features = torch.randn(pos.size(0), 4)
    normals = torch.nn.functional.normalize(torch.randn(pos.size(0), 3), dim=1)
    labels = torch.randint(0, 5, (pos.size(0),))
    for src in (features, normals, labels):
        assert torch.equal(out.carry(src), src[out.index])


def test_carry_in_training_mixes(make_clouds):
    pos, batch = make_clouds([20, 3], seed=12)  # the second cloud is smaller than k
    torch.manual_seed(12)
    out = SampleNet(num_out_points=8, k=5, initial_temperature=0.3)(pos, batch)
    features = torch.randn(pos.size(0), 4)
    normals = torch.nn.functional.normalize(torch.randn(pos.size(0), 3), dim=1)
    labels = torch.randint(0, 5, (pos.size(0),))
    for src in (features, normals):
        mixed = out.carry(src)
        for i in range(out.pos.size(0)):
            expected = sum(out.weights[i, j] * src[out.neighbors[i, j]] for j in range(5))
            assert torch.allclose(mixed[i], expected, atol=1e-6)
    # Integer labels cannot be mixed: the highest-weight neighbour's label is taken.
    best = [row.index(max(row)) for row in out.weights.tolist()]
    expected = [labels[out.neighbors[i, j]].item() for i, j in enumerate(best)]
    assert out.carry(labels).tolist() == expected
    # Soft-projected positions are the same mixture of the input positions.
    assert torch.allclose(out.carry(pos), out.pos)


def test_inference_network_equals_the_unfolded_unchunked_network(make_clouds, monkeypatch):
    # Inference folds BatchNorm into the linear layers and pools the per-point features in
    # chunks; both must give the training-time graph's output in eval mode. Clouds span
    # chunk borders, one is empty and one trails with no points at all.
    import tg_samplenet.ops.kernels as kernels

    torch.manual_seed(0)
    sampler = SampleNet(6, k=3)
    pos, batch = make_clouds([7, 0, 12, 3], seed=5)
    sampler(pos, batch)  # moves the BatchNorm statistics away from their initial values
    sampler.eval()
    monkeypatch.setattr(kernels, "POOL_CHUNK", 5)
    with torch.no_grad():
        fast = sampler.simplify(pos, batch, 5)
        features = sampler.point_mlp(pos)  # the plain layers, BatchNorm in eval mode
        pooled = torch.zeros(5, features.size(1))
        for cloud in range(4):
            if (batch == cloud).any():
                pooled[cloud] = features[batch == cloud].amax(0)
        expected = sampler.head(pooled).view(5, 6, 3)
    assert torch.allclose(fast, expected, atol=1e-5)
