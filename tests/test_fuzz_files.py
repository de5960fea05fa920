r"""Property-based fuzz of the file readers and loaders: point files of every format, meshes and
HDF5 files truncated, with flipped or random bytes, NaN or infinite coordinates, missing keys
or faces. Each read returns finite clouds of the right shape (whose rows write back and read
again unchanged) or raises an InputError that names the file."""

import numpy as np
import pytest
import torch
from fuzz_support import promise, write_counts
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tg_samplenet.datasets import (
    HDF5PointClouds,
    ShapeNetPointClouds,
    read_h5_clouds,
    read_off_mesh,
    read_ply_points,
    read_point_file,
    write_point_file,
)

h5py = pytest.importorskip("h5py")
plyfile = pytest.importorskip("plyfile")

# NaN and inf inputs make numpy warn inside the checks themselves.
pytestmark = pytest.mark.filterwarnings("ignore::RuntimeWarning")

FUZZ = settings(
    max_examples=40,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
DAMAGE = ["none", "truncate", "flip", "garbage", "nan", "inf", "empty"]


@pytest.fixture(scope="module", autouse=True)
def counts():
    yield
    write_counts("files")


def damaged(data: bytes, damage: str, where: float) -> bytes:
    at = int(where * max(len(data) - 1, 0))
    if damage == "truncate":
        return data[:at]
    if damage == "flip":
        out = bytearray(data)
        out[at] ^= 0x5A
        return bytes(out)
    if damage == "garbage":
        return np.random.default_rng(at).integers(0, 256, 200, dtype=np.uint8).tobytes()
    return data


def points_for(damage: str, n: int = 6) -> np.ndarray:
    points = np.random.default_rng(n).normal(size=(n, 3)).astype(np.float32)
    if damage == "nan":
        points[1, 2] = np.nan
    elif damage == "inf":
        points[0, 0] = np.inf
    elif damage == "empty":
        points = points[:0]
    return points


def check_read(result, error, path, shape_ok):
    if error is not None:
        assert str(path) in str(error), error
        return False
    assert shape_ok(result)
    return True


@FUZZ
@given(damage=st.sampled_from(DAMAGE), where=st.floats(0, 1), text=st.booleans())
def test_read_ply_points(tmp_path, damage, where, text):
    path = tmp_path / f"cloud_{damage}_{text}.ply"
    vertex = np.array(
        [tuple(p) for p in points_for(damage)], dtype=[("x", "f4"), ("y", "f4"), ("z", "f4")]
    )
    buffer = plyfile.PlyData([plyfile.PlyElement.describe(vertex, "vertex")], text=text)
    buffer.write(str(path))
    path.write_bytes(damaged(path.read_bytes(), damage, where))
    pos, error = promise("read_ply_points", read_ply_points, str(path))
    loaded = check_read(
        pos, error, path, lambda p: p.dim() == 2 and p.size(1) == 3 and p.size(0) > 0
    )
    if damage in ("nan", "inf", "empty", "garbage"):
        assert not loaded, f"a {damage} file was accepted"
    if loaded:
        assert bool(torch.isfinite(pos).all())


def write_point_file_of(path, fmt: str, points: np.ndarray):
    r"""A valid file of format :obj:`fmt` holding :obj:`points` and one attribute column."""
    extra = np.arange(len(points), dtype=np.float32)[:, None]
    if fmt == "npy":
        np.save(path, np.concatenate([points, extra], axis=1))
    elif fmt == "npz":
        np.savez(path, pos=points, label=extra[:, 0])
    else:
        rows = "".join(f"{x!r} {y!r} {z!r} {int(e)}\n" for (x, y, z), (e,) in zip(points, extra))
        head = f"OFF\n{len(points)} 0 0\n" if fmt == "off" else "x y z id\n"
        path.write_text(head + rows)


@FUZZ
@given(
    fmt=st.sampled_from(["npy", "npz", "xyz", "off"]),
    damage=st.sampled_from(DAMAGE),
    where=st.floats(0, 1),
)
def test_read_point_file_then_write_a_subset(tmp_path, fmt, damage, where):
    path = tmp_path / f"cloud_{damage}.{fmt}"
    write_point_file_of(path, fmt, points_for(damage).astype(np.float64))
    path.write_bytes(damaged(path.read_bytes(), damage, where))
    file, error = promise("read_point_file", read_point_file, path)
    loaded = check_read(file, error, path, lambda f: f.pos.ndim == 2 and f.pos.shape[1] == 3)
    if damage in ("nan", "inf", "empty", "garbage"):
        assert not loaded, f"a {damage} file was accepted"
    if loaded:
        assert np.isfinite(file.pos).all() and len(file.pos) > 0
        rows = np.arange(len(file.pos))[::-2]
        write_point_file(file, tmp_path / f"out.{fmt}", rows)
        again = read_point_file(tmp_path / f"out.{fmt}")
        assert np.array_equal(again.pos, file.pos[rows]) and again.attributes == file.attributes


TETRAHEDRON = "OFF\n4 4 0\n0 0 0\n1 0 0\n0 1 0\n0 0 1\n3 0 2 1\n3 0 1 3\n3 0 3 2\n3 1 2 3\n"


@FUZZ
@given(damage=st.sampled_from(DAMAGE + ["no_faces", "bad_face", "header"]), where=st.floats(0, 1))
def test_read_off_mesh(tmp_path, damage, where):
    path = tmp_path / f"mesh_{damage}.off"
    text = TETRAHEDRON
    if damage == "nan":
        text = text.replace("1 0 0\n", "nan 0 0\n", 1)
    elif damage == "inf":
        text = text.replace("0 1 0\n", "0 inf 0\n", 1)
    elif damage == "no_faces":
        text = "OFF\n4 0 0\n0 0 0\n1 0 0\n0 1 0\n0 0 1\n"
    elif damage == "bad_face":
        text = text.replace("3 1 2 3", "3 1 2 9")
    elif damage == "header":
        text = text.replace("4 4 0", "four 4 0")
    elif damage == "empty":
        text = ""
    path.write_bytes(damaged(text.encode(), damage, where))
    mesh, error = promise("read_off_mesh", read_off_mesh, str(path))
    loaded = check_read(mesh, error, path, lambda m: m.pos.size(1) == 3 and m.face.size(0) == 3)
    if damage in ("nan", "inf", "empty", "no_faces", "bad_face", "header", "garbage"):
        assert not loaded, f"a {damage} mesh was accepted"
    if loaded:
        assert bool(torch.isfinite(mesh.pos).all())
        assert int(mesh.face.max()) < mesh.pos.size(0) and int(mesh.face.min()) >= 0


@FUZZ
@given(
    damage=st.sampled_from(DAMAGE + ["no_label", "labels", "shape"]),
    where=st.floats(0, 1),
)
def test_read_h5_clouds(tmp_path, damage, where):
    path = tmp_path / f"clouds_{damage}.h5"
    data = np.stack([points_for("none", 5), points_for(damage if damage != "empty" else "none", 5)])
    if damage == "empty":
        data = data[:0]
    elif damage == "shape":
        data = data[..., :2]
    with h5py.File(path, "w") as f:
        f["data"] = data
        if damage != "no_label":
            f["label"] = np.array([[0], [1]] if damage != "labels" else [[0], [-4]])
    path.write_bytes(damaged(path.read_bytes(), damage, where))
    clouds, error = promise("read_h5_clouds", read_h5_clouds, str(path))
    loaded = check_read(clouds, error, path, lambda c: c[0].dim() == 3 and c[0].size(2) == 3)
    if damage in ("empty", "no_label", "labels", "shape", "garbage"):
        assert not loaded, f"a {damage} file was accepted"
    if loaded and damage in ("nan", "inf"):
        assert not bool(torch.isfinite(clouds[0][1]).all())  # left to the loader to reject


@FUZZ
@given(
    damages=st.lists(st.sampled_from(["none", "nan", "empty", "truncate"]), min_size=3, max_size=3),
    where=st.floats(0, 1),
    on_bad_file=st.sampled_from(["raise", "skip", "ignore"]),
)
def test_shapenet_folder_reports_every_bad_file(tmp_path_factory, damages, where, on_bad_file):
    root = tmp_path_factory.mktemp("shapenet")
    (root / "02691156").mkdir()
    names = []
    for i, damage in enumerate(damages):
        vertex = np.array(
            [tuple(p) for p in points_for(damage, 8)],
            dtype=[("x", "f4"), ("y", "f4"), ("z", "f4")],
        )
        path = root / "02691156" / f"model{i}.ply"
        plyfile.PlyData([plyfile.PlyElement.describe(vertex, "vertex")], text=False).write(
            str(path)
        )
        if damage == "truncate":
            path.write_bytes(damaged(path.read_bytes(), "truncate", where * 0.9))
        names.append(path.name)
    bad = [n for n, d in zip(names, damages, strict=True) if d != "none"]
    with pytest.warns(UserWarning) if on_bad_file == "skip" and bad else _nothing():
        ds, error = promise(
            "ShapeNetPointClouds",
            ShapeNetPointClouds,
            str(root),
            "train",
            on_bad_file=on_bad_file,
            extra=("path",),
        )
    if on_bad_file == "ignore" or (on_bad_file == "raise" and bad):
        assert error is not None
        for name in bad if on_bad_file == "raise" else []:
            assert name in str(error), f"{name} not reported: {error}"
        return
    if len(bad) == len(names):  # all three models sit in the train split
        assert error is not None and error.argument == "split"
        return
    assert error is None, error
    assert len(ds) == len(names) - len(bad)
    for data in ds:
        assert bool(torch.isfinite(data.pos).all()) and data.pos.size(0) == 8


class _nothing:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


@FUZZ
@given(damage=st.sampled_from(["none", "nan", "truncate", "garbage"]), where=st.floats(0, 1))
def test_hdf5_loader_names_the_bad_file(tmp_path_factory, damage, where):
    root = tmp_path_factory.mktemp("h5")
    for name, kind in (("good.h5", "none"), ("bad.h5", damage)):
        with h5py.File(root / name, "w") as f:
            f["data"] = np.stack([points_for("none", 5), points_for(kind, 5)])
            f["label"] = np.array([[0], [1]])
        if kind in ("truncate", "garbage"):
            (root / name).write_bytes(damaged((root / name).read_bytes(), kind, where))
    (root / "train_files.txt").write_text("good.h5\nbad.h5\n")
    ds, error = promise("HDF5PointClouds", HDF5PointClouds, str(root), extra=("path",))
    if damage == "none":
        assert error is None and len(ds) == 4
        return
    if error is None:  # a truncation that hit nothing h5py reads
        assert all(bool(torch.isfinite(d.pos).all()) for d in ds)
        return
    assert "bad.h5" in str(error) and "good.h5" not in str(error)
