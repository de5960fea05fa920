r"""One reader and one writer per point-file format (PLY, OFF, XYZ/TXT, NPY, NPZ; HDF5 in the
ModelNet40 layout), keeping every per-point attribute so that a subset of the rows is written
back in the same format. Readers raise :class:`~tg_samplenet.ops.InputError` naming the file.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional, Union

import numpy as np
import torch
from torch import Tensor
from torch_geometric.data import Data
from torch_geometric.io.off import face_to_tri

from tg_samplenet.io import atomic_write
from tg_samplenet.ops.checks import InputError

PathLike = Union[str, os.PathLike]
#: The point-file formats by file suffix: PLY, OFF, NumPy (.npy, .npz) and text (.xyz, .txt).
FORMATS = dict(ply="ply", off="off", npy="npy", npz="npz", xyz="text", txt="text")
_COMMENT = ("#", "//")
_OFF_HEADER = re.compile(r"(ST)?C?N?4?n?OFF\s*(.*)")


@dataclass
class PointFile:
    r"""A point cloud read from a file: its :obj:`format` (a value of :obj:`FORMATS`), the
    finite float32 coordinates :obj:`pos` :obj:`[N, 3]` (:math:`N \ge 1`), the names of the
    other :obj:`attributes` of each row, the per-point records :obj:`rows` and what else the
    writer needs (:obj:`header`)."""

    path: Path
    format: str
    pos: np.ndarray
    attributes: list[str]
    rows: Any
    header: dict[str, Any] = field(default_factory=dict)

    @property
    def num_points(self) -> int:
        return self.pos.shape[0]


def find_point_files(inputs: Iterable[PathLike]) -> list[tuple[Path, Path]]:
    r"""Expands files and folders into :obj:`(file, relative name)` pairs: a file stands for
    itself (relative name: its name), a folder for the point files below it (relative to
    it, sorted; hidden files and other suffixes left out). Paths that do not exist are
    kept, so that reading them reports the error."""
    found = []
    for item in map(Path, inputs):
        if not item.is_dir():
            found.append((item, Path(item.name)))
            continue
        for path in sorted(item.rglob("*")):
            rel = path.relative_to(item)
            hidden = any(part.startswith(".") for part in rel.parts)
            if path.is_file() and not hidden and path.suffix.lower()[1:] in FORMATS:
                found.append((path, rel))
    return found


def read_point_file(path: PathLike, format: Optional[str] = None) -> PointFile:
    r"""Reads a point file, in the format of its suffix unless :obj:`format` is given.

    Raises:
        InputError: The file is missing or unreadable, has the wrong shape, no points, or
            non-finite coordinates.

    :rtype: :class:`PointFile`
    """
    path = Path(path)
    kind = format or FORMATS.get(path.suffix.lower()[1:])
    if kind not in _READERS:
        known = ", ".join(sorted(FORMATS))
        raise InputError("path", f"{path}: unsupported suffix {path.suffix!r} (use {known})")
    if not path.is_file():
        raise InputError("path", f"{path}: {'not a file' if path.exists() else 'no such file'}")
    try:
        file = _READERS[kind](path)
    except InputError:
        raise
    except Exception as error:  # each parser raises its own types for a corrupt file
        raise _unreadable(path, kind, error) from None
    _check_pos(file.pos, path)
    return file


def write_point_file(file: PointFile, path: PathLike, index: Optional[Any] = None):
    r"""Writes the rows :obj:`index` (all when :obj:`None`) of :obj:`file` to :obj:`path` in
    the file's format, atomically (:func:`~tg_samplenet.io.atomic_write`)."""
    index = np.arange(file.num_points) if index is None else np.asarray(index, dtype=np.int64)
    if index.ndim != 1 or (index.size and (index.min() < 0 or index.max() >= file.num_points)):
        raise InputError("index", f"index: rows out of range for {file.num_points} points")
    atomic_write(path, lambda f: _WRITERS[file.format](file, index, f))


def read_ply_points(path: PathLike) -> Tensor:
    r"""The vertex coordinates of a PLY file (ASCII or binary) as a float32 tensor
    :obj:`[N, 3]` (see :func:`read_point_file`)."""
    return torch.from_numpy(read_point_file(path, "ply").pos)


