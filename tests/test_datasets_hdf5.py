import os

import h5py
import numpy as np
import pytest
import torch

import tg_samplenet.datasets.hdf5 as hdf5_module
from tg_samplenet.datasets import HDF5PointClouds

SHAPE_NAMES = ["airplane", "bathtub", "bed", "car"]


def _normalized(cloud):
    centred = cloud - cloud.mean(axis=0)
    return centred / np.linalg.norm(centred, axis=1).max()


def _write(root, name, data, label):
    with h5py.File(root / name, "w") as f:
        f.create_dataset("data", data=data)
        f.create_dataset("label", data=label)


def _make_root(tmp_path, shape_names=True):
    # Two train files with different point counts (neither 2048) and one test file, listed
    # with the directory prefix the real list files carry.
    rng = np.random.default_rng(0)
    files = {
        "ply_data_train0.h5": (rng.normal(size=(5, 40, 3)), [[0], [1], [2], [3], [1]]),
        "ply_data_train1.h5": (rng.normal(size=(3, 25, 3)) + 4.0, [[3], [0], [3]]),
        "ply_data_test0.h5": (rng.normal(size=(4, 40, 3)).astype(np.float32), [2, 2, 1, 0]),
    }
    for name, (data, label) in files.items():
        _write(tmp_path, name, data, np.asarray(label, dtype=np.uint8))
    prefix = "data/modelnet40_ply_hdf5_2048/"
    (tmp_path / "train_files.txt").write_text(
        f"{prefix}ply_data_train0.h5\n{prefix}ply_data_train1.h5\n"
    )
    (tmp_path / "test_files.txt").write_text(f"{prefix}ply_data_test0.h5\n")
    if shape_names:
        (tmp_path / "shape_names.txt").write_text("\n".join(SHAPE_NAMES) + "\n")
    return files


def test_all_stored_points_of_any_count_load(tmp_path):
    files = _make_root(tmp_path)
    ds = HDF5PointClouds(str(tmp_path), split="train")
    assert len(ds) == 8 and ds.classes == SHAPE_NAMES and ds.num_classes == 4
    clouds = [*files["ply_data_train0.h5"][0], *files["ply_data_train1.h5"][0]]
    labels = [0, 1, 2, 3, 1, 3, 0, 3]
    for i, (cloud, label) in enumerate(zip(clouds, labels, strict=True)):
        data = ds[i]
        assert data.pos.dtype == torch.float32 and data.y.tolist() == [label]
        np.testing.assert_allclose(data.pos.numpy(), _normalized(cloud), atol=1e-5)
    assert [ds[i].num_nodes for i in range(8)] == [40] * 5 + [25] * 3


def test_first_points_are_kept_and_normalised(tmp_path):
    files = _make_root(tmp_path)
    ds = HDF5PointClouds(str(tmp_path), split="test", num_points=10)
    assert len(ds) == 4
    for i, cloud in enumerate(files["ply_data_test0.h5"][0]):
        np.testing.assert_allclose(ds[i].pos.numpy(), _normalized(cloud[:10]), atol=1e-5)
        assert ds[i].pos.mean(dim=0).abs().max() < 1e-5
        assert ds[i].pos.norm(dim=1).max() == pytest.approx(1.0, abs=1e-6)


def test_categories_filter_and_relabel(tmp_path):
    files = _make_root(tmp_path)
    ds = HDF5PointClouds(str(tmp_path), split="train", categories=["car", "airplane"])
    assert ds.classes == ["car", "airplane"] and ds.num_classes == 2
    # car is label 3, airplane label 0 in shape_names.txt.
    assert [int(ds[i].y) for i in range(len(ds))] == [1, 0, 0, 1, 0]
    expected = files["ply_data_train0.h5"][0][3]
    np.testing.assert_allclose(ds[1].pos.numpy(), _normalized(expected), atol=1e-5)


