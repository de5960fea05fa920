import math

import pytest
import torch

import tg_samplenet.ops.kdtree as kdtree_module
import tg_samplenet.ops.zorder as zorder_module
from reproduction.testing import brute_farthest_points, brute_knn, float32_ceil, squared_distance
from tg_samplenet.ops import (
    InputError,
    available_backends,
    fps,
    get_backend,
    knn,
    nearest_index,
    padded_knn,
    radius,
    sample_counts,
    use_backend,
)
from tg_samplenet.ops.zorder import zorder


def knn_distances(x, y, batch_x, batch_y, k):
    # For each query, the sorted squared distances to its k nearest same-cloud points.
    return [[d for d, _ in row] for row in brute_knn(x, y, batch_x, batch_y, k)]


def test_backend_selection():
    assert available_backends()[-2:] == ["kdtree", "torch"]
    assert get_backend("cpu") == "kdtree"  # the CPU default, with or without extensions
    with use_backend("torch"):
        assert get_backend("cpu") == "torch"
    assert get_backend("cpu") == "kdtree"
    with pytest.raises(InputError, match="'nope'"):
        with use_backend("nope"):
            pass


def test_use_backend_refuses_a_missing_package():
    missing = [name for name in ("pyg_lib", "torch_cluster") if name not in available_backends()]
    if not missing:
        pytest.skip("every back-end is installed")
    with pytest.raises(InputError, match="not installed"):
        with use_backend(missing[0]):
            pass


def test_knn_docstring_example(backend):
    x = torch.tensor([[0.0, 0, 0], [1, 0, 0], [5, 0, 0], [6, 0, 0]])
    batch_x = torch.tensor([0, 0, 1, 1])
    y = torch.tensor([[0.2, 0, 0], [5.9, 0, 0]])
    batch_y = torch.tensor([0, 1])
    index, mask = padded_knn(x, y, 3, batch_x, batch_y)
    assert index.tolist() == [[0, 1, 0], [3, 2, 3]]
    assert mask.tolist() == [[True, True, False], [True, True, False]]


@pytest.mark.parametrize("k", [1, 4, 9])
def test_knn_matches_brute_force(backend, device, make_clouds, k):
    check_knn_against_brute_force(device, make_clouds, k)


@pytest.mark.parametrize("k", [1, 4])
def test_knn_in_zorder_matches_brute_force(make_clouds, k, monkeypatch):
    # The Z-order path that large clouds take before the kd-tree, forced here.
    monkeypatch.setattr(kdtree_module, "ZORDER_ABOVE", 1)
    with use_backend("kdtree"):
        check_knn_against_brute_force(torch.device("cpu"), make_clouds, k)


def test_spread_bits_moves_bit_i_to_bit_3i():
    values = torch.arange(1024)
    expected = [sum(((v >> b) & 1) << (3 * b) for b in range(10)) for v in range(1024)]
    assert zorder_module._spread_bits(values).tolist() == expected


def test_zorder_sorts_each_cloud_by_its_morton_code(make_clouds):
    pos, batch = make_clouds([9, 0, 30, 1, 17], seed=4)
    order = zorder(pos, batch, 5)
    assert sorted(order.tolist()) == list(range(pos.size(0)))
    # Reference: each cloud's bounding box cut into 1024 cells per axis, the cell's bits
    # interleaved one at a time (x lowest), a stable sort by (cloud, code).
    codes = []
    for i, p in enumerate(pos):
        members = pos[batch == batch[i]]
        low, high = members.amin(0), members.amax(0)
        cell = ((p - low) * (1023 / (high - low).clamp(min=1e-12))).clamp(0, 1023).long()
        code = sum(((int(cell[a]) >> b) & 1) << (3 * b + a) for b in range(10) for a in range(3))
        codes.append((int(batch[i]), code))
    assert order.tolist() == sorted(range(pos.size(0)), key=lambda j: codes[j])