def read_off_mesh(path: PathLike) -> Data:
    r"""Reads a mesh from an OFF file: :obj:`Data(pos=[V, 3], face=[3, F])`, polygons split
    into triangles as :func:`torch_geometric.io.read_off` does.

    Raises:
        InputError: The file cannot be parsed or holds no valid mesh.
    """
    file = read_point_file(path, "off")
    pos, face = torch.from_numpy(file.pos), file.header["face"]
    if face.numel() == 0:
        raise InputError("path", f"{path} holds no faces to sample points from")
    if int(face.min()) < 0 or int(face.max()) >= pos.size(0):
        raise InputError(
            "path",
            f"{path} has faces that index vertices outside [0, {pos.size(0)}) "
            f"(found {int(face.min())} .. {int(face.max())})",
        )
    a, b, c = (pos[face[i]].double() for i in range(3))
    if not float(torch.linalg.cross(b - a, c - a).norm(dim=1).sum()) > 0:
        raise InputError("path", f"{path} has faces of zero total area: no surface to sample")
    return Data(pos=pos, face=face)


def read_h5_clouds(path: PathLike) -> tuple[Tensor, Tensor]:
    r"""Reads the clouds :obj:`data` :obj:`[N, P, 3]` and labels :obj:`label` (:obj:`[N, 1]`
    or :obj:`[N]`) of an HDF5 file in the :obj:`modelnet40_ply_hdf5_2048` layout.

    Raises:
        InputError: The file cannot be opened as HDF5, lacks :obj:`data` or :obj:`label`,
            or holds shapes or labels that do not fit.

    :rtype: (:class:`torch.Tensor` :obj:`[N, P, 3]` float32, :class:`torch.LongTensor`
        :obj:`[N]`)
    """
    import h5py

    try:
        with h5py.File(path, "r") as f:
            missing = [key for key in ("data", "label") if key not in f]
            if missing:
                raise InputError(
                    "path", f"{path} has no {missing[0]!r} dataset (found {sorted(f.keys())})"
                )
            data, label = np.asarray(f["data"]), np.asarray(f["label"])
    except InputError:
        raise
    except Exception as error:  # h5py says "file signature not found", without the path
        raise _unreadable(path, "hdf5", error) from None
    label = label.reshape(-1) if label.ndim == 2 and label.shape[1] == 1 else label
    problem = None
    if data.ndim != 3 or data.shape[2] != 3 or 0 in data.shape or data.dtype.kind not in "fiu":
        problem = f"'data' must hold clouds of numbers [N, P, 3] (got {data.shape}, {data.dtype})"
    elif label.dtype.kind not in "iu" or label.shape != data.shape[:1]:
        problem = (
            f"'label' must hold {len(data)} integers [N, 1] (got {label.shape}, {label.dtype})"
        )
    elif int(label.min()) < 0:
        problem = "'label' holds negative labels"
    if problem:
        raise InputError("path", f"{path}: {problem}")
    with np.errstate(over="ignore"):  # float32 overflow becomes inf, left to the loader
        pos = torch.from_numpy(np.ascontiguousarray(data, dtype=np.float32))
    return pos, torch.from_numpy(label.astype(np.int64))


def write_h5_clouds(path: PathLike, pos: Any, label: Any):
    r"""Writes clouds :obj:`pos` :obj:`[N, P, 3]` (float32) and labels :obj:`label`
    :obj:`[N]` (stored :obj:`[N, 1]` as in the paper's files) to an HDF5 file, atomically."""
    import h5py

    pos, label = np.asarray(pos, dtype=np.float32), np.asarray(label).reshape(-1, 1)
    if pos.ndim != 3 or pos.shape[2] != 3:
        raise InputError("pos", f"pos must have shape [N, P, 3] (got {list(pos.shape)})")
    if label.dtype.kind not in "iu" or label.shape[0] != pos.shape[0]:
        raise InputError("label", f"label must hold {pos.shape[0]} integers (got {label.shape})")

    def write(f):
        with h5py.File(f, "w") as h5:
            h5["data"], h5["label"] = pos, label

    atomic_write(path, write)


def _unreadable(path: PathLike, kind: str, error: Exception) -> InputError:
    message = str(error).strip().splitlines()[0] if str(error).strip() else ""
    reason = message if type(error) is ValueError else f"{type(error).__name__}: {message}"
    return InputError("path", f"{path} cannot be read as {kind.upper()}: {reason}")


