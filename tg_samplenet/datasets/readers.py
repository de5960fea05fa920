r"""Readers for the point-cloud file formats of the data sets (HDF5, PLY, OFF) that reject a
bad file with its name and what is wrong with it, and :class:`BadFiles`, which lets a loader
read a whole folder and report every bad file at once (or skip them)."""

from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import Optional, TypeVar

import numpy as np
import torch
from torch import Tensor
from torch_geometric.data import Data

from tg_samplenet.ops.checks import InputError, check_choice

__all__ = [
    "BAD_FILE_ACTIONS",
    "BadFiles",
    "check_cloud",
    "finite_clouds",
    "read_h5_clouds",
    "read_off_mesh",
    "read_ply_points",
]

T = TypeVar("T")

BAD_FILE_ACTIONS = ("raise", "skip")


def _unreadable(path: str, what: str, error: Exception) -> InputError:
    # The parsers' own errors (h5py, plyfile, PyG's OFF parser) do not name the file.
    reason = f"{type(error).__name__}: {error}".splitlines()[0]
    return InputError("path", f"{path} cannot be read as {what}: {reason}")


def check_cloud(pos: Tensor, path: str, what: str = "the cloud") -> Tensor:
    r"""Checks that :obj:`pos` read from :obj:`path` is a non-empty :obj:`[P, 3]` cloud of
    finite coordinates, naming the file otherwise."""
    if pos.dim() != 2 or pos.size(1) != 3:
        raise InputError("path", f"{path}: {what} must have shape [P, 3] (got {list(pos.shape)})")
    if pos.size(0) == 0:
        raise InputError("path", f"{path}: no points in {what}")
    if not bool(torch.isfinite(pos).all()):
        raise InputError("path", f"{path}: NaN or infinite coordinates in {what}")
    return pos


def read_ply_points(path: str) -> Tensor:
    r"""Reads the vertex coordinates :obj:`x, y, z` of a PLY file (ASCII or binary) with
    :obj:`plyfile`.

    Raises:
        InputError: If the file cannot be parsed, has no vertices with :obj:`x, y, z`, or
            holds no points or non-finite coordinates; the message names the file.

    :rtype: :class:`torch.Tensor` of shape :obj:`[num_vertices, 3]`, :obj:`float32`
    """
    try:
        from plyfile import PlyData
    except ImportError as error:  # pragma: no cover - depends on the environment
        raise ImportError(
            "reading PLY files needs the 'plyfile' package: pip install plyfile"
        ) from error

    try:
        ply = PlyData.read(path)
    except (OSError, MemoryError):
        raise
    except Exception as error:  # plyfile raises several unrelated types for a corrupt file
        raise _unreadable(path, "PLY", error) from error
    if "vertex" not in ply:
        raise InputError("path", f"{path} has no 'vertex' element")
    vertex = ply["vertex"].data
    missing = [key for key in ("x", "y", "z") if key not in (vertex.dtype.names or ())]
    if missing:
        raise InputError("path", f"the vertices of {path} lack the properties {missing}")
    pos = np.stack([vertex["x"], vertex["y"], vertex["z"]], axis=1).astype(np.float32)
    return check_cloud(torch.from_numpy(pos), path, "its vertices")


def read_off_mesh(path: str) -> Data:
    r"""Reads a triangle mesh from an OFF file with :func:`torch_geometric.io.read_off`.

    Raises:
        InputError: If the header or body cannot be parsed, or the mesh has no vertices, no
            faces, non-finite vertices, faces that index missing vertices or faces of zero
            total area; the message names the file.

    :rtype: :class:`torch_geometric.data.Data` with :obj:`pos` :obj:`[V, 3]` and :obj:`face`
        :obj:`[3, F]`
    """
    from torch_geometric.io import read_off

    try:
        mesh = read_off(path)
    except (OSError, MemoryError):
        raise
    except Exception as error:  # the parser fails with ValueError, IndexError, ...
        raise _unreadable(path, "OFF", error) from error
    check_cloud(mesh.pos, path, "its vertices")
    face = mesh.face
    if face is None or face.numel() == 0:
        raise InputError("path", f"{path} holds no faces to sample points from")
    if int(face.min()) < 0 or int(face.max()) >= mesh.pos.size(0):
        raise InputError(
            "path",
            f"{path} has faces that index vertices outside [0, {mesh.pos.size(0)}) "
            f"(found {int(face.min())} .. {int(face.max())})",
        )
    a, b, c = (mesh.pos[face[i]].double() for i in range(3))
    if not float(torch.linalg.cross(b - a, c - a).norm(dim=1).sum()) > 0:
        raise InputError(
            "path", f"{path} has faces of zero total area: no surface to sample points from"
        )
    return mesh


