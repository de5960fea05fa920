r"""The reproducers of issue 10, one test each: what used to crash the process, return a
well-formed but wrong result, or fail deep inside torch without saying what was wrong. The
ones that crashed run in a subprocess, so that a regression fails its test instead of
ending the test run."""

import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch

from reproduction.testing import brute_fps, brute_knn
from tg_samplenet.losses import chamfer_distance, max_nn_distance
from tg_samplenet.nn.sampler import SampleNet
from tg_samplenet.nn.soft_projection import SoftProjection
from tg_samplenet.ops import (
    InputError,
    InputTypeError,
    available_backends,
    farthest_point_sampling,
    fps,
    nearest_index,
    padded_knn,
    sample_counts,
    use_backend,
)

needs_torch_cluster = pytest.mark.skipif(
    "torch_cluster" not in available_backends(), reason="needs torch_cluster"
)
BACKENDS = [name for name in available_backends() if name != "pyg_lib"]


def run_isolated(code: str) -> str:
    # Runs code in a fresh interpreter; a segfault or heap corruption fails the test here.
    done = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, f"exit {done.returncode}:\n{done.stdout}\n{done.stderr[-3000:]}"
    return done.stdout


@needs_torch_cluster
def test_fps_on_integer_points_is_an_error_not_a_segfault():
    out = run_isolated(
        """
        import torch
        from tg_samplenet.ops import InputTypeError, fps, use_backend
        with use_backend("torch_cluster"):
            try:
                fps(torch.randint(0, 10, (20, 3)), torch.tensor([0] * 10 + [1] * 10), 0.5)
            except InputTypeError as error:
                print("raised:", error)
        """
    )
    assert "raised: x must be floating point (got torch.int64)" in out


def test_scatter_never_sees_a_negative_or_out_of_range_index():
    # The per-cloud max and mean of the losses are scatters over the batch vector.
    out = run_isolated(
        """
        import torch
        from tg_samplenet.ops import InputError
        from tg_samplenet.losses import average_nn_distance, max_nn_distance
        x = torch.rand(6, 3)
        for batch, clouds in [([-1, 0, 0, 1, 1, 1], None), ([0, 0, 1, 1, 2, 2], 2)]:
            batch = torch.tensor(batch)
            for loss in (max_nn_distance, average_nn_distance):
                try:
                    loss(x, x, batch, batch, num_clouds=clouds)
                except InputError as error:
                    print("raised:", error.argument)
        """
    )
    assert out.split() == ["raised:", "batch_src"] * 2 + ["raised:", "num_clouds"] * 2


@pytest.mark.parametrize("training", [False, True])
def test_coordinates_near_1e20_give_valid_indices_and_finite_points(training):
    torch.manual_seed(0)
    pos = (torch.rand(64, 3) - 0.5) * 2e20
    batch = torch.tensor([0] * 40 + [1] * 24)
    sampler = SampleNet(8, point_channels=(16,), head_channels=(16,)).train(training)
    out = sampler(pos, batch)
    assert bool((out.index >= 0).all()) and bool((out.index < 64).all())
    assert bool(torch.isfinite(out.pos).all())
    if not training:
        for cloud in (0, 1):
            mine = out.index[out.batch == cloud].tolist()
            assert len(set(mine)) == len(mine) == 8


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("scale", [1e20, 1e-25])
def test_neighbours_and_farthest_points_hold_at_extreme_scales(backend, scale):
    g = torch.Generator().manual_seed(1)
    pos64 = torch.rand(30, 3, generator=g, dtype=torch.float64) * scale
    pos, batch = pos64.float(), torch.tensor([0] * 18 + [1] * 12)
    with use_backend(backend):
        near = nearest_index(pos, pos[::3], batch, batch[::3])
        picked = fps(pos, batch, 0.3, random_start=False)
    exact = pos.double() / scale  # the same float32 values, in range for the references
    expected = [row[0][1] for row in brute_knn(exact, exact[::3], batch, batch[::3], 1)]
    assert near.tolist() == expected
    assert picked.tolist() == brute_fps(exact, batch, [6, 4])