def _check_pos(pos: np.ndarray, path: Path):
    if pos.ndim != 2 or pos.shape[1] != 3:
        raise InputError("path", f"{path}: expected [N, 3] coordinates (got {pos.shape})")
    if pos.shape[0] == 0:
        raise InputError("path", f"{path}: no points")
    bad = ~np.isfinite(pos).all(axis=1)
    if bad.any():
        raise InputError(
            "path",
            f"{path}: NaN or infinite coordinates (in float32) in {int(bad.sum())} of "
            f"{len(pos)} points, the first in row {int(np.flatnonzero(bad)[0]) + 1}",
        )


def _xyz(columns: list[np.ndarray]) -> np.ndarray:
    if any(c.dtype.kind not in "fiu" for c in columns):
        raise ValueError("x, y and z must be numbers")
    with np.errstate(over="ignore", invalid="ignore"):  # overflow becomes inf: reported
        return np.ascontiguousarray(np.stack(columns, axis=1), dtype=np.float32)


def _read_ply(path: Path) -> PointFile:
    from plyfile import PlyData

    ply = PlyData.read(str(path))
    if "vertex" not in ply:
        raise ValueError(f"no 'vertex' element (found {[el.name for el in ply.elements]})")
    vertex = ply["vertex"].data
    names = list(vertex.dtype.names or ())
    missing = [c for c in "xyz" if c not in names]
    if missing:
        raise ValueError(f"the vertices lack the properties {missing} (have {names})")
    pos = _xyz([vertex[c] for c in "xyz"])
    attributes = [n for n in names if n not in "xyz"]
    return PointFile(path, "ply", pos, attributes, vertex, {"ply": ply})


def _write_ply(file: PointFile, index: np.ndarray, f):
    from plyfile import PlyData, PlyElement

    ply = file.header["ply"]
    vertex = ply["vertex"]
    sampled = PlyElement.describe(
        file.rows[index],
        "vertex",
        comments=list(vertex.comments),
        len_types={p.name: p.len_dtype for p in vertex.properties if hasattr(p, "len_dtype")},
        val_types={p.name: p.val_dtype for p in vertex.properties},
    )
    keep = [el for el in ply.elements if el.name not in ("vertex", "face", "edge")]
    PlyData(
        [sampled, *keep],
        text=ply.text,
        byte_order=ply.byte_order,
        comments=list(ply.comments),
        obj_info=list(ply.obj_info),
    ).write(f)


def _read_npy(path: Path) -> PointFile:
    array = np.load(path, allow_pickle=False)
    if array.dtype.names is not None:
        if array.ndim != 1 or not set("xyz") <= set(array.dtype.names):
            raise ValueError("a structured array must be 1-D with fields x, y and z")
        pos = _xyz([array[c] for c in "xyz"])
        attributes = [n for n in array.dtype.names if n not in "xyz"]
    else:
        if array.ndim != 2 or array.shape[1] < 3:
            raise ValueError(f"expected an [N, C >= 3] array (got shape {array.shape})")
        pos = _xyz([array[:, 0], array[:, 1], array[:, 2]])
        attributes = [f"column {i}" for i in range(3, array.shape[1])]
    return PointFile(path, "npy", pos, attributes, array)


def _write_npy(file: PointFile, index: np.ndarray, f):
    np.save(f, file.rows[index], allow_pickle=False)


def _read_npz(path: Path) -> PointFile:
    with np.load(path, allow_pickle=False) as npz:
        arrays = {key: npz[key] for key in npz.files}
    key = next((k for k in ("pos", "points", "xyz") if k in arrays), None)
    if key is None:
        raise ValueError(f"no 'pos', 'points' or 'xyz' array (found {sorted(arrays)})")
    array = arrays[key]
    if array.ndim != 2 or array.shape[1] != 3:
        raise ValueError(f"{key!r} must have shape [N, 3] (got {array.shape})")
    per_point = [k for k, a in arrays.items() if a.ndim >= 1 and len(a) == len(array)]
    pos = _xyz([array[:, 0], array[:, 1], array[:, 2]])
    attributes = [k for k in per_point if k != key]
    return PointFile(path, "npz", pos, attributes, arrays, {"per_point": per_point})


