r"""Input checks at the public boundary of the library.

Every public function checks its arguments once, at its top, with the helpers below, and
hands validated tensors to private helpers that never check again. A failed check raises
:class:`InputError` (a :class:`ValueError`; :class:`InputTypeError`, also a
:class:`TypeError`, for an argument of the wrong type) whose :attr:`~InputError.argument`
names the argument and whose message names it too (a file argument by its path) and says
what was wrong.

Checks that read values (finite coordinates, a sorted batch vector, indices in range) need
the result on the host: on CUDA each such helper costs one device synchronisation, and none
costs more than one. Checks of shapes, dtypes and devices cost nothing.

While :func:`torch.compile` traces (:func:`torch.compiler.is_compiling`), the checks that
read values are skipped, because a value read breaks the graph: compiled code gets the
shape, dtype and device checks only, so check input eagerly first where it may be bad. The
one value still read is the number of clouds a batch vector implies (its last id plus one),
and only when no :obj:`num_clouds` is given: pass it to keep that read out of the graph.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Sequence
from typing import Any, Optional

import torch
from torch import Tensor

from tg_samplenet.ops.custom_ops import is_compiling

__all__ = [
    "InputError",
    "InputTypeError",
    "check_points",
    "check_matching_points",
    "check_batch",
    "check_cloud_batch",
    "check_num_clouds",
    "check_ratio",
    "check_positive_int",
    "check_int",
    "check_bool",
    "check_number",
    "check_index",
    "check_counts",
    "check_counts_fit",
    "check_index_vector",
    "check_sorted",
    "check_references",
    "check_same_device",
    "check_choice",
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
    r"""An :class:`InputError` for an argument of the wrong type (also a
    :class:`TypeError`)."""


def _has_values(tensor: Tensor) -> bool:
    # Meta tensors carry a shape but no values to check; while torch.compile traces, values
    # are symbolic and reading one would break the graph.
    return not is_compiling() and tensor.numel() > 0 and tensor.device.type != "meta"


def check_points(
    pos: Any,
    name: str = "pos",
    allow_empty: bool = True,
    dim: Optional[int] = 3,
) -> None:
    r"""Checks that :obj:`pos` is a finite floating-point tensor of shape :obj:`[N, dim]`
    (:obj:`[N, D]` with any :math:`D \geq 1` for :obj:`dim=None`). One host sync on CUDA."""
    if not isinstance(pos, Tensor):
        raise InputTypeError(name, f"{name} must be a torch.Tensor (got {type(pos).__name__})")
    if pos.dim() != 2 or (dim is not None and pos.size(1) != dim) or pos.size(1) < 1:
        want = f"[N, {dim}]" if dim is not None else "[N, D] with D >= 1"
        raise InputError(name, f"{name} must have shape {want} (got {list(pos.shape)})")
    if not torch.is_floating_point(pos):
        raise InputTypeError(name, f"{name} must be floating point (got {pos.dtype})")
    if not allow_empty and pos.size(0) == 0:
        raise InputError(name, f"{name} is empty: at least one point is needed")
    if _has_values(pos) and not bool(torch.isfinite(pos).all()):
        raise InputError(name, f"{name} contains NaN or infinite values")


def check_matching_points(x: Tensor, y: Tensor, x_name: str, y_name: str) -> None:
    r"""Checks that two checked point tensors share their dimension, dtype and device."""
    if x.size(1) != y.size(1):
        raise InputError(
            y_name,
            f"{y_name} has {y.size(1)} coordinates per point but {x_name} has {x.size(1)}",
        )
    if x.dtype != y.dtype:
        raise InputTypeError(y_name, f"{y_name} is {y.dtype} but {x_name} is {x.dtype}")
    check_same_device(x, y, names=(x_name, y_name))


def check_cloud_batch(
    batch: Any,
    pos: Tensor,
    name: str = "batch",
    num_clouds: Any = None,
    num_clouds_name: str = "num_clouds",
    pos_name: str = "pos",
) -> tuple[Tensor, int]:
    r"""Checks a PyG batch vector against its points: :obj:`None` (one cloud) or a 1-D
    integer tensor with one entry per point, on the points' device, non-negative and sorted
    (the points of a cloud contiguous, clouds in order, gaps allowed). Returns it as a
    :obj:`LongTensor` with the number of clouds :math:`B`: :obj:`num_clouds` when given
    (an error if smaller than the batch vector implies), else the largest id plus one.

    One host sync on CUDA, shared by the sign, order and size checks."""
    given = check_int(num_clouds, num_clouds_name, minimum=0) if num_clouds is not None else None
    if batch is None:
        batch = torch.zeros(pos.size(0), dtype=torch.long, device=pos.device)
        implied = 1 if pos.size(0) > 0 else 0
    else:
        if not isinstance(batch, Tensor):
            raise InputTypeError(
                name, f"{name} must be a torch.Tensor or None (got {type(batch).__name__})"
            )
        # An empty tensor holds no value to misread, whatever its dtype (torch.tensor([])).
        if batch.dtype not in _INTEGER_DTYPES and batch.numel() > 0:
            raise InputTypeError(name, f"{name} must be an integer tensor (got {batch.dtype})")
        if batch.dim() != 1 or batch.numel() != pos.size(0):
            raise InputError(
                name,
                f"{name} must have shape [{pos.size(0)}] to match {pos_name} "
                f"(got {list(batch.shape)})",
            )
        check_same_device(pos, batch, names=(pos_name, name))
        batch = batch.long()
        # Compiled code with a given count reads no value of the batch vector at all.
        implied = given if given is not None and is_compiling() else check_sorted(batch, name)
    if given is None:
        return batch, implied
    if given < implied:
        raise InputError(
            num_clouds_name,
            f"{num_clouds_name}={given} is smaller than the batch vector implies "
            f"({implied} clouds)",
        )
    return batch, given


def check_sorted(batch: Tensor, name: str = "batch") -> int:
    r"""Checks that an integer vector of cloud ids is non-negative and sorted, and returns
    the number of clouds it implies (its last id plus one; 0 when empty). One host sync on
    CUDA. While compiling, only the count is read (the check is skipped)."""
    if is_compiling():
        if batch.numel() == 0:
            return 0
        last = int(batch[-1])
        torch._check(last >= 0)  # an unbacked size with capture_scalar_outputs
        return last + 1
    if not _has_values(batch):
        return 0
    unsorted = (batch[1:] < batch[:-1]).any().long()
    first, disorder, last = torch.stack([batch[0], unsorted, batch[-1]]).tolist()
    if first < 0:
        raise InputError(name, f"{name} contains negative cloud indices ({first})")
    if disorder:
        raise InputError(
            name,
            f"{name} must be sorted (points of a cloud contiguous, clouds in order), "
            "as torch_geometric.loader.DataLoader builds it",
        )
    return last + 1


def check_batch(batch: Any, pos: Tensor, name: str = "batch") -> Tensor:
    r"""Checks a PyG batch vector against its points (see :func:`check_cloud_batch`) and
    returns it as a :obj:`LongTensor` (all zeros for :obj:`None`)."""
    return check_cloud_batch(batch, pos, name)[0]


def check_num_clouds(num_clouds: Any, implied: int, name: str = "num_clouds") -> int:
    r"""Checks an optional number of clouds against the :obj:`implied` one and returns the
    number to use."""
    if num_clouds is None:
        return implied
    value = check_int(num_clouds, name, minimum=0)
    if value < implied:
        raise InputError(
            name, f"{name}={value} is smaller than the batch vector implies ({implied} clouds)"
        )
    return value


def check_ratio(ratio: Any, name: str = "ratio") -> float:
    r"""Checks that :obj:`ratio` is a real number (or a one-element tensor) in
    :math:`(0, 1]` and returns it as a float."""
    if isinstance(ratio, Tensor):
        if ratio.numel() != 1:
            raise InputError(
                name, f"{name} must be a single number (got shape {list(ratio.shape)})"
            )
        if ratio.dtype == torch.bool or ratio.is_complex():
            raise InputTypeError(name, f"{name} must be a float (got a {ratio.dtype} tensor)")
        ratio = ratio.item()
    if isinstance(ratio, bool) or not isinstance(ratio, numbers.Real):
        raise InputTypeError(name, f"{name} must be a float (got {type(ratio).__name__})")
    ratio = float(ratio)
    if not 0.0 < ratio <= 1.0:
        raise InputError(name, f"{name} must lie in (0, 1] (got {ratio})")
    return ratio


def check_int(value: Any, name: str, minimum: Optional[int] = None) -> int:
    r"""Checks that :obj:`value` is an integer (not a bool), at least :obj:`minimum`, and
    returns it as an int."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise InputTypeError(name, f"{name} must be an int (got {type(value).__name__})")
    value = int(value)
    if minimum is not None and value < minimum:
        raise InputError(name, f"{name} must be at least {minimum} (got {value})")
    return value


