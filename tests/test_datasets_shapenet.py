import os

import numpy as np
import pytest
import torch

import tg_samplenet.datasets.shapenet as shapenet_module
from tg_samplenet.datasets import ShapeNetPointClouds, read_ply_points, split_indices

plyfile = pytest.importorskip("plyfile")

AIRPLANE, CHAIR, UNNAMED = "02691156", "03001627", "09999999"


def _write_ply(path, points, text):
    vertex = np.array([tuple(p) for p in points], dtype=[("x", "f4"), ("y", "f4"), ("z", "f4")])
    element = plyfile.PlyElement.describe(vertex, "vertex")
    plyfile.PlyData([element], text=text, byte_order="<").write(str(path))


def _make_root(root, counts=None, num_points=30):
    # Each model's first point encodes (class, model) so that a cloud can be traced back.
    counts = counts or {AIRPLANE: 20, CHAIR: 40, UNNAMED: 10}
    clouds = {}
    rng = np.random.default_rng(0)
    for c, (synset, count) in enumerate(counts.items()):
        (root / synset).mkdir(parents=True)
        for m in range(count):
            points = rng.normal(size=(num_points, 3)).astype(np.float32)
            points[0] = [10.0 + c, float(m), 0.0]
            name = f"model{m:03d}"
            _write_ply(root / synset / f"{name}.ply", points, text=m % 2 == 0)
            clouds[(synset, name)] = points
    return clouds


def _normalized(cloud):
    centred = cloud - cloud.mean(axis=0)
    return centred / np.linalg.norm(centred, axis=1).max()


def test_read_ply_ascii_and_binary(tmp_path):
    points = np.random.default_rng(1).normal(size=(7, 3)).astype(np.float32)
    for text in (True, False):
        path = tmp_path / f"cloud_{text}.ply"
        _write_ply(path, points, text)
        np.testing.assert_allclose(read_ply_points(str(path)).numpy(), points, rtol=1e-6)


def test_split_indices_are_85_5_10_disjoint_and_complete():
    for n in (1, 7, 20, 40, 100, 1234):
        train, val, test = split_indices(n, seed=42)
        assert len(train) == round(0.85 * n) and len(train) + len(val) == round(0.9 * n)
        assert sorted(np.concatenate([train, val, test]).tolist()) == list(range(n))
    assert [len(part) for part in split_indices(100)] == [85, 5, 10]
    assert all(
        np.array_equal(a, b) for a, b in zip(split_indices(50), split_indices(50, 42), strict=True)
    )
    assert not np.array_equal(split_indices(50, 0)[0], split_indices(50, 42)[0])


def test_splits_per_class(tmp_path):
    clouds = _make_root(tmp_path)
    splits = {s: ShapeNetPointClouds(str(tmp_path), split=s) for s in ("train", "val", "test")}
    assert splits["train"].classes == ["airplane", "chair", UNNAMED]
    expected = {"train": [17, 34, 8], "val": [1, 2, 1], "test": [2, 4, 1]}
    seen = []
    for name, ds in splits.items():
        labels = ds._data.y.tolist()
        assert [labels.count(c) for c in range(3)] == expected[name]
        for data in ds:
            # Trace the cloud to its file by the marker point, then compare it whole.
            marker = data.pos[0].numpy()
            matches = [
                key
                for key, cloud in clouds.items()
                if np.allclose(_normalized(cloud)[0], marker, atol=1e-5)
            ]
            assert len(matches) == 1
            key = matches[0]
            assert [AIRPLANE, CHAIR, UNNAMED].index(key[0]) == int(data.y)
            np.testing.assert_allclose(data.pos.numpy(), _normalized(clouds[key]), atol=1e-5)
            seen.append(key)
    assert sorted(seen) == sorted(clouds)  # disjoint and complete

    # The models of a class in a split are exactly the authors' split of the sorted files.
    train_chairs = {key[1] for key in seen[:59] if key[0] == CHAIR}
    assert train_chairs == {f"model{m:03d}" for m in split_indices(40, 42)[0]}


