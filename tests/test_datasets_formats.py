r"""One reader and one writer per point-file format (:mod:`tg_samplenet.datasets.formats`):
every format round-trips a subset of its rows with all per-point attributes, and every kind of
bad file is an :class:`InputError` that names it. Each file is written here."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from tg_samplenet.datasets import (
    find_point_files,
    read_h5_clouds,
    read_off_mesh,
    read_ply_points,
    read_point_file,
    write_h5_clouds,
    write_point_file,
)
from tg_samplenet.ops.checks import InputError

plyfile = pytest.importorskip("plyfile")
h5py = pytest.importorskip("h5py")

ROWS = np.array([4, 0, 2])  # a subset, out of order


def xyz(rng, n: int = 6) -> np.ndarray:
    return rng.normal(size=(n, 3)).round(4)


def write_ply(path: Path, pos: np.ndarray, text: bool):
    vertex = np.zeros(len(pos), dtype=[("x", "f4"), ("y", "f4"), ("z", "f4"), ("red", "u1")])
    for i, c in enumerate("xyz"):
        vertex[c] = pos[:, i]
    vertex["red"] = np.arange(len(pos)) * 10
    face = np.zeros(1, dtype=[("vertex_indices", "i4", (3,))])
    face["vertex_indices"] = [[0, 1, 2]]
    elements = [plyfile.PlyElement.describe(a, n) for a, n in ((vertex, "vertex"), (face, "face"))]
    plyfile.PlyData(elements, text=text, comments=["scan"]).write(str(path))
    return vertex


@pytest.mark.parametrize("text", [True, False])
def test_ply_round_trip(tmp_path, text):
    pos = xyz(np.random.default_rng(0))
    vertex = write_ply(tmp_path / "a.ply", pos, text)
    file = read_point_file(tmp_path / "a.ply")
    assert file.format == "ply" and file.attributes == ["red"]
    np.testing.assert_array_equal(file.pos, pos.astype(np.float32))
    torch.testing.assert_close(read_ply_points(tmp_path / "a.ply"), torch.from_numpy(file.pos))
    write_point_file(file, tmp_path / "b.ply", ROWS)
    written = plyfile.PlyData.read(str(tmp_path / "b.ply"))
    assert np.array_equal(written["vertex"].data, vertex[ROWS])
    assert written.text == text and written.comments == ["scan"]
    assert [el.name for el in written.elements] == ["vertex"]  # faces index old vertices


def test_npy_round_trip_plain_and_structured(tmp_path):
    rng = np.random.default_rng(1)
    table = np.concatenate([xyz(rng), rng.normal(size=(6, 2))], axis=1)
    np.save(tmp_path / "a.npy", table)
    record = np.zeros(6, dtype=[("x", "f8"), ("y", "f8"), ("z", "f8"), ("label", "i2")])
    for i, c in enumerate("xyz"):
        record[c] = table[:, i]
    record["label"] = np.arange(6)
    np.save(tmp_path / "r.npy", record)
    for name, array, attributes in (
        ("a.npy", table, ["column 3", "column 4"]),
        ("r.npy", record, ["label"]),
    ):
        file = read_point_file(tmp_path / name)
        assert file.attributes == attributes
        np.testing.assert_array_equal(file.pos, table[:, :3].astype(np.float32))
        write_point_file(file, tmp_path / f"out_{name}", ROWS)
        got = np.load(tmp_path / f"out_{name}")
        assert got.dtype == array.dtype and np.array_equal(got, array[ROWS])


def test_npz_round_trip_keeps_per_point_and_other_arrays(tmp_path):
    rng = np.random.default_rng(2)
    pos, normal, scale = xyz(rng), rng.normal(size=(6, 3)), np.array([2.0, 3.0])
    np.savez(tmp_path / "a.npz", points=pos, normal=normal, scale=scale)
    file = read_point_file(tmp_path / "a.npz")
    assert file.attributes == ["normal"]
    write_point_file(file, tmp_path / "b.npz", ROWS)
    with np.load(tmp_path / "b.npz") as got:
        assert sorted(got.files) == ["normal", "points", "scale"]
        assert np.array_equal(got["points"], pos[ROWS])
        assert np.array_equal(got["normal"], normal[ROWS])
        assert np.array_equal(got["scale"], scale)


def test_text_round_trip_keeps_every_column_verbatim(tmp_path):
    lines = ["0.1000,2,3,a", "4,5.50,6,b", "7,8,9,c", "1e-3,0,0,d", "-1,-2,-3,e"]
    (tmp_path / "a.txt").write_text("# made by hand\nx,y,z,name\n" + "\n".join(lines) + "\n")
    file = read_point_file(tmp_path / "a.txt")
    assert file.attributes == ["name"]
    np.testing.assert_array_equal(file.pos[1], np.float32([4, 5.5, 6]))
    write_point_file(file, tmp_path / "b.txt", ROWS)
    expected = ["x,y,z,name", *(lines[i] for i in ROWS)]
    assert (tmp_path / "b.txt").read_text().splitlines() == expected
    (tmp_path / "c.xyz").write_text("1 2 3\n4 5 6\n")  # no header, whitespace
    assert read_point_file(tmp_path / "c.xyz").pos.tolist() == [[1, 2, 3], [4, 5, 6]]


def test_off_round_trip_and_mesh(tmp_path):
    vertices = ["0 0 0 255 0 0", "1 0 0 0 255 0", "0 1 0 0 0 255", "0 0 1 9 9 9", "2 2 2 1 1 1"]
    faces = ["3 0 2 1 128 128 128", "4 0 1 3 2"]  # a triangle with a colour, a quad
    text = "COFF\n# comment\n5 2 0\n" + "\n".join(vertices + faces) + "\n"
    (tmp_path / "a.off").write_text(text)
    file = read_point_file(tmp_path / "a.off")
    assert file.attributes == ["column 3", "column 4", "column 5"]
    write_point_file(file, tmp_path / "b.off", ROWS)
    assert (tmp_path / "b.off").read_text().splitlines() == ["COFF", "3 0 0"] + [
        vertices[i] for i in ROWS
    ]
    mesh = read_off_mesh(tmp_path / "a.off")
    # PyG's triangulation: triangles first, each quad as (0, 1, 2) and (0, 2, 3).
    assert mesh.face.t().tolist() == [[0, 2, 1], [0, 1, 3], [0, 3, 2]]
    assert mesh.pos.tolist()[4] == [2.0, 2.0, 2.0]
    (tmp_path / "glued.off").write_text("OFF4 1 0\n0 0 0\n1 0 0\n0 1 0\n0 0 1\n3 0 1 2\n")
    assert read_off_mesh(tmp_path / "glued.off").face.t().tolist() == [[0, 1, 2]]


def test_h5_round_trip(tmp_path):
    pos = np.random.default_rng(3).normal(size=(4, 7, 3)).astype(np.float32)
    write_h5_clouds(tmp_path / "a.h5", pos, [3, 1, 0, 2])
    with h5py.File(tmp_path / "a.h5") as f:
        assert f["label"].shape == (4, 1)  # the paper's layout
    clouds, label = read_h5_clouds(tmp_path / "a.h5")
    assert np.array_equal(clouds.numpy(), pos) and label.tolist() == [3, 1, 0, 2]
    with pytest.raises(InputError, match="label must hold 4 integers"):
        write_h5_clouds(tmp_path / "b.h5", pos, [0.5] * 4)
    with pytest.raises(InputError, match=r"pos must have shape \[N, P, 3\]"):
        write_h5_clouds(tmp_path / "b.h5", pos[..., :2], [0] * 4)
    assert not (tmp_path / "b.h5").exists()


BAD = {
    "empty.npy": (lambda p: np.save(p, np.zeros((0, 3))), "no points"),
    "flat.npy": (lambda p: np.save(p, np.zeros(12)), r"\[N, C >= 3\]"),
    "text.npy": (lambda p: np.save(p, np.array([["a", "b", "c"]])), "numbers"),
    "nopos.npz": (lambda p: np.savez(p, normal=np.zeros((3, 3))), "no 'pos'"),
    "nan.xyz": (lambda p: p.write_text("0 0 0\n1 nan 1\n"), "NaN or infinite .* first in row 2"),
    "huge.xyz": (lambda p: p.write_text("0 0 0\n1e39 0 0\n"), "NaN or infinite"),
    "ragged.txt": (lambda p: p.write_text("0 0 0\n1 1\n"), "row 2"),
    "binary.txt": (lambda p: p.write_bytes(b"\xff\xfe\x00garbage"), "cannot be read as TEXT"),
    "blank.txt": (lambda p: p.write_text("# nothing\n\n"), "no points"),
    "short.off": (lambda p: p.write_text("OFF\n10 0 0\n0 0 0\n"), "promises 10 vertices"),
    "counts.off": (lambda p: p.write_text("OFF\nfour 4 0\n"), "cannot be read as OFF"),
    "header.off": (lambda p: p.write_text("PLY\n1 0 0\n0 0 0\n"), "no OFF header"),
    "broken.ply": (lambda p: p.write_bytes(b"ply\nformat ascii 1.0\nelement vertex two\n"), "PLY"),
    "noxyz.ply": (
        lambda p: plyfile.PlyData(
            [plyfile.PlyElement.describe(np.zeros(2, dtype=[("x", "f4"), ("y", "f4")]), "vertex")]
        ).write(str(p)),
        r"lack the properties \['z'\]",
    ),
    "cloud.las": (lambda p: p.write_text("0 0 0\n"), "unsupported suffix"),
}


@pytest.mark.parametrize("name", sorted(BAD))
def test_every_bad_file_is_an_input_error_naming_it(tmp_path, name):
    write, message = BAD[name]
    write(tmp_path / name)
    with pytest.raises(InputError, match=message) as info:
        read_point_file(tmp_path / name)
    assert info.value.argument == "path" and str(tmp_path / name) in str(info.value)


def test_missing_files_and_folders(tmp_path):
    with pytest.raises(InputError, match="no such file"):
        read_point_file(tmp_path / "missing.ply")
    (tmp_path / "dir.ply").mkdir()
    with pytest.raises(InputError, match="not a file"):
        read_point_file(tmp_path / "dir.ply")
    file = read_point_file(_write_xyz(tmp_path / "a.xyz"))
    with pytest.raises(InputError, match="index"):
        write_point_file(file, tmp_path / "b.xyz", [0, 5])


def _write_xyz(path: Path) -> Path:
    path.write_text("0 0 0\n1 1 1\n")
    return path


@pytest.mark.parametrize(
    "text, message",
    [
        ("OFF\n4 0 0\n0 0 0\n1 0 0\n0 1 0\n0 0 1\n", "no faces"),
        ("OFF\n3 1 0\n0 0 0\n1 0 0\n0 1 0\n3 0 1 7\n", r"outside \[0, 3\)"),
        ("OFF\n3 1 0\n0 0 0\n1 0 0\n2 0 0\n3 0 1 2\n", "zero total area"),
    ],
)
def test_meshes_without_a_surface(tmp_path, text, message):
    (tmp_path / "m.off").write_text(text)
    with pytest.raises(InputError, match=message):
        read_off_mesh(tmp_path / "m.off")
    read_point_file(tmp_path / "m.off")  # the vertices alone are a good point file


def test_find_point_files_walks_folders_and_keeps_missing_paths(tmp_path):
    for name in ("b/x.ply", "a.npy", "b/.hidden/y.xyz", "notes.md", ".z.txt"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text("")
    found = find_point_files([tmp_path, tmp_path / "gone.off"])
    assert [rel.as_posix() for _, rel in found] == ["a.npy", "b/x.ply", "gone.off"]
