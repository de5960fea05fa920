import h5py
import numpy as np
import pytest
import torch

from reproduction.datasets import DATASET_NAMES, get_dataset
from reproduction.shapes import SyntheticShapes
from tg_samplenet.datasets import HDF5PointClouds


def test_synthetic_is_built_without_files_and_passes_options():
    ds = get_dataset("synthetic", split="test", num_points=64, samples_per_class=2)
    assert isinstance(ds, SyntheticShapes)
    assert ds.split == "test" and ds[0].pos.shape == (64, 3)
    assert ds.classes == list(SyntheticShapes.ALL_CLASSES)
    picked = get_dataset("Synthetic", num_points=8, categories=["car"], seed=3, samples_per_class=1)
    direct = SyntheticShapes(num_points=8, classes=["car"], seed=3, samples_per_class=1)
    assert picked.classes == ["car"] and torch.equal(picked[0].pos, direct[0].pos)
    assert get_dataset("synthetic", split="val", num_points=8, samples_per_class=1).split == "val"


def test_h5_through_the_factory(tmp_path):
    with h5py.File(tmp_path / "ply_data_test0.h5", "w") as f:
        f.create_dataset("data", data=np.random.default_rng(0).normal(size=(3, 9, 3)))
        f.create_dataset("label", data=np.array([[1], [0], [1]], dtype=np.uint8))
    (tmp_path / "test_files.txt").write_text("data/modelnet40_ply_hdf5_2048/ply_data_test0.h5\n")
    (tmp_path / "shape_names.txt").write_text("cone\ncup\n")
    ds = get_dataset(
        "h5", str(tmp_path), "test", num_points=4, categories=["cup"], seed=5, samples_per_class=9
    )
    assert isinstance(ds, HDF5PointClouds)
    assert ds.classes == ["cup"] and len(ds) == 2 and ds[0].pos.shape == (4, 3)


def test_modelnet_and_shapenet_need_their_files(tmp_path):
    with pytest.raises(FileNotFoundError, match="raw"):
        get_dataset("modelnet10", str(tmp_path))
    with pytest.raises(FileNotFoundError, match="ply"):
        get_dataset("shapenet", str(tmp_path))


@pytest.mark.parametrize(
    "args, kwargs, error, message",
    [
        (("imagenet",), {}, ValueError, "unknown data set 'imagenet'"),
        ((3,), {}, TypeError, "name"),
        (("modelnet40",), {}, ValueError, "needs root"),
        (("h5",), {}, ValueError, "needs root"),
        (("shapenet",), {}, ValueError, "needs root"),
        (("synthetic",), dict(split="dev"), ValueError, "split"),
        (("synthetic",), dict(categories=["dragon"]), ValueError, "dragon"),
        (("synthetic",), dict(colour=True), TypeError, "colour"),
        (("h5", "."), dict(random_rotation=True), TypeError, "random_rotation"),
    ],
)
def test_bad_requests(args, kwargs, error, message):
    with pytest.raises(error, match=message):
        get_dataset(*args, **kwargs)


def test_names_are_listed():
    assert set(DATASET_NAMES) == {"synthetic", "modelnet10", "modelnet40", "h5", "shapenet"}
