r"""The argument checks every public function runs at its entry. A failed check raises
:class:`InputError` (or :class:`InputTypeError` for a wrong type) naming the argument; checks
that read values cost one host sync on CUDA and are skipped while :func:`torch.compile` traces.
"""

from __future__ import annotations

import math
import numbers
from typing import Any, Optional

import torch
from torch import Tensor

__all__ = [
    "InputError",
    "InputTypeError",
    "check_bool",
    "check_choice",
    "check_cloud_batch",
    "check_index",
    "check_index_vector",
    "check_int",
    "check_like",
    "check_counts",
    "check_number",
    "check_points",
    "check_positive_int",
    "check_ratio",
    "check_same_device",
    "readable",
]

_INTEGER_DTYPES = (torch.int8, torch.int16, torch.int32, torch.int64, torch.uint8)


class InputError(ValueError):
    r"""Bad input to a public function of :obj:`tg_samplenet`: :attr:`argument` holds the
    name of the bad argument, which the message names too (a file by its path)."""

    def __init__(self, argument: str, message: str):
        super().__init__(message)
        self.argument = argument

    def __reduce__(self):  # picklable, e.g. from a DataLoader worker
        return type(self), (self.argument, str(self))


class InputTypeError(InputError, TypeError):
    r"""An :class:`InputError` for an argument of the wrong type (also a :class:`TypeError`)."""


def readable(tensor: Tensor) -> bool:
    r"""Whether a check may read :obj:`tensor`'s values: not while Dynamo traces, not on the
    meta device, not when empty."""
    return not torch.compiler.is_compiling() and tensor.numel() > 0 and tensor.device.type != "meta"


def check_points(pos: Any, name: str = "pos", allow_empty: bool = True, dim: Optional[int] = 3):
    r"""Checks that :obj:`pos` is a finite floating-point tensor :obj:`[N, dim]` (any
    :obj:`[N, D]`, :math:`D \geq 1`, for :obj:`dim=None`)."""
    if not isinstance(pos, Tensor):
        raise InputTypeError(name, f"{name} must be a torch.Tensor (got {type(pos).__name__})")
    if pos.dim() != 2 or pos.size(1) < 1 or (dim is not None and pos.size(1) != dim):
        want = f"[N, {dim}]" if dim is not None else "[N, D] with D >= 1"
        raise InputError(name, f"{name} must have shape {want} (got {list(pos.shape)})")
    if not torch.is_floating_point(pos):
        raise InputTypeError(name, f"{name} must be floating point (got {pos.dtype})")
    if not allow_empty and pos.size(0) == 0:
        raise InputError(name, f"{name} is empty: at least one point is needed")
    if readable(pos) and not bool(torch.isfinite(pos).all()):
        raise InputError(name, f"{name} contains NaN or infinite values")


def check_same_device(x: Tensor, y: Tensor, x_name: str, y_name: str):
    r"""Checks that two tensors live on one device."""
    if x.device != y.device:
        raise InputError(
            y_name,
            f"{y_name} is on {y.device} but {x_name} is on {x.device}: move both to one device",
        )


def check_like(x: Tensor, y: Tensor, x_name: str, y_name: str):
    r"""Checks that two checked point tensors share their dimension, dtype and device."""
    if x.size(1) != y.size(1):
        raise InputError(
            y_name, f"{y_name} has {y.size(1)} coordinates per point but {x_name} has {x.size(1)}"
        )
    if x.dtype != y.dtype:
        raise InputTypeError(y_name, f"{y_name} is {y.dtype} but {x_name} is {x.dtype}")
    check_same_device(x, y, x_name, y_name)