def check_knn_against_brute_force(device, make_clouds, k):
    # Cloud sizes below and above k, including a single-point cloud.
    x, batch_x = make_clouds([7, 1, 12, 3], seed=1, device=device)
    y, batch_y = make_clouds([5, 2, 4, 3], seed=2, device=device)
    index, mask = padded_knn(x, y, k, batch_x, batch_y)
    assert index.shape == mask.shape == (y.size(0), k)
    assert index.dtype == torch.long and mask.dtype == torch.bool
    assert index.device == mask.device == y.device

    xs, ys, bx, by = x.tolist(), y.tolist(), batch_x.tolist(), batch_y.tolist()
    expected = knn_distances(x, y, batch_x, batch_y, k)
    for i, (row, row_mask) in enumerate(zip(index.tolist(), mask.tolist(), strict=True)):
        real = [j for j, m in zip(row, row_mask, strict=True) if m]
        # Real neighbours first, then padding that repeats the nearest one.
        assert row_mask == [True] * len(expected[i]) + [False] * (k - len(expected[i]))
        assert all(j == row[0] for j, m in zip(row, row_mask, strict=True) if not m)
        assert len(set(real)) == len(real)
        assert all(bx[j] == by[i] for j in real)
        distances = [squared_distance(xs[j], ys[i]) for j in real]
        assert distances == pytest.approx(expected[i], rel=1e-5, abs=1e-7)


def test_knn_with_an_empty_cloud_in_between(backend, make_clouds):
    x, batch_x = make_clouds([4, 0, 5], seed=3)
    y, batch_y = make_clouds([2, 0, 3], seed=4)
    index, mask = padded_knn(x, y, 3, batch_x, batch_y)
    expected = knn_distances(x, y, batch_x, batch_y, 3)
    for i in range(y.size(0)):
        got = [squared_distance(x[j].tolist(), y[i].tolist()) for j in index[i][mask[i]].tolist()]
        assert got == pytest.approx(expected[i], rel=1e-5, abs=1e-7)


def test_knn_without_queries(backend, device):
    x = torch.rand(5, 3, device=device)
    index, mask = padded_knn(x, x[:0], 4)
    assert index.shape == mask.shape == (0, 4)
    assert index.device == device


def test_knn_rejects_queries_of_a_cloud_without_points(backend):
    x, batch_x = torch.rand(3, 3), torch.tensor([0, 0, 0])
    y, batch_y = torch.rand(2, 3), torch.tensor([0, 1])
    with pytest.raises(InputError, match="nothing to compare them with"):
        padded_knn(x, y, 2, batch_x, batch_y)


def test_knn_rejects_k_below_one():
    with pytest.raises(ValueError, match="k must be at least 1"):
        padded_knn(torch.rand(4, 3), torch.rand(2, 3), 0)


def test_nearest_matches_brute_force(backend, device, make_clouds):
    x, batch_x = make_clouds([6, 1, 9], seed=5, device=device)
    y, batch_y = make_clouds([4, 3, 5], seed=6, device=device)
    index = nearest_index(x, y, batch_x, batch_y)
    assert index.shape == (y.size(0),)
    xs, ys, bx, by = x.tolist(), y.tolist(), batch_x.tolist(), batch_y.tolist()
    expected = knn_distances(x, y, batch_x, batch_y, 1)
    for i, j in enumerate(index.tolist()):
        assert bx[j] == by[i]
        assert squared_distance(xs[j], ys[i]) == pytest.approx(expected[i][0], rel=1e-5, abs=1e-7)


def test_sample_counts_use_float32_like_torch_cluster():
    # The two examples of the issue: Python's math.ceil(n * r) would give 15 for both.
    assert sample_counts(torch.tensor([25]), ratio=0.6).tolist() == [16]
    assert sample_counts(torch.tensor([50]), ratio=0.3).tolist() == [16]
    assert math.ceil(25 * 0.6) == 15 and math.ceil(50 * 0.3) == 15
    sizes = list(range(0, 300))
    for ratio in (0.1, 0.25, 0.3, 0.5, 0.6, 0.7, 1.0):
        expected = [float32_ceil(n, ratio) for n in sizes]
        assert sample_counts(torch.tensor(sizes), ratio=ratio).tolist() == expected


@pytest.mark.parametrize("ratio", [0.6, 0.3, 0.25, 1.0])
def test_fps_matches_brute_force(backend, device, make_clouds, ratio):
    sizes = [25, 50, 1, 7]
    pos, batch = make_clouds(sizes, seed=7, dtype=torch.float64, device=device)
    index = fps(pos, batch, ratio=ratio, random_start=False)
    expected, offset = [], 0
    for n in sizes:
        cloud = pos[offset : offset + n].tolist()
        expected += [offset + j for j in brute_farthest_points(cloud, float32_ceil(n, ratio))]
        offset += n
    assert index.tolist() == expected


def test_fps_with_random_start(backend, make_clouds):
    sizes = [25, 50, 1, 7]
    pos, batch = make_clouds(sizes, seed=8)
    index = fps(pos, batch, ratio=0.3, random_start=True)
    picked = batch[index]
    assert bool((picked[1:] >= picked[:-1]).all())  # grouped by cloud in batch order
    assert torch.bincount(picked, minlength=4).tolist() == [float32_ceil(n, 0.3) for n in sizes]
    assert index.unique().numel() == index.numel()


