r"""Exact k-nearest-neighbour search within clouds on scipy's :class:`~scipy.spatial.cKDTree`:
all clouds in one tree, each lifted onto its own level of an extra coordinate, so that one
build and one query serve every cloud."""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import Tensor

from tg_samplenet.ops.zorder import zorder

__all__ = ["kdtree_knn"]

ZORDER_ABOVE = 1 << 14  # from this many points, build and query in Z-order (memory locality)
LEAF_SIZE = 16  # scipy's default, measured best for k <= 16


def _lifted(pos: Tensor, batch: Tensor, gap: float, order) -> np.ndarray:
    pos, batch = (pos, batch) if order is None else (pos[order], batch[order])
    level = batch.to(torch.float64).unsqueeze(1) * gap
    return torch.cat([pos.detach().double(), level], 1).numpy()


def kdtree_knn(
    x: Tensor,
    y: Tensor,
    k: int,
    batch_x: Tensor,
    batch_y: Tensor,
    num_clouds: int,
    max_distance: float = float("inf"),
) -> tuple[Tensor, Tensor]:
    r"""The :obj:`k` nearest points of :obj:`x` in the same cloud for each point of :obj:`y`,
    for CPU coordinates scaled into :math:`(-1, 1)`; with :obj:`max_distance`, only those at
    most that far (the search stops there: a radius search costs what it finds).

    :rtype: :obj:`(index, mask)` as :class:`~tg_samplenet.ops.KNNResult`
    """
    from scipy.spatial import cKDTree

    # Within a cloud points lie less than 2 sqrt(D) apart; clouds lie farther apart.
    gap = 2 * math.sqrt(x.size(1)) + 1
    order_x = zorder(x, batch_x, num_clouds) if x.size(0) >= ZORDER_ABOVE else None
    order_y = zorder(y, batch_y, num_clouds) if y.size(0) >= ZORDER_ABOVE else None
    tree = cKDTree(
        _lifted(x, batch_x, gap, order_x), LEAF_SIZE, compact_nodes=False, balanced_tree=False
    )
    kk = min(k, x.size(0))
    _, near = tree.query(
        _lifted(y, batch_y, gap, order_y),
        k=kk,
        distance_upper_bound=max_distance,
        workers=torch.get_num_threads(),
    )
    index = torch.from_numpy(np.asarray(near, dtype=np.int64).reshape(y.size(0), kk))
    found = index < x.size(0)  # beyond max_distance: index x.size(0), no neighbour
    index = torch.where(found, index, 0)
    if order_x is not None:
        index = order_x[index]
    if order_y is not None:  # rows back to the queries' input order
        rows = torch.empty_like(order_y)
        rows[order_y] = torch.arange(order_y.numel())
        index, found = index[rows], found[rows]
    if kk < k:
        index = torch.cat([index, index.new_zeros(index.size(0), k - kk)], 1)
        found = torch.cat([found, found.new_zeros(found.size(0), k - kk)], 1)
    mask = found & (torch.arange(k) < kk)
    if max_distance >= gap:  # other clouds' points can be found: they are padding
        mask = mask & (batch_x[index] == batch_y.unsqueeze(1))
    return torch.where(mask, index, index[:, :1]), mask
