r"""Users' point-cloud files: PLY, OFF, NPY and XYZ/TXT, read with every per-point attribute and
written back as a subset of their rows.

A sampler selects rows; everything else a file holds for a point (normals, colours, labels,
any PLY vertex property, extra columns) travels with the row:

- **PLY** through :mod:`plyfile`: the vertex element keeps all its properties, their types,
  the file's encoding (ASCII or binary, byte order), comments and other elements that are
  not per-vertex (faces are dropped: they index vertices that are no longer there).
- **NPY** through :mod:`numpy`: an :obj:`[N, C]` array (:math:`C \ge 3`, :obj:`x, y, z`
  first) or a structured array with :obj:`x`, :obj:`y`, :obj:`z` fields; the dtype is kept.
- **XYZ/TXT** (whitespace or comma separated, :obj:`#` comments, an optional column-name
  line) and **OFF** (also :obj:`COFF`, :obj:`NOFF`, :obj:`CNOFF`, and the ModelNet variant
  with the counts glued to :obj:`OFF`): :func:`numpy.loadtxt` parses the coordinates and the
  selected vertex lines are written verbatim, so every column keeps its exact text.
  (:func:`torch_geometric.io.read_off` rejects the coloured and normal variants and
  :func:`~torch_geometric.io.write_off` rounds to float32 and requires faces.)
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Optional, Union

import numpy as np

from tg_samplenet.io import atomic_write

__all__ = [
    "FORMATS",
    "PointFile",
    "PointFileError",
    "find_point_files",
    "read_point_file",
    "write_point_subset",
]

# File suffix -> format name.
FORMATS = {".ply": "ply", ".off": "off", ".npy": "npy", ".xyz": "text", ".txt": "text"}
_COMMENT = ("#", "//")


class PointFileError(ValueError):
    r"""A point file that cannot be read or written; the message names the file."""

    def __init__(self, path: Union[str, os.PathLike], reason: str):
        super().__init__(f"{path}: {reason}")
        self.path = Path(path)
        self.reason = reason


@dataclass
class PointFile:
    r"""A point cloud read from a file, with what is needed to write a subset of its rows.

    Attributes:
        path (pathlib.Path): The file.
        format (str): :obj:`"ply"`, :obj:`"off"`, :obj:`"npy"` or :obj:`"text"`.
        pos (numpy.ndarray): :obj:`[N, 3]` float32 coordinates (finite, :math:`N \ge 1`).
        attributes (list of str): What else each row holds (property names or column
            numbers), carried through :func:`write_point_subset`.
        rows (Any): The per-point records: a structured array (PLY), the array (NPY) or
            the vertex lines (text, OFF).
        header (dict): Format details needed to write the file back.
    """

    path: Path
    format: str
    pos: np.ndarray
    attributes: list[str]
    rows: Any
    header: dict[str, Any] = field(default_factory=dict)

    @property
    def num_points(self) -> int:
        return self.pos.shape[0]


def find_point_files(inputs: Iterable[Union[str, os.PathLike]]) -> list[tuple[Path, Path]]:
    r"""Expands files and folders into :obj:`(file, relative name)` pairs: a file stands
    for itself (relative name: its name), a folder for the point files below it (relative
    to the folder, sorted; hidden files and other suffixes skipped). Paths that do not
    exist are returned too, so that reading them reports the error."""
    found = []
    for item in map(Path, inputs):
        if item.is_dir():
            for path in sorted(item.rglob("*")):
                rel = path.relative_to(item)
                hidden = any(part.startswith(".") for part in rel.parts)
                if path.is_file() and not hidden and path.suffix.lower() in FORMATS:
                    found.append((path, rel))
        else:
            found.append((item, Path(item.name)))
    return found


def read_point_file(path: Union[str, os.PathLike]) -> PointFile:
    r"""Reads a PLY, OFF, NPY or XYZ/TXT file (by suffix).

    Raises:
        PointFileError: The file is missing, unreadable, has the wrong shape, no points,
            or coordinates that are not finite in float32; the message names the file.
    """
    path = Path(path)
    kind = FORMATS.get(path.suffix.lower())
    if kind is None:
        known = ", ".join(sorted(FORMATS))
        raise PointFileError(path, f"unsupported suffix {path.suffix!r} (expected one of {known})")
    if not path.exists():
        raise PointFileError(path, "no such file")
    if not path.is_file():
        raise PointFileError(path, "not a regular file")
    try:
        file = _READERS[kind](path)
    except PointFileError:
        raise
    except Exception as error:  # each library raises its own types for a corrupt file
        reason = f"{type(error).__name__}: {str(error).strip()}".splitlines()[0]
        raise PointFileError(path, f"cannot read it as {kind.upper()}: {reason}") from None
    _check_pos(file)
    return file


def write_point_subset(file: PointFile, index: np.ndarray, path: Union[str, os.PathLike]):
    r"""Writes the rows :obj:`index` of :obj:`file` to :obj:`path` in the file's format,
    atomically (see :func:`~tg_samplenet.io.atomic_write`)."""
    index = np.asarray(index, dtype=np.int64)
    if index.ndim != 1 or (index.size and (index.min() < 0 or index.max() >= file.num_points)):
        raise PointFileError(path, f"row index out of range for {file.num_points} points")
    atomic_write(path, lambda f: _WRITERS[file.format](file, index, f))


def _check_pos(file: PointFile):
    pos = file.pos
    if pos.ndim != 2 or pos.shape[1] != 3:
        raise PointFileError(file.path, f"expected [N, 3] coordinates, got shape {pos.shape}")
    if pos.shape[0] == 0:
        raise PointFileError(file.path, "has no points")
    bad = ~np.isfinite(pos).all(axis=1)
    if bad.any():
        row = int(np.flatnonzero(bad)[0])
        raise PointFileError(
            file.path,
            f"{int(bad.sum())} of {pos.shape[0]} points have NaN, infinite or "
            f"float32-overflowing coordinates (first: point row {row + 1})",
        )


def _as_pos(xyz: np.ndarray) -> np.ndarray:
    with np.errstate(over="ignore", invalid="ignore"):  # overflow becomes inf: reported
        return np.ascontiguousarray(xyz, dtype=np.float32)


# PLY ---------------------------------------------------------------------------------------


def _plyfile(path: Path):
    try:
        import plyfile
    except ImportError:  # an extra: pip install "tg_samplenet[data]"
        raise PointFileError(path, "PLY needs the plyfile package (pip install plyfile)") from None
    return plyfile


def _read_ply(path: Path) -> PointFile:
    ply = _plyfile(path).PlyData.read(str(path))
    names = [el.name for el in ply.elements]
    if "vertex" not in names:
        raise PointFileError(path, f"PLY has no 'vertex' element (elements: {names})")
    vertex = ply["vertex"]
    props = [p.name for p in vertex.properties]
    missing = [c for c in "xyz" if c not in props]
    if missing:
        raise PointFileError(path, f"PLY vertices lack properties {missing} (have {props})")
    data = vertex.data
    for c in "xyz":
        if data.dtype[c].kind not in "fiu":
            raise PointFileError(path, f"PLY property {c!r} is not numeric")
    pos = _as_pos(np.stack([data["x"], data["y"], data["z"]], axis=1))
    return PointFile(
        path, "ply", pos, [p for p in props if p not in "xyz"], data, header={"ply": ply}
    )


def _write_ply(file: PointFile, index: np.ndarray, f):
    plyfile = _plyfile(file.path)
    PlyData, PlyElement = plyfile.PlyData, plyfile.PlyElement
    ply = file.header["ply"]
    vertex = ply["vertex"]
    sampled = PlyElement.describe(
        file.rows[index],
        "vertex",
        comments=list(vertex.comments),
        len_types={p.name: p.len_dtype for p in vertex.properties if hasattr(p, "len_dtype")},
        val_types={p.name: p.val_dtype for p in vertex.properties},
    )
    # Faces and edges index the old vertices; other elements (e.g. camera) stay.
    keep = [el for el in ply.elements if el.name not in ("vertex", "face", "edge")]
    PlyData(
        [sampled, *keep],
        text=ply.text,
        byte_order=ply.byte_order,
        comments=list(ply.comments),
        obj_info=list(ply.obj_info),
    ).write(f)


# NPY ---------------------------------------------------------------------------------------


def _read_npy(path: Path) -> PointFile:
    array = np.load(path, allow_pickle=False)
    if array.dtype.names is not None:
        missing = [c for c in "xyz" if c not in array.dtype.names]
        if array.ndim != 1 or missing:
            raise PointFileError(
                path, f"structured NPY must be 1-D with fields x, y, z (missing {missing})"
            )
        pos = np.stack([array["x"], array["y"], array["z"]], axis=1)
        attributes = [n for n in array.dtype.names if n not in "xyz"]
    else:
        if array.ndim != 2 or array.shape[1] < 3:
            raise PointFileError(path, f"expected an [N, C >= 3] array, got shape {array.shape}")
        if array.dtype.kind not in "fiu":
            raise PointFileError(path, f"expected a numeric array, got dtype {array.dtype}")
        pos = array[:, :3]
        attributes = [f"column {i}" for i in range(3, array.shape[1])]
    return PointFile(path, "npy", _as_pos(pos), attributes, array)


def _write_npy(file: PointFile, index: np.ndarray, f):
    np.save(f, file.rows[index], allow_pickle=False)


# XYZ / TXT and OFF: coordinates parsed by numpy, vertex lines written verbatim ---------------


def _data_lines(lines: Iterable[str]) -> list[str]:
    r"""The lines that are neither blank nor comments, without their line ends."""
    out = []
    for line in lines:
        text = line.strip()
        if text and not text.startswith(_COMMENT):
            out.append(text)
    return out


def _parse_xyz(lines: list[str], delimiter: Optional[str], path: Path) -> np.ndarray:
    r"""The first three columns of :obj:`lines` as :obj:`[N, 3]` (only they must be numbers:
    other columns are carried as text)."""
    try:
        return np.loadtxt(lines, delimiter=delimiter, usecols=(0, 1, 2), ndmin=2)
    except (ValueError, IndexError):
        for row, line in enumerate(lines):  # the error path only: name the bad row
            tokens = line.split(delimiter)[:3]
            if len(tokens) < 3 or not all(_is_number(t) for t in tokens):
                raise PointFileError(
                    path, f"point row {row + 1} is not 'x y z ...': {line[:60]!r}"
                ) from None
        raise


def _is_number(token: str) -> bool:
    try:
        float(token)
        return True
    except ValueError:
        return False


def _read_text(path: Path) -> PointFile:
    with open(path, encoding="utf-8", errors="strict") as f:
        raw = f.read().splitlines()
    lines = _data_lines(raw)
    if not lines:
        raise PointFileError(path, "has no points")
    delimiter = "," if "," in lines[0] else None
    first = lines[0].split(delimiter)
    header = []
    if not all(_is_number(t) for t in first[:3]):  # a column-name line, e.g. "x y z r g b"
        header, lines = [lines[0]], lines[1:]
        if not lines:
            raise PointFileError(path, "has no points")
    width = len(lines[0].split(delimiter))
    if width < 3:
        raise PointFileError(path, f"expected at least 3 columns (x y z), got {width}")
    pos = _as_pos(_parse_xyz(lines, delimiter, path))
    names = header[0].split(delimiter)[3:] if header else range(3, width)
    attributes = [n.strip() if header else f"column {n}" for n in names]
    return PointFile(path, "text", pos, attributes, lines, header={"lines": header})


def _write_lines(head: list[str], lines: list[str], index: np.ndarray, f):
    body = "\n".join(lines[i] for i in index.tolist())
    f.write(("\n".join([*head, body]) + "\n").encode("utf-8"))


def _write_text(file: PointFile, index: np.ndarray, f):
    _write_lines(file.header["lines"], file.rows, index, f)


_OFF_HEADER = re.compile(r"(ST)?(C)?(N)?OFF\s*(.*)")


def _read_off(path: Path) -> PointFile:
    with open(path, encoding="utf-8", errors="strict") as f:
        lines = _data_lines(f)
    if not lines:
        raise PointFileError(path, "is empty")
    match = _OFF_HEADER.fullmatch(lines[0])
    if match is None:
        raise PointFileError(path, f"not an OFF file (first line {lines[0][:40]!r})")
    kind = lines[0][: lines[0].index("OFF") + 3]
    rest, body = match.group(4), lines[1:]
    if not rest:  # counts on their own line (ModelNet glues them to "OFF")
        if not body:
            raise PointFileError(path, "OFF header has no vertex/face counts")
        rest, body = body[0], body[1:]
    counts = rest.split()
    if len(counts) < 2 or not all(c.isdigit() for c in counts[:2]):
        raise PointFileError(path, f"bad OFF counts line {rest[:40]!r}")
    num_vertices = int(counts[0])
    if num_vertices == 0:
        raise PointFileError(path, "has no points")
    if len(body) < num_vertices:
        raise PointFileError(
            path, f"OFF header promises {num_vertices} vertices, file has {len(body)} lines"
        )
    vertices = body[:num_vertices]
    pos = _as_pos(_parse_xyz(vertices, None, path))
    width = len(vertices[0].split())
    attributes = [f"column {i}" for i in range(3, width)]
    return PointFile(path, "off", pos, attributes, vertices, header={"kind": kind})


def _write_off(file: PointFile, index: np.ndarray, f):
    # A sample of the vertices has no faces.
    _write_lines([file.header["kind"], f"{index.size} 0 0"], file.rows, index, f)


_READERS: dict[str, Callable[[Path], PointFile]] = {
    "ply": _read_ply,
    "npy": _read_npy,
    "text": _read_text,
    "off": _read_off,
}
_WRITERS: dict[str, Callable[[PointFile, np.ndarray, Any], None]] = {
    "ply": _write_ply,
    "npy": _write_npy,
    "text": _write_text,
    "off": _write_off,
}