def read_h5_clouds(path: str) -> tuple[Tensor, Tensor]:
    r"""Reads the clouds :obj:`data` :obj:`[N, P, 3]` and labels :obj:`label` :obj:`[N, 1]`
    or :obj:`[N]` of an HDF5 file in the :obj:`modelnet40_ply_hdf5_2048` layout. Clouds with
    non-finite coordinates are returned as they are: see :func:`finite_clouds`.

    Raises:
        InputError: If the file cannot be opened as HDF5, lacks :obj:`data` or :obj:`label`,
            or holds shapes or labels that do not fit; the message names the file.

    :rtype: (:class:`torch.Tensor` :obj:`[N, P, 3]` float32, :class:`torch.LongTensor`
        :obj:`[N]`)
    """
    import h5py

    try:
        with h5py.File(path, "r") as f:
            for key in ("data", "label"):
                if key not in f:
                    raise InputError(
                        "path", f"{path} has no {key!r} dataset (found {sorted(f.keys())})"
                    )
            data, label = np.asarray(f["data"]), np.asarray(f["label"])
    except InputError:
        raise
    except (OSError, ValueError, TypeError, KeyError, RuntimeError) as error:
        # h5py reports a corrupt header as "file signature not found", without the path.
        raise _unreadable(path, "HDF5", error) from error
    if data.ndim != 3 or data.shape[2] != 3:
        raise InputError(
            "path", f"'data' in {path} must have shape [N, P, 3] (got {list(data.shape)})"
        )
    if data.shape[0] == 0:
        raise InputError("path", f"'data' in {path} holds no clouds")
    if data.shape[1] == 0:
        raise InputError("path", f"'data' in {path} holds clouds of zero points")
    if not np.issubdtype(data.dtype, np.number) or np.issubdtype(data.dtype, np.complexfloating):
        raise InputError("path", f"'data' in {path} must hold real numbers (got {data.dtype})")
    if not np.issubdtype(label.dtype, np.integer):
        raise InputError("path", f"'label' in {path} must hold integers (got {label.dtype})")
    label = label.reshape(-1)
    if label.shape[0] != data.shape[0]:
        raise InputError(
            "path",
            f"{path} holds {data.shape[0]} clouds but {label.shape[0]} labels "
            "('label' must have shape [N, 1] or [N])",
        )
    if label.size > 0 and int(label.min()) < 0:
        raise InputError("path", f"{path} holds negative labels")
    pos = torch.from_numpy(np.ascontiguousarray(data, dtype=np.float32))
    return pos, torch.from_numpy(label.astype(np.int64))


def finite_clouds(pos: Tensor) -> Tensor:
    r"""Which clouds of :obj:`pos` :obj:`[N, P, 3]` hold only finite coordinates.

    :rtype: :class:`torch.BoolTensor` of shape :obj:`[N]`
    """
    return torch.isfinite(pos).flatten(1).all(1)


class BadFiles:
    r"""Collects the problems of the files a loader reads, so that one pass over a folder
    reports every bad file instead of stopping at the first.

    Args:
        on_bad_file (str): :obj:`"raise"` raises one :class:`InputError` (for the argument
            :obj:`root`) naming every bad file (and why) once all files were read;
            :obj:`"skip"` leaves the bad files (or clouds) out and warns once per file.
        what (str): What the files make up, for the message.
    """

    def __init__(self, on_bad_file: str, what: str):
        self.on_bad_file = check_choice(on_bad_file, "on_bad_file", BAD_FILE_ACTIONS)
        self.what = what
        self.problems: list[str] = []

    def add(self, problem: str):
        r"""Records one problem (a message that names its file)."""
        self.problems.append(problem)

    def attempt(self, read: Callable[[], T]) -> Optional[T]:
        r"""Returns :obj:`read()`, or :obj:`None` after recording its :class:`InputError`."""
        try:
            return read()
        except InputError as error:
            self.add(str(error))
            return None

    def report(self):
        r"""Raises (or warns about) what was recorded; nothing when every file was good."""
        if not self.problems:
            return
        if self.on_bad_file == "skip":
            for problem in self.problems:
                warnings.warn(f"{self.what}: skipped {problem}", stacklevel=3)
            return
        if len(self.problems) == 1:
            raise InputError("root", self.problems[0])
        listed = "\n".join(f"  - {problem}" for problem in self.problems)
        raise InputError(
            "root",
            f"{len(self.problems)} bad files in {self.what} (pass on_bad_file='skip' to leave "
            f"them out):\n{listed}",
        )
