r"""Exact k-nearest-neighbour search within clouds on scipy's kd-tree
(:class:`scipy.spatial.cKDTree`): the CPU search that needs no compiled PyTorch extension.

All clouds go into one tree, each lifted onto its own level of an extra coordinate, far
enough apart that a point's nearest points are those of its own cloud: one build and one
batched query (on :func:`torch.get_num_threads` workers) whatever the number of clouds.
Large inputs are searched in Z-order, so that the build and consecutive queries read memory
in order. The extra coordinate is constant within a cloud, so distances within a cloud are
unchanged, and they are computed in float64 (exact for float32 coordinates).
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import Tensor

from tg_samplenet.ops.zorder import zorder

__all__ = ["kdtree_knn"]

# Point sets from this many points are searched in Z-order.
ZORDER_ABOVE = 1 << 14
# Points per leaf (scipy's default, measured best for k <= 16).
LEAF_SIZE = 16


def _lifted(pos: Tensor, batch: Tensor, gap: float, order) -> np.ndarray:
    pos, batch = (pos, batch) if order is None else (pos[order], batch[order])
    level = batch.to(torch.float64).unsqueeze(1) * gap
    return torch.cat([pos.detach().double(), level], 1).numpy()


def kdtree_knn(
    x: Tensor, y: Tensor, k: int, batch_x: Tensor, batch_y: Tensor, num_clouds: int
) -> tuple[Tensor, Tensor]:
    r"""For each point of :obj:`y`, its :obj:`k` nearest points of :obj:`x` in the same
    cloud, on CPU tensors whose coordinates lie in :math:`(-1, 1)` (scaled, see
    :func:`~tg_samplenet.ops.scaling.scale_clouds`).

    :rtype: :obj:`(index, mask)`, both :obj:`[M, k]`: indices into :obj:`x`, nearest first,
        and :obj:`True` for real neighbours; where a cloud holds fewer than :obj:`k` points
        the missing slots repeat the nearest neighbour.
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
    _, near = tree.query(_lifted(y, batch_y, gap, order_y), k=kk, workers=torch.get_num_threads())
    index = torch.from_numpy(np.asarray(near, dtype=np.int64).reshape(y.size(0), kk))
    if order_x is not None:
        index = order_x[index]
    if order_y is not None:  # rows back to the queries' input order
        rows = torch.empty_like(order_y)
        rows[order_y] = torch.arange(order_y.numel())
        index = index[rows]
    if kk < k:
        index = torch.cat([index, index.new_zeros(index.size(0), k - kk)], 1)
    mask = torch.arange(k) < kk
    mask = mask & (batch_x[index] == batch_y.unsqueeze(1))  # other clouds' points: padding
    return torch.where(mask, index, index[:, :1]), mask
