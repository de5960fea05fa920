r"""Property-based fuzz of the parameter-free ops (tg_samplenet.ops) on every back-end: each
call returns a correct result (counts, uniqueness, membership of the right cloud, greedy
farthest points, nearest neighbours, agreement across back-ends up to ties) or raises an
InputError that names the bad argument. Inputs that used to crash the process inside
torch_cluster are fuzzed again in a subprocess by test_fuzz_native.py."""

import numpy as np
import pytest
import torch
from fuzz_support import check_fps_run, check_knn, clouds, promise, write_counts
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from tg_samplenet.ops import (
    available_backends,
    farthest_point_sampling,
    first_occurrence,
    fps,
    hard_sample,
    knn,
    nearest_index,
    padded_knn,
    radius,
    sample_counts,
    use_backend,
)

BACKENDS = [name for name in available_backends() if name != "pyg_lib"]
# NaN and inf inputs make numpy warn inside the checks themselves.
pytestmark = pytest.mark.filterwarnings("ignore::RuntimeWarning")

FUZZ = settings(
    max_examples=100,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
RATIOS = [0.5, 0.25, 1.0, 1e-3, 0.999, 0.0, -1.0, float("nan"), 1.5, torch.tensor(0.5), "0.5"]


@pytest.fixture(scope="module", autouse=True)
def counts():
    yield
    write_counts("ops")


def float32_ceil(n, ratio):
    return int(np.ceil(np.float32(n) * np.float32(ratio)))


def ratio_ok(ratio):
    if isinstance(ratio, torch.Tensor):
        ratio = float(ratio)
    return isinstance(ratio, float) and 0 < ratio <= 1


def check_grouped(index, cloud, sizes_wanted):
    # Indices grouped by cloud in batch order, the wanted number per cloud, no repeats.
    index = index.tolist()
    got = cloud[index] if index else np.zeros(0, dtype=int)
    assert np.all(np.diff(got) >= 0), "not grouped by cloud in batch order"
    assert np.bincount(got, minlength=len(sizes_wanted)).tolist() == list(sizes_wanted)
    assert len(set(index)) == len(index), "an index occurs twice"


def per_cloud_runs(index, c):
    # {cloud: (local indices of the run, global indices of the cloud)}
    runs = {}
    for cloud in range(c.num_clouds):
        members = np.flatnonzero(c.cloud == cloud)
        local = {g: i for i, g in enumerate(members)}
        runs[cloud] = ([local[g] for g in index.tolist() if g in local], members)
    return runs


@FUZZ
@given(
    c=clouds(),
    ratio=st.sampled_from(RATIOS),
    random_start=st.sampled_from([False, True, 1]),
    extra_clouds=st.sampled_from([None, 0, 1, -1]),
    backend=st.sampled_from(BACKENDS),
)
def test_fps(c, ratio, random_start, extra_clouds, backend):
    batch_size = None if extra_clouds is None else c.num_clouds + extra_clouds
    with use_backend(backend):
        index, error = promise("fps", fps, c.pos, c.batch, ratio, random_start, batch_size)
    ok = c.valid and ratio_ok(ratio) and isinstance(random_start, bool)
    ok = ok and (batch_size is None or batch_size >= c.num_clouds)
    if not ok:
        assert error is not None, "bad input accepted"
        return
    assert error is None, error
    r = float(ratio)
    clouds_out = max(c.num_clouds, batch_size or 0)
    wanted = [float32_ceil(n, r) for n in np.bincount(c.cloud, minlength=clouds_out)]
    assert index.dtype == torch.long
    check_grouped(index, c.cloud, wanted)
    for local, members in per_cloud_runs(index, c).values():
        check_fps_run(c.values[members], local, first=None if random_start else 0)


@FUZZ
@given(c=clouds(bad=False), ratio=st.sampled_from([0.5, 0.3, 1.0]))
def test_fps_back_ends_agree(c, ratio):
    assume(c.valid)  # half precision overflows to inf beyond 65504
    results = {}
    for backend in BACKENDS:
        with use_backend(backend):
            results[backend], error = promise("fps", fps, c.pos, c.batch, ratio, False)
        assert error is None, error
    first, *others = results.values()
    for other in others:
        if c.kind == "uniform" and c.pos.dtype == torch.float64:
            assert torch.equal(first, other)  # no ties among random float64 points
        else:  # ties may be broken apart; each is checked as a greedy run in test_fps
            assert first.shape == other.shape


@st.composite
def query_sets(draw, x, faults=True):
    # Queries near the points of x's non-empty clouds (sometimes of another dtype or
    # dimension, with NaN, or in a cloud that has no points).
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    present = [cloud for cloud in range(x.num_clouds) if (x.cloud == cloud).any()]
    clouds_of = sorted(rng.choice(present, size=rng.integers(1, 7))) if present else []
    values = []
    for cloud in clouds_of:
        members = x.values[x.cloud == cloud]
        extent = float(np.ptp(members, 0).max()) if len(members) > 1 else 1.0
        values.append(
            members[rng.integers(len(members))] + rng.normal(0, 0.3, x.values.shape[1]) * extent
        )
    dim = x.values.shape[1]
    values = np.array(values).reshape(-1, dim)
    fault = (
        draw(st.sampled_from([None] * 8 + ["dtype", "dim", "nan", "orphan"])) if faults else None
    )
    cloud = np.array(clouds_of, dtype=np.int64)
    if fault == "dim":
        values = np.concatenate([values, np.zeros((len(values), 1))], 1)
    if fault == "nan" and len(values):
        values[0, 0] = np.nan
    if fault == "orphan":
        cloud = np.append(cloud, x.num_clouds)
        values = np.concatenate([values, np.zeros((1, values.shape[1]))])
    dtype = x.pos.dtype if x.pos.dtype.is_floating_point else torch.float32
    if fault == "dtype":
        dtype = torch.float64 if dtype != torch.float64 else torch.float32
    y = torch.from_numpy(values).to(dtype)
    valid = fault is None or (fault == "nan" and len(values) == 0)
    valid = valid and bool(torch.isfinite(y).all())
    return y, torch.from_numpy(cloud), valid


@FUZZ
@given(
    data=st.data(),
    c=clouds(),
    k=st.sampled_from([1, 2, 3, 7, 1, 2, 3, 7, 0, -1, 2.0]),
    backend=st.sampled_from(BACKENDS),
)
def test_padded_knn(data, c, k, backend):
    y, batch_y, y_ok = data.draw(query_sets(c))
    with use_backend(backend):
        out, error = promise("padded_knn", padded_knn, c.pos, y, k, c.batch, batch_y)
    if not (c.valid and y_ok and isinstance(k, int) and k >= 1):
        assert error is not None, "bad input accepted"
        return
    assert error is None, error
    assert out.index.shape == out.mask.shape == (y.size(0), k)
    queries = type(c)(y, batch_y, y.double().numpy(), batch_y.numpy(), c.num_clouds, True, "")
    check_knn(c, queries, out.index, out.mask, k)


def grouped_neighbours(edges, num_queries):
    # PyG's [2, E] layout, grouped by query in order -> {query: neighbours in their order}.
    row, col = edges.tolist()
    assert row == sorted(row), "edges not grouped by query in order"
    found = {i: [] for i in range(num_queries)}
    for i, j in zip(row, col):
        found[i].append(j)
    return found


@FUZZ
@given(
    data=st.data(),
    c=clouds(max_size=40),
    k=st.sampled_from([1, 2, 3, 7] * 3 + [0, -1, 2.0]),
    backend=st.sampled_from(BACKENDS),
)
def test_knn(data, c, k, backend):
    # torch_geometric.nn.knn's contract, checked against float64 distances.
    y, batch_y, y_ok = data.draw(query_sets(c, faults=c.valid and data.draw(st.booleans())))
    with use_backend(backend):
        edges, error = promise("knn", knn, c.pos, y, k, c.batch, batch_y)
    if not (c.valid and y_ok and isinstance(k, int) and k >= 1):
        assert error is not None, "bad input accepted"
        return
    assert error is None, error
    found = grouped_neighbours(edges, y.size(0))
    index = torch.zeros(y.size(0), k, dtype=torch.long)
    mask = torch.zeros(y.size(0), k, dtype=torch.bool)
    for i, neighbours in found.items():
        assert len(neighbours) <= k
        if neighbours:
            index[i] = neighbours[0]
            index[i, : len(neighbours)] = torch.tensor(neighbours)
            mask[i, : len(neighbours)] = True
    queries = type(c)(y, batch_y, y.double().numpy(), batch_y.numpy(), c.num_clouds, True, "")
    check_knn(c, queries, index, mask, k)


@FUZZ
@given(
    data=st.data(),
    c=clouds(max_size=40),
    relative_r=st.sampled_from([0.05, 0.2, 0.5, 1.0, 3.0] * 3 + [0.0, -1.0, float("nan"), "0.5"]),
    max_num_neighbors=st.sampled_from([1, 2, 4, 32] * 3 + [0]),
    backend=st.sampled_from(BACKENDS),
)
def test_radius(data, c, relative_r, max_num_neighbors, backend):
    # torch_geometric.nn.radius's contract: per query the points of its cloud closer than r,
    # the nearest max_num_neighbors of them where more are, against float64 distances.
    y, batch_y, y_ok = data.draw(query_sets(c, faults=c.valid and data.draw(st.booleans())))
    # r relative to the smallest cloud's extent (clouds may differ in scale by 1e60).
    extents = [np.ptp(c.values[c.cloud == b], 0).max() for b in set(c.cloud.tolist())]
    extents = [e for e in extents if c.valid and np.isfinite(e) and e > 0]
    extent = float(min(extents)) if extents else 0.0
    r = (
        relative_r * (extent if extent > 0 else 1.0)
        if isinstance(relative_r, float)
        else relative_r
    )
    with use_backend(backend):
        edges, error = promise("radius", radius, c.pos, y, r, c.batch, batch_y, max_num_neighbors)
    r_ok = isinstance(r, float) and r > 0
    if not (c.valid and y_ok and r_ok and max_num_neighbors >= 1):
        assert error is not None, "bad input accepted"
        return
    assert error is None, error
    found = grouped_neighbours(edges, y.size(0))
    queries = y.double().numpy()
    for i, neighbours in found.items():
        members = np.flatnonzero(c.cloud == batch_y[i].item())
        assert set(neighbours) <= set(members), f"query {i}: neighbours outside its cloud"
        assert len(set(neighbours)) == len(neighbours), f"query {i}: repeated neighbour"
        every = ((c.values[members] - queries[i]) ** 2).sum(1)
        got = ((c.values[neighbours] - queries[i]) ** 2).sum(1) if neighbours else every[:0]
        assert np.all(got < r * r), f"query {i}: a neighbour at or beyond r"
        slack = 1e-5 * r * r
        inside_for_sure = int((every < r * r - slack).sum())
        inside_at_most = int((every < r * r + slack).sum())
        count = len(neighbours)
        assert min(max_num_neighbors, inside_for_sure) <= count, f"query {i}: too few"
        assert count <= min(max_num_neighbors, inside_at_most), f"query {i}: too many"
        if count and count < inside_at_most:  # the nearest of those within r
            left = np.setdiff1d(members, neighbours)
            rest = ((c.values[left] - queries[i]) ** 2).sum(1)
            rest = rest[rest < r * r]
            if len(rest):
                assert got.max() <= rest.min() + slack, f"query {i}: not the nearest"


@FUZZ
@given(data=st.data(), c=clouds(bad=False), k=st.sampled_from([1, 3, 8]))
def test_padded_knn_back_ends_agree(data, c, k):
    # Numerically hard but valid input (huge and tiny coordinates, far offsets, ties): every
    # back-end finds the true nearest neighbours, so they agree up to ties.
    y, batch_y, y_ok = data.draw(query_sets(c, faults=False))
    assume(c.valid and y_ok)
    queries = type(c)(y, batch_y, y.double().numpy(), batch_y.numpy(), c.num_clouds, True, "")
    for backend in BACKENDS:
        with use_backend(backend):
            out, error = promise("padded_knn", padded_knn, c.pos, y, k, c.batch, batch_y)
        assert error is None, error
        check_knn(c, queries, out.index, out.mask, k)


@FUZZ
@given(data=st.data(), c=clouds(), backend=st.sampled_from(BACKENDS))
def test_nearest_index(data, c, backend):
    y, batch_y, y_ok = data.draw(query_sets(c))
    with use_backend(backend):
        index, error = promise("nearest_index", nearest_index, c.pos, y, c.batch, batch_y)
    if not (c.valid and y_ok):
        assert error is not None, "bad input accepted"
        return
    assert error is None, error
    queries = type(c)(y, batch_y, y.double().numpy(), batch_y.numpy(), c.num_clouds, True, "")
    check_knn(c, queries, index.view(-1, 1), torch.ones(len(index), 1, dtype=torch.bool), 1)


@FUZZ
@given(
    data=st.data(),
    c=clouds(),
    random_start=st.booleans(),
    backend=st.sampled_from(BACKENDS),
)
def test_farthest_point_sampling(data, c, random_start, backend):
    rng = np.random.default_rng(data.draw(st.integers(0, 2**32 - 1)))
    n = len(c.values)
    chosen = rng.integers(0, max(n, 1), rng.integers(0, 5)) if n else np.zeros(0, int)
    fault = data.draw(st.sampled_from([None] * 5 + ["range", "negative", "float", "counts"]))
    selected = torch.from_numpy(chosen.astype(np.int64))  # unsorted, repeats allowed
    if fault == "range":
        selected = torch.cat([selected, torch.tensor([n])])
    elif fault == "negative":
        selected = torch.cat([selected, torch.tensor([-1])])
    elif fault == "float":
        selected = torch.cat([selected.float(), torch.tensor([0.5])])
    sizes = np.bincount(c.cloud, minlength=c.num_clouds)
    taken = np.bincount(c.cloud[np.unique(chosen)] if n else [], minlength=c.num_clouds)
    free = sizes - taken
    counts = np.array([rng.integers(0, f + 1) for f in free], dtype=np.int64)
    if fault == "counts" and len(counts):
        counts[rng.integers(len(counts))] = rng.choice([-1, 10**6])
    selected_or_none = selected if len(chosen) or fault else None
    with use_backend(backend):
        index, error = promise(
            "farthest_point_sampling",
            farthest_point_sampling,
            c.pos,
            c.batch,
            torch.from_numpy(counts),
            selected_or_none,
            random_start,
        )
    ok = c.valid and (fault is None or (fault == "counts" and len(counts) == 0))
    if not ok:
        assert error is not None, "bad input accepted"
        return
    assert error is None, error
    check_grouped(index, c.cloud, counts.tolist())
    for local, members in per_cloud_runs(index, c).values():
        already = sorted({int(np.flatnonzero(members == g)[0]) for g in chosen if g in members})
        first = None if random_start or already else 0
        check_fps_run(c.values[members], local, already, first=first)


@FUZZ
@given(
    data=st.data(),
    c=clouds(dims=(3, 2)),
    complete=st.sampled_from([True, False, "yes"]),
    backend=st.sampled_from(BACKENDS),
)
def test_hard_sample(data, c, complete, backend):
    y, batch_y, y_ok = data.draw(query_sets(c))
    rng = np.random.default_rng(data.draw(st.integers(0, 2**32 - 1)))
    sizes = np.bincount(
        c.cloud, minlength=max(c.num_clouds, int(batch_y.max()) + 1 if len(batch_y) else 0)
    )
    counts = np.array([rng.integers(0, s + 1) for s in sizes], dtype=np.int64)
    too_many = data.draw(st.booleans()) and len(counts) > 0
    if too_many:
        counts[0] = sizes[0] + 1
    with use_backend(backend):
        index, error = promise(
            "hard_sample",
            hard_sample,
            c.pos,
            c.batch,
            y,
            batch_y,
            torch.from_numpy(counts),
            complete,
        )
    if not (c.valid and y_ok and not too_many and isinstance(complete, bool)):
        assert error is not None, "bad input accepted"
        return
    assert error is None, error
    got = np.bincount(c.cloud[index.numpy()], minlength=len(counts))
    if complete:
        check_grouped(index, c.cloud, counts.tolist())
    else:
        assert np.all(got <= counts) and len(set(index.tolist())) == len(index)


@FUZZ
@given(
    values=st.lists(st.integers(-5, 5), max_size=12),
    kind=st.sampled_from(["long", "int32", "float", "2d"]),
)
def test_first_occurrence(values, kind):
    index = torch.tensor(values, dtype=torch.long)
    if kind == "int32":
        index = index.int()
    elif kind == "float":
        index = index.float()
    elif kind == "2d":
        index = index.view(1, -1)
    mask, error = promise("first_occurrence", first_occurrence, index)
    if kind in ("float", "2d") and values:
        assert error is not None
        return
    if kind == "2d":
        assert error is not None
        return
    assert error is None, error
    seen, expected = set(), []
    for v in values:
        expected.append(v not in seen)
        seen.add(v)
    assert mask.tolist() == expected


@FUZZ
@given(
    sizes=st.lists(st.integers(-2, 3000), max_size=5),
    ratio=st.sampled_from([None] + RATIOS),
    num_samples=st.sampled_from([None, 1, 7, 32, 0, -3, 2.5]),
)
def test_sample_counts(sizes, ratio, num_samples):
    counts, error = promise(
        "sample_counts", sample_counts, torch.tensor(sizes, dtype=torch.long), num_samples, ratio
    )
    if any(s < 0 for s in sizes):
        assert error is not None
        return
    if ratio is not None:
        if not ratio_ok(ratio):
            assert error is not None
            return
        assert error is None, error
        assert counts.tolist() == [float32_ceil(s, float(ratio)) for s in sizes]
        return
    if not (isinstance(num_samples, int) and num_samples >= 1):
        assert error is not None
        return
    assert error is None, error
    assert counts.tolist() == [min(s, num_samples) for s in sizes]