def check_cloud_batch(
    batch: Any,
    pos: Tensor,
    name: str = "batch",
    num_clouds: Any = None,
    num_clouds_name: str = "num_clouds",
    pos_name: str = "pos",
) -> tuple[Tensor, int]:
    r"""Checks a PyG batch vector against its points: :obj:`None` (one cloud) or a sorted,
    non-negative 1-D integer tensor with one entry per point on the points' device. Returns
    it as a :obj:`LongTensor` and the number of clouds :math:`B` (:obj:`num_clouds` when
    given, else the largest id plus one). One host sync on CUDA."""
    given = None if num_clouds is None else check_int(num_clouds, num_clouds_name, minimum=0)
    if batch is None:
        batch = torch.zeros(pos.size(0), dtype=torch.long, device=pos.device)
        implied = 1 if pos.size(0) > 0 else 0
    else:
        if not isinstance(batch, Tensor):
            raise InputTypeError(
                name, f"{name} must be a torch.Tensor or None (got {type(batch).__name__})"
            )
        if batch.dim() != 1 or batch.numel() != pos.size(0):
            raise InputError(
                name,
                f"{name} must have shape [{pos.size(0)}] to match {pos_name} "
                f"(got {list(batch.shape)})",
            )
        if batch.dtype not in _INTEGER_DTYPES and batch.numel() > 0:
            raise InputTypeError(name, f"{name} must be an integer tensor (got {batch.dtype})")
        check_same_device(pos, batch, pos_name, name)
        batch = batch.long()
        implied = _implied_clouds(batch, name, given)
    if given is None:
        return batch, implied
    if given < implied:
        raise InputError(
            num_clouds_name,
            f"{num_clouds_name}={given} is smaller than the batch vector implies "
            f"({implied} clouds)",
        )
    return batch, given


def _implied_clouds(batch: Tensor, name: str, given: Optional[int]) -> int:
    if batch.numel() == 0:
        return 0
    if torch.compiler.is_compiling():
        return given if given is not None else int(batch[-1]) + 1
    if batch.device.type == "meta":
        return given or 0
    unsorted = (batch[1:] < batch[:-1]).any().long()
    first, disorder, last = torch.stack([batch[0], unsorted, batch[-1]]).tolist()
    if first < 0:
        raise InputError(name, f"{name} contains negative cloud indices ({first})")
    if disorder:
        raise InputError(
            name,
            f"{name} must be sorted (the points of a cloud contiguous, clouds in order), as "
            "torch_geometric.loader.DataLoader builds it",
        )
    return last + 1


def check_references(batch_x: Tensor, batch_y: Tensor, num_clouds: int, x_name: str, y_name: str):
    r"""Checks that every cloud with queries :obj:`y` has references :obj:`x`. One host sync
    on CUDA."""
    if not readable(batch_y):
        return
    orphan = torch.bincount(batch_x, minlength=num_clouds)[batch_y] == 0
    if bool(orphan.any()):
        cloud = int(batch_y[orphan][0])
        raise InputError(
            x_name,
            f"{x_name} has no points in cloud {cloud}, where {y_name} has some: there is "
            "nothing to compare them with",
        )


def check_ratio(ratio: Any, name: str = "ratio") -> float:
    r"""Checks that :obj:`ratio` is a real number in :math:`(0, 1]`; returns a float."""
    if isinstance(ratio, Tensor):
        if ratio.numel() != 1 or ratio.dtype == torch.bool or ratio.is_complex():
            raise InputTypeError(name, f"{name} must be a single number (got {ratio!r:.60})")
        ratio = ratio.item()
    if isinstance(ratio, bool) or not isinstance(ratio, numbers.Real):
        raise InputTypeError(name, f"{name} must be a float (got {type(ratio).__name__})")
    if not 0.0 < float(ratio) <= 1.0:
        raise InputError(name, f"{name} must lie in (0, 1] (got {float(ratio)})")
    return float(ratio)