def check_positive_int(value: Any, name: str) -> int:
    r"""Checks that :obj:`value` is an integer of at least 1 and returns it."""
    return check_int(value, name, minimum=1)


def check_bool(value: Any, name: str) -> bool:
    r"""Checks that :obj:`value` is a bool."""
    if not isinstance(value, bool):
        raise InputTypeError(name, f"{name} must be a bool (got {type(value).__name__})")
    return value


def check_number(
    value: Any,
    name: str,
    minimum: Optional[float] = None,
    positive: bool = False,
) -> float:
    r"""Checks that :obj:`value` is a finite real number (at least :obj:`minimum`, or
    strictly positive) and returns it as a float."""
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


def check_choice(value: Any, name: str, choices: Sequence[str]) -> str:
    r"""Checks that :obj:`value` is one of the strings :obj:`choices`."""
    if not isinstance(value, str) or value not in choices:
        names = [repr(c) for c in choices]
        options = names[0] if len(names) == 1 else ", ".join(names[:-1]) + " or " + names[-1]
        raise InputError(name, f"{name} must be {options} (got {value!r})")
    return value


def check_index_vector(index: Any, name: str) -> Tensor:
    r"""Checks that :obj:`index` is a 1-D integer tensor and returns it as a
    :obj:`LongTensor` (no value is read)."""
    if not isinstance(index, Tensor):
        raise InputTypeError(name, f"{name} must be a torch.Tensor (got {type(index).__name__})")
    if index.dim() != 1:
        raise InputError(name, f"{name} must be 1-D (got shape {list(index.shape)})")
    # An empty tensor holds no value to misread, whatever its dtype (torch.tensor([])).
    if index.dtype not in _INTEGER_DTYPES and index.numel() > 0:
        raise InputTypeError(name, f"{name} must be an integer tensor (got {index.dtype})")
    return index.long()