@needs_torch_cluster
def test_identical_points_give_unique_fps_indices_on_every_back_end():
    pos, batch = torch.ones(10, 3), torch.tensor([0] * 6 + [1] * 4)
    for backend in BACKENDS:
        with use_backend(backend):
            index = fps(pos, batch, 0.5, random_start=False)
        assert index.tolist() == [0, 1, 2, 6, 7], backend


@pytest.mark.parametrize("dim", [1, 2, 5])
def test_dense_fps_uses_every_dimension(dim):
    g = torch.Generator().manual_seed(dim)
    pos, batch = torch.rand(20, dim, generator=g, dtype=torch.float64), torch.tensor([0] * 20)
    with use_backend("torch"):
        index = fps(pos, batch, 0.4, random_start=False)
    assert index.tolist() == brute_fps(pos, batch, [8])


def test_plain_torch_knn_far_from_the_origin():
    # UTM-style coordinates: a 1e6 offset made |x|^2 + |y|^2 - 2 x.y cancel.
    g = torch.Generator().manual_seed(2)
    local = torch.rand(200, 3, generator=g, dtype=torch.float64)
    pos = (local + torch.tensor([5e5, 4e6, 0.0], dtype=torch.float64)).float()
    query = pos[:40] + 0.01
    with use_backend("torch"):
        index = padded_knn(pos, query, 4).index
    expected = brute_knn(pos.double(), query.double(), torch.zeros(200), torch.zeros(40), 4)
    got = [
        [round(float(((query[i].double() - pos[j].double()) ** 2).sum()), 9) for j in row]
        for i, row in enumerate(index.tolist())
    ]
    assert got == [[round(d, 9) for d, _ in row] for row in expected]


def test_unsorted_batch_vectors_are_rejected():
    x, batch = torch.rand(4, 3), torch.tensor([0, 1, 0, 1])
    for call in (
        lambda: fps(x, batch, 0.5),
        lambda: padded_knn(x, x, 2, batch, torch.tensor([0, 0, 1, 1])),
        lambda: chamfer_distance(x, x, batch, batch),
    ):
        with pytest.raises(InputError, match="must be sorted"):
            call()


@pytest.mark.parametrize("ratio", [-1.0, float("nan"), 0.0, 1.5])
def test_sample_counts_rejects_ratios_outside_the_unit_interval(ratio):
    with pytest.raises(InputError, match=r"ratio must lie in \(0, 1\]"):
        sample_counts(torch.tensor([10, 3]), ratio=ratio)


def test_soft_projection_with_zero_or_nan_temperature():
    with pytest.raises(InputError, match="initial_temperature"):
        SoftProjection(initial_temperature=0.0, min_sigma=0.0)
    with pytest.raises(InputError, match="initial_temperature must be finite"):
        SoftProjection(initial_temperature=float("nan"))
    proj = SoftProjection(min_sigma=0.0)
    with torch.no_grad():
        proj.temperature.fill_(float("nan"))
    with pytest.raises(InputError, match="temperature gives sigma = nan"):
        proj(torch.rand(6, 3), torch.rand(2, 3))


def test_chamfer_of_an_empty_batch_and_of_a_gap():
    with pytest.raises(InputError, match="hold no points"):
        chamfer_distance(torch.empty(0, 3), torch.empty(0, 3))
    x, batch = torch.tensor([[0.0, 0, 0], [1, 0, 0]]), torch.tensor([0, 2])
    assert chamfer_distance(x, x, batch, batch).item() == 0.0  # cloud 1 is not a 0 in the mean
    assert chamfer_distance(x, x + 1, batch, batch).item() == 2 * 3.0


def test_max_nn_distance_with_too_few_clouds():
    x, batch = torch.rand(6, 3), torch.tensor([0, 0, 1, 1, 2, 2])
    with pytest.raises(InputError, match="num_clouds=2 is smaller"):
        max_nn_distance(x, x, batch, batch, num_clouds=2)