def check_int(value: Any, name: str, minimum: Optional[int] = None) -> int:
    r"""Checks that :obj:`value` is an integer (not a bool) of at least :obj:`minimum`."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise InputTypeError(name, f"{name} must be an int (got {type(value).__name__})")
    if minimum is not None and value < minimum:
        raise InputError(name, f"{name} must be at least {minimum} (got {value})")
    return int(value)


def check_positive_int(value: Any, name: str) -> int:
    r"""Checks that :obj:`value` is an integer of at least 1."""
    return check_int(value, name, minimum=1)


def check_bool(value: Any, name: str) -> bool:
    r"""Checks that :obj:`value` is a bool."""
    if not isinstance(value, bool):
        raise InputTypeError(name, f"{name} must be a bool (got {type(value).__name__})")
    return value


def check_number(
    value: Any, name: str, minimum: Optional[float] = None, positive: bool = False
) -> float:
    r"""Checks that :obj:`value` is a finite real number (at least :obj:`minimum`, or
    positive); returns a float."""
    if isinstance(value, Tensor) and value.numel() == 1 and torch.is_floating_point(value):
        value = value.item()
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise InputTypeError(name, f"{name} must be a real number (got {type(value).__name__})")
    value = float(value)
    if not math.isfinite(value):
        raise InputError(name, f"{name} must be finite (got {value})")
    if positive and value <= 0:
        raise InputError(name, f"{name} must be positive (got {value})")
    if minimum is not None and value < minimum:
        raise InputError(name, f"{name} must be at least {minimum} (got {value})")
    return value


def check_choice(value: Any, name: str, choices: tuple[str, ...]) -> str:
    r"""Checks that :obj:`value` is one of the strings :obj:`choices`."""
    if not isinstance(value, str) or value not in choices:
        names = [repr(c) for c in choices]
        options = names[0] if len(names) == 1 else ", ".join(names[:-1]) + " or " + names[-1]
        raise InputError(name, f"{name} must be {options} (got {value!r})")
    return value


def check_index(index: Any, name: str, size: Optional[int] = None) -> Tensor:
    r"""Checks that :obj:`index` is an integer tensor (in :math:`[0, size)`); returns a
    :obj:`LongTensor`."""
    if not isinstance(index, Tensor):
        raise InputTypeError(name, f"{name} must be a torch.Tensor (got {type(index).__name__})")
    if index.dtype not in _INTEGER_DTYPES and index.numel() > 0:
        raise InputTypeError(name, f"{name} must be an integer tensor (got {index.dtype})")
    index = index.long()
    if size is not None and readable(index):
        low, high = torch.stack([index.min(), index.max()]).tolist()
        if low < 0 or high >= size:
            raise InputError(
                name, f"{name} holds {low if low < 0 else high}, outside [0, {size}) ({size} rows)"
            )
    return index


def check_counts(counts: Any, name: str, available: Tensor, what: str = "points") -> Tensor:
    r"""Checks per-cloud counts: one integer per cloud in :math:`[0, \text{available}_i]`;
    returns a :obj:`LongTensor`."""
    counts = check_index(counts, name)
    if counts.dim() != 1 or counts.numel() != available.numel():
        raise InputError(
            name,
            f"{name} must have one entry per cloud, [{available.numel()}] (got "
            f"{list(counts.shape)})",
        )
    if readable(counts):
        bad = (counts < 0) | (counts > available)
        if bool(bad.any()):
            cloud = int(bad.nonzero()[0, 0])
            value = int(counts[cloud])
            if value < 0:
                raise InputError(name, f"{name}[{cloud}] = {value} is negative")
            raise InputError(
                name,
                f"{name}[{cloud}] = {value} exceeds the {int(available[cloud])} {what} of "
                f"cloud {cloud}",
            )
    return counts


def check_index_vector(index: Any, name: str) -> Tensor:
    r"""Checks that :obj:`index` is a 1-D integer tensor; returns a :obj:`LongTensor`."""
    index = check_index(index, name)
    if index.dim() != 1:
        raise InputError(name, f"{name} must be 1-D (got shape {list(index.shape)})")
    return index
