r"""Atomic checkpoints: a crash while writing never replaces a good file with a partial one."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any, Union

import torch

__all__ = ["atomic_save", "load_checkpoint"]


def atomic_save(obj: Any, path: Union[str, os.PathLike]):
    r"""Saves :obj:`obj` with :func:`torch.save` to a temporary file beside :obj:`path`, then
    renames it over :obj:`path` (:func:`os.replace` is atomic on POSIX and Windows)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(obj, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def load_checkpoint(path: Union[str, os.PathLike], map_location: Any = "cpu") -> Any:
    r"""Loads a file written by :func:`atomic_save` (tensors, containers and plain Python
    values only: :obj:`weights_only=True`)."""
    return torch.load(path, map_location=map_location, weights_only=True)
