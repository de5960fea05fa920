r"""Z-order (Morton order): a permutation that keeps consecutive points close in space, so that
kd-tree builds, queries and chunked farthest point sampling read memory in order."""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["zorder"]


def _spread_bits(cell: Tensor) -> Tensor:
    # Bit i of a 10-bit integer to bit 3i (shift-and-mask passes).
    cell = (cell | (cell << 16)) & 0x030000FF
    cell = (cell | (cell << 8)) & 0x0300F00F
    cell = (cell | (cell << 4)) & 0x030C30C3
    return (cell | (cell << 2)) & 0x09249249


def zorder(pos: Tensor, batch: Tensor, num_clouds: int) -> Tensor:
    r"""A permutation that orders the points of each cloud of a sorted batch vector along a
    Z-order curve of its bounding box (10 bits per axis), clouds kept in place.

    :rtype: :class:`torch.LongTensor` of shape :obj:`[N]`
    """
    pos = pos.detach()[:, :3].double()  # float64: the span of float32 clouds cannot overflow
    if pos.size(1) < 3:
        pos = torch.cat([pos, pos.new_zeros(pos.size(0), 3 - pos.size(1))], 1)
    index = batch.view(-1, 1).expand_as(pos)
    low = pos.new_full((num_clouds, 3), float("inf")).scatter_reduce(0, index, pos, "amin")
    high = pos.new_full((num_clouds, 3), -float("inf")).scatter_reduce(0, index, pos, "amax")
    scale = 1023 / (high - low).clamp(min=1e-300)
    cell = ((pos - low[batch]) * scale[batch]).nan_to_num_().clamp_(0, 1023).int().t()
    code = _spread_bits(cell[0]) | _spread_bits(cell[1]) << 1 | _spread_bits(cell[2]) << 2
    return torch.sort(code.long() | batch << 30, stable=True).indices
