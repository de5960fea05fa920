r"""Atomic checkpoints, and reading them with errors that name the file."""

from __future__ import annotations

import os
import pickle
import struct
import tempfile
import zipfile
from contextlib import contextmanager
from pathlib import Path
from typing import Any, BinaryIO, Callable, Iterator, Union

import torch

from tg_samplenet.ops.checks import InputError, InputTypeError

__all__ = ["atomic_path", "atomic_write", "atomic_save", "load_checkpoint"]

# What torch.load raises on truncated archives, foreign pickles and disallowed types.
_UNREADABLE = (
    EOFError, RuntimeError, pickle.UnpicklingError, zipfile.BadZipFile, ValueError, KeyError,
    AttributeError, ImportError, IndexError, TypeError, UnicodeDecodeError, OSError,
    struct.error,
)  # fmt: skip


def _check_path(path: Any) -> Path:
    if not isinstance(path, (str, os.PathLike)):
        raise InputTypeError(
            "path", f"path must be a str or os.PathLike (got {type(path).__name__})"
        )
    return Path(path)


@contextmanager
def atomic_path(path: Union[str, os.PathLike]) -> Iterator[str]:
    r"""A temporary file beside :obj:`path` for a writer that takes a file name; renamed
    over :obj:`path` when the block ends (atomic), removed if it raises: a failure never
    leaves a partial file.

    .. code-block:: python

        with atomic_path("cache.pt") as tmp:
            InMemoryDataset.save(data_list, tmp)

    Args:
        path (str or os.PathLike): The file to write; missing parent folders are made.
    """
    path = _check_path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        yield tmp
        fd = os.open(tmp, os.O_RDWR)  # on disk before it takes the name
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write(path: Union[str, os.PathLike], write: Callable[[BinaryIO], None]):
    r"""Calls :obj:`write(f)` on a temporary file beside :obj:`path`, then renames it over
    :obj:`path` (atomic, see :func:`atomic_path`).

    Args:
        path (str or os.PathLike): The file to write; missing parent folders are made.
        write (callable): Writes the whole content to the open binary file it is given.
    """
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        write(f)


def atomic_save(obj: Any, path: Union[str, os.PathLike]):
    r"""Saves :obj:`obj` with :func:`torch.save` atomically (see :func:`atomic_write`)."""
    atomic_write(path, lambda f: torch.save(obj, f))


def load_checkpoint(path: Union[str, os.PathLike], map_location: Any = "cpu") -> Any:
    r"""Loads a file written by :func:`atomic_save` (tensors, containers and plain Python
    values only: :obj:`weights_only=True`).

    Raises:
        FileNotFoundError: If :obj:`path` does not exist or is not a file.
        InputError: If the file is empty, truncated, or not a :func:`torch.save` file of
            plain values.
    """
    path = _check_path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such checkpoint file")
    if path.stat().st_size == 0:
        raise InputError("path", f"{path} is empty: not a checkpoint written by torch.save")
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except _UNREADABLE as error:  # many types, none naming the file
        reason = f"{type(error).__name__}: {error}".splitlines()[0]
        raise InputError(
            "path",
            f"{path} is not a readable checkpoint (truncated, corrupt, or not written by "
            f"torch.save with plain values): {reason}",
        ) from error
