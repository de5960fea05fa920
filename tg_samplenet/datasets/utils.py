r"""What the data sets share: argument checks, cache-file tags, processed files written
atomically (:class:`AtomicSave`), and :class:`BadFiles`, which lets a loader read a whole
folder and report every bad file at once (or skip them)."""

from __future__ import annotations

import hashlib
import os
import os.path as osp
import warnings
from collections.abc import Callable, Sequence
from typing import Any, Optional, TypeVar

from torch import Tensor

from tg_samplenet.io import atomic_path
from tg_samplenet.ops.checks import (
    InputError,
    InputTypeError,
    check_choice,
    check_int,
    check_positive_int,
)

T = TypeVar("T")


class AtomicSave:
    r"""Writes an :class:`~torch_geometric.data.InMemoryDataset`'s processed files beside
    their place and renames them into it, so that another process loading the same root
    meanwhile (several runs, or torchrun ranks) and a rerun after a crash never read a
    partial file: they find the whole file or none, and then process the data themselves."""

    @classmethod
    def save(cls, data_list: Sequence[Any], path: str) -> None:
        with atomic_path(path) as tmp:
            super().save(data_list, tmp)  # type: ignore[misc]


class BadFiles:
    r"""Collects the problems of the files a loader reads, to report them all at once.

    Args:
        on_bad_file (str): :obj:`"raise"` raises one :class:`InputError` (argument
            :obj:`root`) naming every bad file once all were read; :obj:`"skip"` leaves them
            out with one warning each.
        what (str): What the files make up, for the messages.
    """

    def __init__(self, on_bad_file: str, what: str):
        self.on_bad_file = check_choice(on_bad_file, "on_bad_file", ("raise", "skip"))
        self.what = what
        self.problems: list[str] = []

    def attempt(self, read: Callable[[], T]) -> Optional[T]:
        r"""Returns :obj:`read()`, or :obj:`None` after recording its :class:`InputError`."""
        try:
            return read()
        except InputError as error:
            self.problems.append(str(error))
            return None

    def report(self) -> int:
        r"""Raises (or warns about, then forgets) what was recorded; returns the number of
        problems skipped (nothing happens when every file was good)."""
        if self.on_bad_file == "skip":
            for problem in self.problems:
                warnings.warn(f"{self.what}: skipped {problem}", stacklevel=3)
            skipped, self.problems = len(self.problems), []
            return skipped
        if len(self.problems) == 1:
            raise InputError("root", self.problems[0])
        if self.problems:
            listed = "\n".join(f"  - {problem}" for problem in self.problems)
            raise InputError(
                "root",
                f"{len(self.problems)} bad files in {self.what} (pass on_bad_file='skip' to "
                f"leave them out):\n{listed}",
            )
        return 0


def check_root(root: Any, what: str) -> str:
    r"""Checks that :obj:`root` names an existing folder and returns it expanded."""
    if root is None:
        raise InputError("root", f"root: {what} needs a data root folder (got root=None)")
    if not isinstance(root, (str, os.PathLike)):
        raise InputTypeError("root", f"root must be a str (got {type(root).__name__})")
    root = osp.expanduser(os.fspath(root))
    if not osp.isdir(root):
        raise FileNotFoundError(f"{what}: the data root {root!r} is not a folder")
    return root


def check_file_loader(
    what: str,
    root: Any,
    split: str,
    splits: Sequence[str],
    num_points: Optional[int],
    on_bad_file: str,
    allow_all_points: bool = True,
) -> tuple[str, str, Optional[int], BadFiles]:
    r"""The checks every loader of files starts with: :obj:`on_bad_file`, :obj:`root`,
    :obj:`split` (one of :obj:`splits`) and :obj:`num_points` (a positive int, or
    :obj:`None` where :obj:`allow_all_points`).

    :rtype: :obj:`(root, split, num_points, bad_files)`
    """
    bad_files = BadFiles(on_bad_file, what)
    root = check_root(root, what)
    split = check_split(split, splits, what)
    if num_points is not None or not allow_all_points:
        check_positive_int(num_points, "num_points")
    return root, split, num_points, bad_files


def check_split(split: str, allowed: Sequence[str], what: str) -> str:
    r"""Checks that :obj:`split` is one of :obj:`allowed`."""
    if not isinstance(split, str) or split not in allowed:
        raise InputError("split", f"split: {what} has the splits {list(allowed)} (got {split!r})")
    return split


def check_names(names: Optional[Sequence[str]], argument: str) -> Optional[list[str]]:
    r"""Checks an optional, non-empty sequence of distinct names (not a single str)."""
    if names is None:
        return None
    if isinstance(names, str) or not hasattr(names, "__iter__"):
        raise InputTypeError(argument, f"{argument} must be a sequence of names (got {names!r})")
    names = list(names)
    if not all(isinstance(name, str) for name in names):
        raise InputTypeError(argument, f"{argument} must hold str names (got {names!r})")
    if not names or len(set(names)) != len(names):
        raise InputError(
            argument, f"{argument} must name at least one class and contain no duplicates ({names})"
        )
    return names


def first_points(pos: Tensor, num_points: Optional[int], path: str) -> Tensor:
    r"""The first :obj:`num_points` points (all for :obj:`None`) of the clouds :obj:`pos`
    (:obj:`[..., P, 3]`) read from :obj:`path`, as the paper's code keeps them."""
    if num_points is not None and num_points > pos.size(-2):
        message = f"num_points={num_points} but {path} stores only {pos.size(-2)} points"
        raise InputError("num_points", message)
    return pos[..., :num_points, :]


def check_seed(seed: int) -> int:
    r"""Checks a random seed: a non-negative int."""
    return check_int(seed, "seed", minimum=0)


def selection_tag(names: Optional[Sequence[str]]) -> str:
    r"""A short, file-name-safe tag of an ordered class selection (:obj:`"all"` for
    :obj:`None`), so that each selection caches to its own file."""
    if names is None:
        return "all"
    return hashlib.sha1(",".join(names).encode()).hexdigest()[:10]