def _write_npz(file: PointFile, index: np.ndarray, f):
    per_point = file.header["per_point"]
    np.savez(f, **{k: a[index] if k in per_point else a for k, a in file.rows.items()})


def _data_lines(lines: Iterable[str]) -> list[str]:
    stripped = (line.strip() for line in lines)
    return [line for line in stripped if line and not line.startswith(_COMMENT)]


def _parse_xyz(lines: list[str], delimiter: Optional[str]) -> np.ndarray:
    # Only the first three columns must be numbers (numpy's errors name the row); the others
    # are carried as text.
    xyz = np.loadtxt(lines, delimiter=delimiter, usecols=(0, 1, 2), ndmin=2)
    return _xyz([xyz[:, 0], xyz[:, 1], xyz[:, 2]])


def _is_number(token: str) -> bool:
    try:
        float(token)
        return True
    except ValueError:
        return False


def _read_text(path: Path) -> PointFile:
    lines = _data_lines(path.read_text(encoding="utf-8").splitlines())
    delimiter = "," if lines and "," in lines[0] else None
    header = []
    if lines and not all(_is_number(t) for t in lines[0].split(delimiter)[:3]):
        header, lines = lines[:1], lines[1:]  # a column-name line, e.g. "x y z r g b"
    if not lines:
        return PointFile(path, "text", np.zeros((0, 3), np.float32), [], [])
    pos = _parse_xyz(lines, delimiter)
    names = header[0].split(delimiter)[3:] if header else range(3, len(lines[0].split(delimiter)))
    attributes = [n.strip() if header else f"column {n}" for n in names]
    return PointFile(path, "text", pos, attributes, lines, {"lines": header})


def _write_lines(head: list[str], lines: list[str], index: np.ndarray, f):
    f.write("".join(f"{line}\n" for line in [*head, *(lines[i] for i in index)]).encode())


def _write_text(file: PointFile, index: np.ndarray, f):
    _write_lines(file.header["lines"], file.rows, index, f)


def _read_off(path: Path) -> PointFile:
    lines = _data_lines(path.read_text(encoding="utf-8").splitlines())
    match = _OFF_HEADER.fullmatch(lines[0]) if lines else None
    if match is None:
        raise ValueError(f"no OFF header (first line {(lines or [''])[0][:40]!r})")
    kind, rest, body = lines[0][: lines[0].index("OFF") + 3], match.group(2), lines[1:]
    if not rest and body:  # the counts on their own line (ModelNet glues them to "OFF")
        rest, body = body[0], body[1:]
    counts = rest.split()
    if len(counts) < 2 or not all(c.isdigit() for c in counts[:2]):
        raise ValueError(f"bad vertex and face counts {' '.join(counts)[:40]!r}")
    num_vertices, num_faces = int(counts[0]), int(counts[1])
    if len(body) < num_vertices + num_faces:
        raise ValueError(
            f"the header promises {num_vertices} vertices and {num_faces} faces, the file "
            f"has {len(body)} lines"
        )
    vertices, faces = body[:num_vertices], body[num_vertices : num_vertices + num_faces]
    pos = _parse_xyz(vertices, None) if vertices else np.zeros((0, 3), np.float32)
    # Each face line is its vertex count and indices, then optional colour columns.
    polygons = [line.split() for line in faces]
    face = face_to_tri([" ".join(p[: 1 + int(p[0])]) for p in polygons])
    face = face.view(3, -1) if face.numel() else torch.empty(3, 0, dtype=torch.long)
    width = len(vertices[0].split()) if vertices else 3
    attributes = [f"column {i}" for i in range(3, width)]
    return PointFile(path, "off", pos, attributes, vertices, {"kind": kind, "face": face})


def _write_off(file: PointFile, index: np.ndarray, f):
    # A subset of the vertices keeps no faces.
    _write_lines([file.header["kind"], f"{index.size} 0 0"], file.rows, index, f)


_READERS = dict(ply=_read_ply, off=_read_off, npy=_read_npy, npz=_read_npz, text=_read_text)
_WRITERS = dict(ply=_write_ply, off=_write_off, npy=_write_npy, npz=_write_npz, text=_write_text)
