r"""Measures that more than one task shares: reductions and per-class means. Each task's own
metric lives in its module (:mod:`~reproduction.tasks.classification`,
:mod:`~reproduction.tasks.registration`, :mod:`~reproduction.tasks.reconstruction`).

Every function returns a tensor on the input's device (0-dimensional for a mean; call
:obj:`.item()` for a Python number), so evaluation loops need no device synchronisation.
"""

from __future__ import annotations

from typing import Optional

import torch
from torch import Tensor

__all__ = ["per_class_mean", "reduce_values"]


def reduce_values(values: Tensor, reduction: str) -> Tensor:
    r"""The mean of :obj:`values` for :obj:`reduction="mean"`, :obj:`values` itself for
    :obj:`"none"`."""
    if reduction == "mean":
        return values.mean()
    if reduction == "none":
        return values
    raise ValueError(f"reduction must be 'mean' or 'none' (got {reduction!r})")


def per_class_mean(values: Tensor, labels: Tensor, num_classes: Optional[int] = None) -> Tensor:
    r"""The mean of :obj:`values` over the samples of each class.

    Classes without samples get NaN, so :obj:`out.nanmean()` is the mean over the classes
    present.

    Args:
        values (torch.Tensor): One number per sample, :obj:`[B]`.
        labels (torch.Tensor): The class of each sample, :obj:`[B]`.
        num_classes (int, optional): The number of classes :math:`C`.
            (default: :obj:`labels.max() + 1`)

    :rtype: :class:`torch.Tensor` :obj:`[C]`
    """
    if values.dim() != 1 or labels.dim() != 1 or values.numel() != labels.numel():
        raise ValueError(
            f"values and labels must be 1-D of the same length (got {list(values.shape)} "
            f"and {list(labels.shape)})"
        )
    if labels.dtype.is_floating_point:
        raise TypeError(f"labels must be integers (got {labels.dtype})")
    if labels.numel() > 0 and int(labels.min()) < 0:
        raise ValueError("labels must be non-negative")
    largest = int(labels.max()) + 1 if labels.numel() > 0 else 0
    if num_classes is None:
        num_classes = largest
    elif num_classes < largest:
        raise ValueError(f"labels hold class {largest - 1} but num_classes is {num_classes}")
    values = values if values.is_floating_point() else values.float()
    sums = values.new_zeros(num_classes).index_add_(0, labels, values)
    counts = torch.bincount(labels, minlength=num_classes).to(values.dtype)
    return sums / counts  # 0 / 0 = NaN for absent classes