def test_classes_without_shape_names_come_from_labels(tmp_path):
    _make_root(tmp_path, shape_names=False)
    ds = HDF5PointClouds(str(tmp_path), split="test")
    assert ds.classes == ["0", "1", "2"]
    with pytest.raises(FileNotFoundError, match="shape_names.txt"):
        HDF5PointClouds(str(tmp_path), categories=["car"])


def test_second_construction_reads_the_cache(tmp_path, monkeypatch):
    _make_root(tmp_path)
    first = HDF5PointClouds(str(tmp_path), split="train", num_points=20)
    assert os.listdir(tmp_path / "processed")
    for name in ("ply_data_train0.h5", "ply_data_train1.h5"):
        os.remove(tmp_path / name)
    monkeypatch.setattr(hdf5_module, "read_h5_clouds", lambda path: pytest.fail("re-read " + path))
    second = HDF5PointClouds(str(tmp_path), split="train", num_points=20)
    assert torch.equal(first._data.pos, second._data.pos)
    assert torch.equal(first._data.y, second._data.y)


class Killed(Exception):
    pass


def test_a_run_killed_while_saving_leaves_no_partial_cache(tmp_path, monkeypatch):
    # The processed file is written elsewhere and renamed into place: a run killed halfway
    # through writing it (or another process loading the root meanwhile) never finds a
    # partial file there, and the next construction processes the data again.
    import torch_geometric.io.fs as fs

    _make_root(tmp_path)
    save = fs.torch_save

    def killed_halfway(data, path):
        save(data, path)
        with open(path, "r+b") as f:  # what a killed process leaves: the file's first half
            f.truncate(os.path.getsize(path) // 2)
        raise Killed

    monkeypatch.setattr(fs, "torch_save", killed_halfway)
    with pytest.raises(Killed):
        HDF5PointClouds(str(tmp_path), split="train", num_points=20)
    monkeypatch.setattr(fs, "torch_save", save)
    assert os.listdir(tmp_path / "processed") == []
    dataset = HDF5PointClouds(str(tmp_path), split="train", num_points=20)
    assert len(dataset) == 8 and dataset[0].pos.shape == (20, 3)


def test_labels_as_flat_vector_and_float64_data(tmp_path):
    _write(tmp_path, "a.h5", np.arange(2 * 6 * 3, dtype=np.float64).reshape(2, 6, 3), [1, 0])
    (tmp_path / "train_files.txt").write_text("a.h5\n")
    ds = HDF5PointClouds(str(tmp_path))
    assert ds._data.y.tolist() == [1, 0] and ds._data.pos.dtype == torch.float32


@pytest.mark.parametrize(
    "kwargs, error, message",
    [
        (dict(split="val"), ValueError, "splits"),
        (dict(num_points=41), ValueError, "stores only 40"),
        (dict(num_points=0), ValueError, "num_points"),
        (dict(categories=["sofa"]), ValueError, "sofa"),
        (dict(categories="car"), TypeError, "categories"),
    ],
)
def test_bad_arguments(tmp_path, kwargs, error, message):
    _make_root(tmp_path)
    with pytest.raises(error, match=message):
        HDF5PointClouds(str(tmp_path), **{"split": "test", **kwargs})


def test_missing_root_and_files(tmp_path):
    with pytest.raises(FileNotFoundError, match="not a folder"):
        HDF5PointClouds(str(tmp_path / "nowhere"))
    with pytest.raises(ValueError, match="root"):
        HDF5PointClouds(None)
    with pytest.raises(FileNotFoundError, match="train_files.txt"):
        HDF5PointClouds(str(tmp_path))
    (tmp_path / "train_files.txt").write_text("data/x/ply_data_train0.h5\n")
    with pytest.raises(FileNotFoundError, match="ply_data_train0.h5"):
        HDF5PointClouds(str(tmp_path))


@pytest.mark.parametrize(
    "data, label, message",
    [
        (np.zeros((2, 5, 2)), [0, 1], r"\[N, P, 3\]"),
        (np.zeros((2, 5, 3)), [0, 1, 1], "must hold 2 integers"),
        (np.zeros((2, 5, 3)), [0.0, 1.0], "integers"),
        (np.zeros((2, 5, 3)), [0, 7], "outside"),
        (np.zeros((2, 5, 3)), [0, -1], "negative"),
    ],
)
def test_malformed_files(tmp_path, data, label, message):
    _write(tmp_path, "bad.h5", data, np.asarray(label))
    (tmp_path / "train_files.txt").write_text("bad.h5\n")
    (tmp_path / "shape_names.txt").write_text("\n".join(SHAPE_NAMES))
    with pytest.raises(ValueError, match=message):
        HDF5PointClouds(str(tmp_path))


def test_missing_datasets_in_file(tmp_path):
    with h5py.File(tmp_path / "bad.h5", "w") as f:
        f.create_dataset("points", data=np.zeros((1, 4, 3)))
    (tmp_path / "train_files.txt").write_text("bad.h5\n")
    with pytest.raises(ValueError, match="'data'"):
        HDF5PointClouds(str(tmp_path))


def test_every_bad_file_is_named_in_one_error(tmp_path):
    _write(tmp_path, "good.h5", np.zeros((2, 5, 3)) + np.arange(5)[:, None], [0, 1])
    nan = np.random.default_rng(1).normal(size=(3, 5, 3))
    nan[2, 1, 1] = np.nan
    _write(tmp_path, "nan.h5", nan, [0, 1, 2])
    (tmp_path / "corrupt.h5").write_bytes(b"\x89HDF\r\n\x1a\n" + bytes(64))
    (tmp_path / "train_files.txt").write_text("good.h5\nnan.h5\ncorrupt.h5\n")
    with pytest.raises(ValueError, match="2 bad files") as info:
        HDF5PointClouds(str(tmp_path))
    message = str(info.value)
    assert "nan.h5: clouds [2] contain NaN or infinite coordinates" in message
    assert "corrupt.h5 cannot be read as HDF5" in message and "good.h5" not in message
    assert not (tmp_path / "processed").exists() or not os.listdir(tmp_path / "processed")


def test_skipping_bad_files_keeps_the_good_clouds(tmp_path):
    rng = np.random.default_rng(2)
    _write(tmp_path, "good.h5", rng.normal(size=(2, 5, 3)), [0, 1])
    nan = rng.normal(size=(3, 5, 3))
    nan[0, 0, 0] = np.inf
    _write(tmp_path, "nan.h5", nan, [2, 3, 1])
    (tmp_path / "corrupt.h5").write_bytes(b"not an HDF5 file at all")
    (tmp_path / "train_files.txt").write_text("good.h5\nnan.h5\ncorrupt.h5\n")
    with pytest.warns(UserWarning) as warned:
        ds = HDF5PointClouds(str(tmp_path), on_bad_file="skip")
    assert sorted(str(w.message).split(": skipped ")[1].split(" ")[0] for w in warned) == [
        str(tmp_path / "corrupt.h5"),
        str(tmp_path / "nan.h5:"),
    ]
    assert ds._data.y.tolist() == [0, 1, 3, 1]  # the finite clouds of nan.h5 stay
    assert bool(torch.isfinite(ds._data.pos).all())
    with pytest.raises(ValueError, match="on_bad_file must be 'raise' or 'skip'"):
        HDF5PointClouds(str(tmp_path), on_bad_file="ignore")


def test_a_file_without_clouds_is_bad(tmp_path):
    _write(tmp_path, "empty.h5", np.zeros((0, 5, 3)), np.zeros((0, 1), dtype=np.int64))
    (tmp_path / "train_files.txt").write_text("empty.h5\n")
    with pytest.raises(ValueError, match=r"empty.h5: 'data' must hold clouds of numbers"):
        HDF5PointClouds(str(tmp_path))