def test_plain_fps_equals_torch_cluster_exactly(make_clouds):
    torch_cluster = pytest.importorskip("torch_cluster")
    cases = [([30, 17, 1, 64], 0.5), ([100], 0.25), ([3, 7], 0.3), ([40, 41, 5], 1.0)]
    for seed, (sizes, ratio) in enumerate(cases):
        for dtype in (torch.float32, torch.float64):
            pos, batch = make_clouds(sizes, seed=seed, dtype=dtype)
            expected = torch_cluster.fps(pos, batch, ratio, random_start=False)
            got = fps(pos, batch, ratio=ratio, random_start=False)  # the CPU default
            assert get_backend("cpu") == "kdtree"
            assert torch.equal(got, expected), (sizes, ratio, dtype)


def test_fps_with_an_empty_cloud(backend, make_clouds):
    # torch_cluster itself crashes on an empty cloud; the back-end must not.
    sizes = [5, 0, 4]
    pos, batch = make_clouds(sizes, seed=9, dtype=torch.float64)
    for random_start in (False, True):
        index = fps(pos, batch, ratio=0.5, random_start=random_start)
        counts = torch.bincount(batch[index], minlength=3).tolist()
        assert counts == [3, 0, 2]
    index = fps(pos, batch, ratio=0.5, random_start=False)
    assert index.tolist() == brute_farthest_points(pos[:5].tolist(), 3) + [
        5 + j for j in brute_farthest_points(pos[5:].tolist(), 2)
    ]


def test_fps_without_points(backend, device):
    index = fps(torch.empty(0, 3, device=device), torch.empty(0, dtype=torch.long, device=device))
    assert index.shape == (0,) and index.dtype == torch.long and index.device == device


@pytest.mark.parametrize("ratio", [0.0, -0.5, 1.5])
def test_fps_rejects_a_ratio_outside_the_unit_interval(ratio):
    with pytest.raises(ValueError, match=r"ratio must lie in \(0, 1\]"):
        fps(torch.rand(10, 3), ratio=ratio)


def test_knn_and_radius_keep_pygs_edge_layout(backend, make_clouds):
    # PyG's contract: [2, E], row 0 indexes y, row 1 indexes x; grouped by query in order,
    # nearest first; fewer than k where a cloud holds fewer points (no padding).
    x, batch_x = make_clouds([7, 1, 12], seed=11)
    y, batch_y = make_clouds([3, 2, 4], seed=12)
    for k in (1, 4):
        row, col = knn(x, y, k, batch_x, batch_y)
        expected = knn_distances(x, y, batch_x, batch_y, k)
        assert row.tolist() == [i for i in range(y.size(0)) for _ in expected[i]]
        got = [squared_distance(x[j].tolist(), y[i].tolist()) for i, j in zip(row, col)]
        assert got == pytest.approx([d for row in expected for d in row], rel=1e-5, abs=1e-7)
    r = 0.45
    row, col = radius(x, y, r, batch_x, batch_y, max_num_neighbors=3)
    every = knn_distances(x, y, batch_x, batch_y, 12)
    want = [(i, d) for i in range(y.size(0)) for d in every[i][:3] if d < r * r]
    got = [(int(i), squared_distance(x[j].tolist(), y[i].tolist())) for i, j in zip(row, col)]
    assert [i for i, _ in got] == [i for i, _ in want]
    assert [d for _, d in got] == pytest.approx([d for _, d in want], rel=1e-5, abs=1e-7)
    assert all(batch_x[j] == batch_y[i] for i, j in zip(row, col))


def test_knn_and_radius_take_pygs_arguments(make_clouds):
    x, batch = make_clouds([20, 30], seed=13)
    a = knn(x, x, 3, batch, batch, cosine=False, num_workers=2, batch_size=2)
    b = knn(x=x, y=x, k=3, batch_x=batch, batch_y=batch)
    assert torch.equal(a, b)
    c = radius(x, x, 0.3, batch, batch, max_num_neighbors=8, num_workers=1, batch_size=3)
    assert torch.equal(c, radius(x, x, 0.3, batch, batch, 8))
    # Cosine distance ranks unit vectors as Euclidean distance does.
    unit = torch.nn.functional.normalize(x, dim=1)
    assert torch.equal(
        knn(x * 3, x, 2, batch, batch, cosine=True), knn(unit, unit, 2, batch, batch)
    )