def test_categories_by_name_or_synset_relabel_in_given_order(tmp_path):
    _make_root(tmp_path)
    ds = ShapeNetPointClouds(str(tmp_path), "test", categories=["chair", AIRPLANE])
    assert ds.classes == ["chair", "airplane"] and ds.num_classes == 2
    assert ds._data.y.tolist() == [0] * 4 + [1] * 2
    with pytest.raises(ValueError, match="car"):
        ShapeNetPointClouds(str(tmp_path), categories=["car"])
    with pytest.raises(ValueError, match="twice"):
        ShapeNetPointClouds(str(tmp_path), categories=["chair", CHAIR])


def test_first_points_and_too_many(tmp_path):
    clouds = _make_root(tmp_path, {CHAIR: 20})
    ds = ShapeNetPointClouds(str(tmp_path), "val", num_points=12)
    (model,) = [f"model{m:03d}" for m in split_indices(20)[1]]
    np.testing.assert_allclose(
        ds[0].pos.numpy(), _normalized(clouds[(CHAIR, model)][:12]), atol=1e-5
    )
    with pytest.raises(ValueError, match="stores only 30"):
        ShapeNetPointClouds(str(tmp_path), num_points=31)


def test_second_construction_reads_the_cache(tmp_path, monkeypatch):
    _make_root(tmp_path, {AIRPLANE: 10, CHAIR: 10})
    first = ShapeNetPointClouds(str(tmp_path), "val")
    assert len(os.listdir(tmp_path / "processed")) >= 3

    def fail(path):
        raise AssertionError(f"re-read {path}")

    monkeypatch.setattr(shapenet_module, "read_ply_points", fail)
    for split in ("train", "val", "test"):
        ShapeNetPointClouds(str(tmp_path), split)  # all three splits were cached at once
    second = ShapeNetPointClouds(str(tmp_path), "val")
    assert torch.equal(first._data.pos, second._data.pos)
    with pytest.raises(AssertionError, match="re-read"):
        ShapeNetPointClouds(str(tmp_path), "val", seed=1)


def test_bad_root_split_and_files(tmp_path):
    with pytest.raises(FileNotFoundError, match="not a folder"):
        ShapeNetPointClouds(str(tmp_path / "nowhere"))
    with pytest.raises(FileNotFoundError, match="ply"):
        ShapeNetPointClouds(str(tmp_path))
    _make_root(tmp_path, {CHAIR: 3})
    with pytest.raises(ValueError, match="splits"):
        ShapeNetPointClouds(str(tmp_path), "trainval")
    with pytest.raises(ValueError, match="seed"):
        ShapeNetPointClouds(str(tmp_path), seed=-1)

    no_z = np.array([(1.0, 2.0)], dtype=[("x", "f4"), ("y", "f4")])
    plyfile.PlyData([plyfile.PlyElement.describe(no_z, "vertex")], text=True).write(
        str(tmp_path / "flat.ply")
    )
    with pytest.raises(ValueError, match="'z'"):
        read_ply_points(str(tmp_path / "flat.ply"))


def test_bad_ply_files_are_named_or_skipped(tmp_path):
    _make_root(tmp_path, {CHAIR: 6}, num_points=10)
    folder = tmp_path / CHAIR
    (folder / "model001.ply").write_bytes(b"ply\nformat ascii 1.0\nelement vertex two\n")
    _write_ply(folder / "model004.ply", [[0.0, 0.0, np.nan]] * 10, text=True)
    _write_ply(folder / "model005.ply", [], text=False)
    with pytest.raises(ValueError, match="3 bad files") as info:
        ShapeNetPointClouds(str(tmp_path))
    message = str(info.value)
    assert "model001.ply cannot be read as PLY" in message
    assert "model004.ply: NaN or infinite coordinates" in message
    assert "model005.ply: no points" in message
    with pytest.warns(UserWarning, match="model004.ply"):
        kept = ShapeNetPointClouds(str(tmp_path), on_bad_file="skip")
    good_in_train = [i for i in split_indices(6)[0] if i not in (1, 4, 5)]
    assert len(kept) == len(good_in_train) and bool(torch.isfinite(kept._data.pos).all())


def test_a_split_without_models_says_so(tmp_path):
    _make_root(tmp_path, {CHAIR: 3})  # round(0.85 * 3) = 3: train takes every model
    with pytest.raises(ValueError, match="the val split of .* holds no clouds"):
        ShapeNetPointClouds(str(tmp_path), "val")
    assert len(ShapeNetPointClouds(str(tmp_path), "train")) == 3