def check_index(index: Any, name: str, size: int, what: str) -> Tensor:
    r"""Checks that :obj:`index` is a 1-D integer tensor of indices in :math:`[0, size)`
    (into :obj:`what`) and returns it as a :obj:`LongTensor`. One host sync on CUDA."""
    index = check_index_vector(index, name)
    if _has_values(index):
        low, high = torch.stack([index.min(), index.max()]).tolist()
        if low < 0 or high >= size:
            bad = low if low < 0 else high
            raise InputError(
                name, f"{name} holds the index {bad}, outside [0, {size}) of the {size} {what}"
            )
    return index


def check_counts(counts: Any, name: str, implied_clouds: int) -> Tensor:
    r"""Checks per-cloud counts: a 1-D integer tensor with an entry for each of the
    :obj:`implied_clouds` clouds that the batch vectors name (more for trailing empty
    clouds). Returns it as a :obj:`LongTensor`; its length is the number of clouds."""
    counts = check_index_vector(counts, name)
    if counts.numel() < implied_clouds:
        raise InputError(
            name,
            f"{name} has {counts.numel()} entries but the batch vectors name "
            f"{implied_clouds} clouds: one count per cloud is needed",
        )
    return counts


def check_counts_fit(counts: Tensor, name: str, available: Tensor, what: str = "points"):
    r"""Checks that every count is non-negative and at most :obj:`available[i]`, the
    :obj:`what` of cloud :math:`i`. One host sync on CUDA."""
    if not _has_values(counts):
        return
    bad = (counts < 0) | (counts > available)
    if bool(bad.any()):
        cloud = int(bad.nonzero()[0, 0])
        value = int(counts[cloud])
        if value < 0:
            raise InputError(name, f"{name}[{cloud}] = {value} is negative")
        raise InputError(
            name,
            f"{name}[{cloud}] = {value} exceeds the {int(available[cloud])} {what} "
            f"of cloud {cloud}",
        )


def check_references(
    batch_x: Tensor,
    batch_y: Tensor,
    num_clouds: int,
    x_name: str = "x",
    y_name: str = "y",
):
    r"""Checks that every cloud holding points of :obj:`y` (queries) also holds points of
    :obj:`x` (references), for checked batch vectors. One host sync on CUDA."""
    if not _has_values(batch_y):
        return
    orphan = torch.bincount(batch_x, minlength=num_clouds)[batch_y] == 0
    if bool(orphan.any()):
        cloud = int(batch_y[orphan][0])
        raise InputError(
            x_name,
            f"{x_name} has no points in cloud {cloud}, where {y_name} has some: "
            "they have no reference points to be compared with",
        )


def check_same_device(*tensors: Optional[Tensor], names: Optional[Sequence[str]] = None):
    r"""Checks that all tensors live on one device."""
    present = [
        (t, names[i] if names is not None else f"tensor {i}")
        for i, t in enumerate(tensors)
        if t is not None
    ]
    devices = {t.device for t, _ in present}
    if len(devices) > 1:
        first, first_name = present[0][0].device, present[0][1]
        other, device = next((n, t.device) for t, n in present if t.device != first)
        raise InputError(
            other,
            f"{other} is on {device} but {first_name} is on {first}: "
            "Expected all tensors on one device",
        )
