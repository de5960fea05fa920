r"""Each cloud scaled by an exact power of two :math:`2^{-e_i}` into :math:`(-1, 1)`, so that
squared distances neither overflow nor underflow while every comparison and tie is kept."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

__all__ = ["cloud_exponents", "scale_clouds", "center_clouds", "power_of_two"]


def power_of_two(exponent: Tensor, dtype: torch.dtype) -> Tensor:
    r"""Exactly :math:`2^{e}` for integer exponents in the normal range of :obj:`dtype`
    (float32 or float64), built from its bits."""
    if dtype == torch.float64:
        return ((exponent.long() + 1023) << 52).view(torch.float64)
    bits = ((exponent.int() + 127) << 23).view(torch.float32)
    return bits.to(dtype)


def cloud_exponents(parts: Sequence[tuple[Tensor, Tensor]], num_clouds: int) -> Tensor:
    r"""The exponent :math:`e_i` with :math:`\max |p| < 2^{e_i}` over cloud :math:`i` of all
    :obj:`(pos, batch)` pairs (0 for an empty cloud), clamped to the dtype's normal range.

    :rtype: :class:`torch.IntTensor` of shape :obj:`[num_clouds]`
    """
    pos = parts[0][0]
    largest = torch.zeros(num_clouds, dtype=pos.dtype, device=pos.device)
    for points, batch in parts:
        if points.numel() > 0:
            largest.scatter_reduce_(0, batch, points.abs().amax(1), "amax")
    exponent = torch.frexp(largest).exponent  # largest = m * 2^e with m in [1/2, 1)
    limit = 1021 if pos.dtype == torch.float64 else 125  # 2^±limit is a normal number
    return exponent.clamp(-limit, limit)


def scale_clouds(parts: Sequence[tuple[Tensor, Tensor]], num_clouds: int) -> list[Tensor]:
    r"""Every cloud of every :obj:`(pos, batch)` pair times :math:`2^{-e_i}`
    (:func:`cloud_exponents`): coordinates in :math:`(-1, 1)`."""
    exponent = cloud_exponents(parts, num_clouds)
    factor = power_of_two(-exponent, parts[0][0].dtype)
    return [points * factor[batch].unsqueeze(1) for points, batch in parts]


def center_clouds(parts: Sequence[tuple[Tensor, Tensor]], num_clouds: int) -> list[Tensor]:
    r"""Every cloud of every :obj:`(pos, batch)` pair minus its bounding-box centre, so that
    the expanded form :math:`\|x\|^2 + \|y\|^2 - 2 x^\top y` does not cancel."""
    pos = parts[0][0]
    shape = (num_clouds, pos.size(1))
    low = pos.new_full(shape, float("inf"))
    high = pos.new_full(shape, float("-inf"))
    for points, batch in parts:
        index = batch.view(-1, 1).expand_as(points)
        low.scatter_reduce_(0, index, points, "amin")
        high.scatter_reduce_(0, index, points, "amax")
    center = torch.where(torch.isfinite(low), low / 2 + high / 2, 0.0)
    return [points - center[batch] for points, batch in parts]
