r"""Conditioning of coordinates before distance computations, so that neighbour searches and
farthest point sampling hold over the whole floating-point range.

Squared distances of float32 coordinates near :math:`10^{20}` overflow (:math:`10^{40}`),
and those of coordinates near :math:`10^{-25}` underflow to zero. Each cloud is therefore
multiplied by a power of two, :math:`2^{-e_i}`, that brings its largest absolute coordinate
into :math:`[\frac{1}{2}, 1)`: squared distances then stay below :math:`4D`. A power of two
changes no digit of a coordinate, of a difference or of a comparison, so every exact tie
stays a tie and every back-end sees the same problem (subnormal numbers aside).

The expanded form :math:`\|x\|^2 + \|y\|^2 - 2 x^\top y` that a matrix product computes
cancels for clouds far from the origin (:math:`10^6` offsets, UTM coordinates), so the
plain-PyTorch search also subtracts each cloud's bounding-box centre (:func:`center_clouds`).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

__all__ = ["cloud_exponents", "scale_clouds", "center_clouds", "power_of_two"]


def power_of_two(exponent: Tensor, dtype: torch.dtype) -> Tensor:
    r"""Exactly :math:`2^{e}` for integer exponents in the normal range of :obj:`dtype`
    (float32 or float64), built from its bits rather than by :func:`torch.exp2`."""
    if dtype == torch.float64:
        return ((exponent.long() + 1023) << 52).view(torch.float64)
    bits = ((exponent.int() + 127) << 23).view(torch.float32)
    return bits.to(dtype)


def cloud_exponents(parts: Sequence[tuple[Tensor, Tensor]], num_clouds: int) -> Tensor:
    r"""The exponent :math:`e_i` with :math:`\max |p| < 2^{e_i}` over the points of cloud
    :math:`i` in all :obj:`(pos, batch)` pairs of :obj:`parts` (0 for an empty or all-zero
    cloud), clamped to the normal range of the dtype.

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
    r"""Multiplies every cloud of every :obj:`(pos, batch)` pair by :math:`2^{-e_i}` (see
    :func:`cloud_exponents`), the same factor for a cloud across the pairs, so that all
    coordinates lie in :math:`(-1, 1)` (or near it, for clouds beyond the clamped range)."""
    exponent = cloud_exponents(parts, num_clouds)
    factor = power_of_two(-exponent, parts[0][0].dtype)
    return [points * factor[batch].unsqueeze(1) for points, batch in parts]


def center_clouds(parts: Sequence[tuple[Tensor, Tensor]], num_clouds: int) -> list[Tensor]:
    r"""Subtracts from every cloud of every :obj:`(pos, batch)` pair the centre of its
    bounding box over all pairs (for scaled coordinates: half-sums cannot overflow)."""
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
