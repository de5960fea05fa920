r"""Argument checks and cache-file naming shared by the data sets."""

from __future__ import annotations

import hashlib
import os
import os.path as osp
from collections.abc import Sequence
from typing import Optional

from tg_samplenet.datasets.readers import BadFiles
from tg_samplenet.ops.checks import (
    InputError,
    InputTypeError,
    check_int,
    check_positive_int,
)

__all__ = [
    "check_file_loader",
    "check_root",
    "check_split",
    "check_num_points",
    "check_names",
    "check_seed",
    "selection_tag",
]


def check_root(root: Optional[str], what: str) -> str:
    r"""Checks that :obj:`root` names an existing folder and returns it expanded."""
    if root is None:
        raise InputError("root", f"root: {what} needs a data root folder (got root=None)")
    if isinstance(root, os.PathLike):
        root = os.fspath(root)
    if not isinstance(root, str):
        raise InputTypeError("root", f"root must be a str (got {type(root).__name__})")
    root = osp.expanduser(root)
    if not osp.isdir(root):
        raise FileNotFoundError(f"{what}: the data root {root!r} is not a folder")
    return root


def check_file_loader(
    what: str,
    root: Optional[str],
    split: str,
    splits: Sequence[str],
    num_points: Optional[int],
    on_bad_file: str,
    allow_all_points: bool = True,
) -> tuple[str, str, Optional[int], BadFiles]:
    r"""The checks every loader of files on disk starts with, in this order:
    :obj:`on_bad_file`, :obj:`root` (see :func:`check_root`), :obj:`split` (one of
    :obj:`splits`) and :obj:`num_points` (:obj:`None` where :obj:`allow_all_points`).

    :rtype: :obj:`(root, split, num_points, bad_files)`
    """
    bad_files = BadFiles(on_bad_file, what)
    root = check_root(root, what)
    split = check_split(split, splits, what)
    return root, split, check_num_points(num_points, allow_all_points), bad_files


def check_split(split: str, allowed: Sequence[str], what: str) -> str:
    r"""Checks that :obj:`split` is one of :obj:`allowed`."""
    if not isinstance(split, str) or split not in allowed:
        raise InputError("split", f"split: {what} has the splits {list(allowed)} (got {split!r})")
    return split


def check_num_points(num_points: Optional[int], allow_none: bool) -> Optional[int]:
    r"""Checks a number of points per cloud: a positive int, or :obj:`None` (all points)
    where :obj:`allow_none`."""
    if num_points is None and allow_none:
        return None
    check_positive_int(num_points, "num_points")
    return num_points


def check_names(names: Optional[Sequence[str]], argument: str) -> Optional[list[str]]:
    r"""Checks an optional, non-empty sequence of distinct names (not a single str)."""
    if names is None:
        return None
    if isinstance(names, str) or not hasattr(names, "__iter__"):
        raise InputTypeError(
            argument,
            f"{argument} must be a sequence of names, not {type(names).__name__} (got {names!r})",
        )
    names = list(names)
    if len(names) == 0:
        raise InputError(argument, f"{argument} must name at least one class")
    if not all(isinstance(name, str) for name in names):
        raise InputTypeError(argument, f"{argument} must hold str names (got {names!r})")
    if len(set(names)) != len(names):
        raise InputError(argument, f"{argument} contains duplicates: {names}")
    return names


def check_seed(seed: int) -> int:
    r"""Checks a random seed: a non-negative int."""
    return check_int(seed, "seed", minimum=0)


def selection_tag(names: Optional[Sequence[str]]) -> str:
    r"""A short, file-name-safe tag for an ordered class selection (:obj:`"all"` for
    :obj:`None`), so that each selection caches to its own file."""
    if names is None:
        return "all"
    return hashlib.sha1(",".join(names).encode()).hexdigest()[:10]