def test_hdf5_and_ply_files_with_nan_points_are_rejected_with_their_name(tmp_path):
    h5py = pytest.importorskip("h5py")
    plyfile = pytest.importorskip("plyfile")
    from tg_samplenet.datasets import HDF5PointClouds, read_ply_points

    data = np.random.default_rng(0).normal(size=(2, 5, 3)).astype(np.float32)
    data[1, 2, 0] = np.nan
    with h5py.File(tmp_path / "ply_data_train0.h5", "w") as f:
        f["data"], f["label"] = data, np.array([[0], [1]])
    (tmp_path / "train_files.txt").write_text("ply_data_train0.h5\n")
    with pytest.raises(InputError, match=r"ply_data_train0.h5: clouds \[1\] contain NaN"):
        HDF5PointClouds(str(tmp_path))

    vertex = np.array([(0.0, np.nan, 0.0), (1.0, 0.0, 0.0)], dtype=[(c, "f4") for c in "xyz"])
    path = tmp_path / "cloud.ply"
    plyfile.PlyData([plyfile.PlyElement.describe(vertex, "vertex")]).write(str(path))
    with pytest.raises(InputError, match="cloud.ply: NaN or infinite coordinates"):
        read_ply_points(str(path))


def test_farthest_point_sampling_with_ungrouped_selection_and_too_many_counts():
    pos = torch.tensor([[0.0, 0], [4, 0], [1, 0], [0, 0], [0, 7], [0, 2]])
    batch = torch.tensor([0, 0, 0, 1, 1, 1])
    counts = torch.tensor([1, 1])
    ungrouped = farthest_point_sampling(pos, batch, counts, selected=torch.tensor([5, 0]))
    assert ungrouped.tolist() == brute_fps(pos, batch, [1, 1], selected=[0, 5])
    with pytest.raises(InputError, match="counts\\[0\\] = 4 exceeds the 3 unselected points"):
        farthest_point_sampling(pos, batch, torch.tensor([4, 0]))


@pytest.mark.parametrize("damage", ["truncated", "empty", "foreign"])
def test_samplenet_load_on_a_bad_file_names_it(tmp_path, damage):
    path = tmp_path / "sampler.pt"
    SampleNet(4, point_channels=(8,), head_channels=()).save(path)
    if damage == "truncated":
        path.write_bytes(path.read_bytes()[:500])
    elif damage == "empty":
        path.write_bytes(b"")
    else:
        path.write_bytes(b"PK\x03\x04 this is some other zip-looking file")
    with pytest.raises(InputError, match=str(path)):
        SampleNet.load(path)


def test_samplenet_without_point_channels():
    with pytest.raises(InputError, match="point_channels must hold at least one layer width"):
        SampleNet(4, point_channels=())


@pytest.mark.parametrize("batch", [[-1, 0, 0, 0], [0.0, 0.0, 1.0, 1.0]])
def test_negative_or_float_batch_vectors_are_named(batch):
    with pytest.raises(InputError, match="^batch "):
        fps(torch.rand(4, 3), torch.tensor(batch), 0.5)
    with pytest.raises(InputError, match="^batch "):
        SampleNet(2)(torch.rand(4, 3), torch.tensor(batch))


def test_corrupt_hdf5_and_off_files_are_named(tmp_path):
    pytest.importorskip("h5py")
    from tg_samplenet.datasets import read_h5_clouds, read_off_mesh

    (tmp_path / "bad.h5").write_bytes(b"\x89HDF\r\n\x1a\n" + b"\x00" * 40)
    with pytest.raises(InputError, match="bad.h5 cannot be read as HDF5"):
        read_h5_clouds(str(tmp_path / "bad.h5"))
    (tmp_path / "bad.off").write_text("OFF\nfour faces\n0 0 0\n")
    with pytest.raises(InputError, match="bad.off cannot be read as OFF"):
        read_off_mesh(str(tmp_path / "bad.off"))


def test_input_type_error_is_both_a_type_and_a_value_error():
    with pytest.raises(InputTypeError) as info:
        fps(torch.rand(4, 3), torch.tensor([0.0, 0, 1, 1]))
    assert isinstance(info.value, TypeError) and isinstance(info.value, ValueError)
