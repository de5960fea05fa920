r"""Exact k-nearest-neighbour search within clouds on scipy's kd-tree
(:class:`scipy.spatial.cKDTree`), the CPU engine that needs no compiled PyTorch extension.

One tree per cloud of the reference points, queried by that cloud's queries on
:func:`torch.get_num_threads` workers. Large inputs are first put in Z-order (Morton order),
so that the tree's build and consecutive queries read memory in order (about half the
time of the build and the queries at 100k points, measured while building it). Distances are
computed in float64, exact for float32 coordinates, so that the neighbours are the exact
ones; only the order of exactly equal distances is unspecified.
"""

from __future__ import annotations

import importlib.util
from typing import Optional

import numpy as np
import torch
from torch import Tensor

__all__ = ["kdtree_available", "kdtree_knn", "locality_order"]

# Point sets from this many points are searched in Z-order.
ZORDER_ABOVE = 1 << 14
# Points per leaf of the trees (scipy's default, 16, measured best for k <= 16).
LEAF_SIZE = 16


def kdtree_available() -> bool:
    r"""Whether :obj:`scipy` (and with it :class:`~scipy.spatial.cKDTree`) is importable."""
    return importlib.util.find_spec("scipy") is not None


def _spread_bits(cell: Tensor) -> Tensor:
    # Bit i of every 10-bit integer to bit 3i, in four shift-and-mask passes instead of a
    # loop over bits: spread(x) | spread(y) << 1 | spread(z) << 2 is the Morton code of the
    # cell (x, y, z). Also behind ops.neighbors.zorder.
    cell = (cell | (cell << 16)) & 0x030000FF
    cell = (cell | (cell << 8)) & 0x0300F00F
    cell = (cell | (cell << 4)) & 0x030C30C3
    return (cell | (cell << 2)) & 0x09249249


def locality_order(pos: Tensor, batch: Optional[Tensor] = None) -> Tensor:
    r"""A permutation that keeps the clouds of a sorted batch vector in place and orders the
    points of each along a Z-order curve (10 bits per axis of the first three coordinates,
    cells of the bounding box of all points): consecutive points of the order are close in
    space. Any order gives the same neighbours; this one makes the search faster.

    :rtype: :class:`torch.LongTensor` of shape :obj:`[N]`
    """
    x = pos.detach()[:, :3].double()  # float64: the span of float32 clouds cannot overflow
    if x.size(1) < 3:
        x = torch.cat([x, x.new_zeros(x.size(0), 3 - x.size(1))], 1)
    low, high = x.amin(0), x.amax(0)
    scale = 1023.0 / (high - low).clamp(min=1e-300)
    cell = ((x - low) * scale).clamp_(0, 1023).int().t()  # [3, N]
    code = _spread_bits(cell[0]) | _spread_bits(cell[1]) << 1 | _spread_bits(cell[2]) << 2
    if batch is not None and batch.numel() > 0 and int(batch[-1]) > 0:
        code = code.long() | batch << 30  # clouds stay in place
    return torch.sort(code, stable=True).indices


def _offsets(batch: Tensor, num_clouds: int) -> list[int]:
    sizes = torch.bincount(batch, minlength=num_clouds)
    return [0] + sizes.cumsum(0).tolist()


def kdtree_knn(
    x: Tensor,
    y: Tensor,
    k: int,
    batch_x: Tensor,
    batch_y: Tensor,
    num_clouds: int,
    workers: Optional[int] = None,
) -> tuple[Tensor, Tensor]:
    r"""For each point of :obj:`y`, its :obj:`k` nearest points of :obj:`x` in the same cloud
    (Euclidean distance, exact), on CPU tensors.

    Args:
        x (torch.Tensor): Reference points :obj:`[N, D]`, finite.
        y (torch.Tensor): Query points :obj:`[M, D]`, finite.
        k (int): The number of neighbours, at least 1.
        batch_x (torch.LongTensor): Sorted batch vector of :obj:`x`.
        batch_y (torch.LongTensor): Sorted batch vector of :obj:`y`; every cloud with
            queries has reference points.
        num_clouds (int): The number of clouds :math:`B`.
        workers (int, optional): Threads of the queries. (default: :obj:`None`, which means
            :func:`torch.get_num_threads`)

    :rtype: :obj:`(index, mask)`, both :obj:`[M, k]`: indices into :obj:`x`, nearest first,
        and :obj:`True` for real neighbours. Where a cloud holds fewer than :obj:`k` points
        the missing slots are padding that repeats the nearest neighbour.
    """
    from scipy.spatial import cKDTree

    workers = torch.get_num_threads() if workers is None else workers
    order_x = locality_order(x, batch_x) if x.size(0) >= ZORDER_ABOVE else None
    order_y = locality_order(y, batch_y) if y.size(0) >= ZORDER_ABOVE else None
    xs = x.detach() if order_x is None else x.detach()[order_x]
    ys = y.detach() if order_y is None else y.detach()[order_y]
    xs, ys = xs.double().numpy(), ys.double().numpy()
    ptr_x, ptr_y = _offsets(batch_x, num_clouds), _offsets(batch_y, num_clouds)

    index = np.empty((y.size(0), k), dtype=np.int64)
    found = np.empty(y.size(0), dtype=np.int64)  # real neighbours per query
    for b in range(num_clouds):
        lo, hi = ptr_y[b], ptr_y[b + 1]
        if lo == hi:
            continue
        start, size = ptr_x[b], ptr_x[b + 1] - ptr_x[b]
        tree = cKDTree(
            xs[start : start + size], LEAF_SIZE, compact_nodes=False, balanced_tree=False
        )
        kk = min(k, size)
        _, near = tree.query(ys[lo:hi], k=kk, workers=workers)
        near = near.reshape(hi - lo, kk) + start
        index[lo:hi, :kk] = near
        index[lo:hi, kk:] = near[:, :1]
        found[lo:hi] = kk

    index_t = torch.from_numpy(index)
    if order_x is not None:
        index_t = order_x[index_t]
    mask = torch.arange(k).unsqueeze(0) < torch.from_numpy(found).unsqueeze(1)
    if order_y is not None:  # rows back to the input order of the queries
        rows = torch.empty_like(order_y)
        rows[order_y] = torch.arange(order_y.numel())
        index_t, mask = index_t[rows], mask[rows]
    return index_t, mask
