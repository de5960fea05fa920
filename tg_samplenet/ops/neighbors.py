r"""Neighbour search within clouds, and the one place that picks the back-end.

PyG 2.8 moved :func:`~torch_geometric.nn.fps` and :func:`~torch_geometric.nn.knn` from
:obj:`torch_cluster` to :obj:`pyg-lib`, and :obj:`torch_cluster` 1.6.3 is its final release.
This module therefore uses :obj:`pyg-lib` when it is installed, else :obj:`torch_cluster`, else
plain PyTorch, and every path returns the same result on the same
input (up to the order of exact ties).

On CPU, the plain-PyTorch back-end searches on scipy's kd-tree
(:func:`~tg_samplenet.ops.kdtree_search.kdtree_knn`) when scipy is installed, and on a
blocked brute force otherwise (and on every GPU). The default choice also takes the kd-tree
over :obj:`torch_cluster` on CPU where there are at least as many reference points as queries,
where it was measured 0.3-0.6x :obj:`torch_cluster.knn`'s time on one thread (1.0-1.5x
with more queries than references, where :obj:`torch_cluster` stays).

:func:`use_backend` forces one path, which the tests use to compare them: a forced
:obj:`"torch_cluster"` or :obj:`"pyg_lib"` always runs that package.
"""

from __future__ import annotations

import contextlib
import importlib.util
from typing import Iterator, NamedTuple, Optional

import torch
from torch import Tensor

from tg_samplenet.ops.batch import cloud_ptr
from tg_samplenet.ops.checks import (
    check_cloud_batch,
    check_matching_points,
    check_points,
    check_positive_int,
    check_references,
)
from tg_samplenet.ops.custom_ops import PADDED_KNN, is_compiling
from tg_samplenet.ops.kdtree_search import _spread_bits, kdtree_available, kdtree_knn
from tg_samplenet.ops.scaling import center_clouds, scale_clouds

__all__ = [
    "KNNResult",
    "available_backends",
    "get_backend",
    "use_backend",
    "padded_knn",
    "nearest_index",
    "zorder",
]

# Queries per block in the plain-torch brute force, bounded so that one block of squared
# distances stays near 16 MiB whatever the cloud size.
_TORCH_BLOCK_ELEMENTS = 1 << 22
# Point sets from this many points are put in Z-order before torch_cluster.knn on CPU.
_ZORDER_ABOVE = 1 << 15


def _has_pyg_lib_ops() -> bool:
    if importlib.util.find_spec("pyg_lib") is None:
        return False
    try:
        import pyg_lib  # noqa: F401  (registers torch.ops.pyg)
    except (ImportError, OSError):
        return False
    return hasattr(torch.ops.pyg, "knn") and hasattr(torch.ops.pyg, "fps")


def _has_module(name: str) -> bool:
    if importlib.util.find_spec(name) is None:
        return False
    try:
        importlib.import_module(name)
    except (ImportError, OSError):  # a wheel built against another torch fails here
        return False
    return True


_AVAILABLE = {
    "pyg_lib": _has_pyg_lib_ops(),
    "torch_cluster": _has_module("torch_cluster"),
    "torch": True,
}
_forced: Optional[str] = None
# Whether scipy's kd-tree serves CPU searches (the tests switch it off to reach the brute force).
_KDTREE = kdtree_available()


def available_backends() -> list[str]:
    r"""Returns the neighbour/FPS back-ends importable here, fastest first. On CPU, the
    :obj:`"torch"` back-end searches neighbours on scipy's kd-tree where scipy is installed."""
    return [name for name, ok in _AVAILABLE.items() if ok]


def get_backend() -> str:
    r"""Returns the back-end in use: :obj:`"pyg_lib"`, :obj:`"torch_cluster"` or
    :obj:`"torch"`."""
    return _forced if _forced is not None else available_backends()[0]


@contextlib.contextmanager
def use_backend(name: str) -> Iterator[None]:
    r"""Forces one back-end inside a :obj:`with` block.

    Args:
        name (str): :obj:`"pyg_lib"`, :obj:`"torch_cluster"` or :obj:`"torch"`.
    """
    global _forced
    if name not in _AVAILABLE:
        raise ValueError(f"Unknown back-end {name!r}; choose one of {sorted(_AVAILABLE)}")
    if not _AVAILABLE[name]:
        raise RuntimeError(f"Back-end {name!r} is not installed here")
    previous, _forced = _forced, name
    try:
        yield
    finally:
        _forced = previous


class KNNResult(NamedTuple):
    r"""The :obj:`k` nearest neighbours of each query, in a fixed :obj:`[M, k]` layout.

    Attributes:
        index (LongTensor): :obj:`[M, k]` indices into the reference points, nearest first.
            Where a cloud holds fewer than :obj:`k` points, the missing slots are *padding*:
            they repeat the query's nearest neighbour, so gathering with :obj:`index` is
            always safe.
        mask (BoolTensor): :obj:`[M, k]`, :obj:`True` for real neighbours and :obj:`False`
            for padding.
    """

    index: Tensor
    mask: Tensor


def _edges_to_padded(row: Tensor, col: Tensor, num_queries: int, k: int) -> KNNResult:
    # [2, E] edges grouped by query -> [M, k] table, padding repeating slot 0.
    count = torch.bincount(row, minlength=num_queries)
    start = count.cumsum(0) - count
    slot = torch.arange(row.numel(), device=row.device) - start[row]
    index = torch.full((num_queries, k), -1, dtype=torch.long, device=row.device)
    index[row, slot] = col
    mask = index >= 0
    return KNNResult(torch.where(mask, index, index[:, :1]), mask)


def zorder(pos: Tensor, batch: Optional[Tensor] = None, num_clouds: Optional[int] = None) -> Tensor:
    r"""A permutation that keeps the clouds of a sorted batch in place and orders the points
    of each along a Z-order curve of its bounding box (10 bits per axis, the first three
    coordinates): consecutive points of the order are then close in space.

    Args:
        pos (torch.Tensor): Points :obj:`[N, D]`.
        batch (torch.LongTensor, optional): Sorted batch vector. (default: :obj:`None`)
        num_clouds (int, optional): The number of clouds :math:`B`. (default: :obj:`None`,
            the largest id plus one)

    :rtype: :class:`torch.LongTensor` of shape :obj:`[N]`
    """
    check_points(pos, "pos", dim=None)
    batch, B = check_cloud_batch(batch, pos, "batch", num_clouds)
    return _zorder(pos, batch, B)


def _zorder(pos: Tensor, batch: Tensor, num_clouds: int) -> Tensor:
    # zorder for checked input. Cells are computed in float64, where the span of float32
    # clouds cannot overflow; whatever the cell, the sort keeps each cloud in place. One
    # cloud skips the per-point gathers of its box (the same cells, a third of the time at
    # 1M points), and the codes are built in int32 (30 bits).
    pos = pos.detach()[:, :3].double()
    if pos.size(1) < 3:
        pos = torch.cat([pos, pos.new_zeros(pos.size(0), 3 - pos.size(1))], 1)
    if num_clouds == 1 and pos.size(0) > 0:
        low, high = pos.amin(0), pos.amax(0)
        scale = 1023 / (high - low).clamp(min=1e-300)
        cell = (pos - low).mul_(scale)
    else:
        index = batch.view(-1, 1).expand_as(pos)
        low = pos.new_full((num_clouds, 3), float("inf")).scatter_reduce(0, index, pos, "amin")
        high = pos.new_full((num_clouds, 3), -float("inf")).scatter_reduce(0, index, pos, "amax")
        scale = 1023 / (high - low).clamp(min=1e-300)
        cell = (pos - low[batch]).mul_(scale[batch])
    cell = cell.nan_to_num_().clamp_(0, 1023).int().t()
    code = _spread_bits(cell[0]) | _spread_bits(cell[1]) << 1 | _spread_bits(cell[2]) << 2
    if num_clouds > 1:
        code = code.long() | batch << 30
    return torch.sort(code, stable=True).indices


def _knn_torch(x: Tensor, y: Tensor, k: int, batch_x: Tensor, batch_y: Tensor, B: int) -> KNNResult:
    # Brute force on clouds padded to [B, N_max] and [B, M_max], in blocks of queries so
    # that a block of distances stays near 4M floats. The expanded form below cancels far
    # from the origin: every cloud is first centred on its bounding box (x and y alike).
    from torch_geometric.utils import to_dense_batch

    x, y = center_clouds([(x, batch_x), (y, batch_y)], B)

    xd, x_valid = to_dense_batch(x, batch_x, batch_size=B)  # [B, Nmax, D]
    yd, y_valid = to_dense_batch(y, batch_y, batch_size=B)  # [B, Mmax, D]
    n_max, m_max = xd.size(1), yd.size(1)
    k_eff = min(k, n_max)
    block = max(1, _TORCH_BLOCK_ELEMENTS // max(1, B * n_max))
    dist_parts, index_parts = [], []
    x_sq = xd.pow(2).sum(-1).unsqueeze(1)  # [B, 1, Nmax]
    for start in range(0, m_max, block):
        part = yd[:, start : start + block]
        # |y|^2 + |x|^2 - 2 y.x as one batched matmul: near-exact ties may swap order.
        dist = torch.baddbmm(x_sq, part, xd.transpose(1, 2), alpha=-2.0)
        dist = dist + part.pow(2).sum(-1, keepdim=True)
        dist = dist.masked_fill(~x_valid[:, None], float("inf"))
        if k_eff == 1:
            top_dist, top = dist.min(dim=2, keepdim=True)
        else:
            top_dist, top = dist.topk(k_eff, dim=2, largest=False)
        dist_parts.append(top_dist)
        index_parts.append(top)
    top_dist = torch.cat(dist_parts, 1)[y_valid]  # [M, k_eff], queries in input order
    top = torch.cat(index_parts, 1)[y_valid] + cloud_ptr(batch_x, B)[batch_y, None]
    mask = torch.isfinite(top_dist)
    index = torch.where(mask, top, top[:, :1])
    if k_eff < k:
        pad = k - k_eff
        index = torch.cat([index, index[:, :1].expand(-1, pad)], 1)
        mask = torch.cat([mask, mask.new_zeros(mask.size(0), pad)], 1)
    return KNNResult(index, mask)


def padded_knn(
    x: Tensor,
    y: Tensor,
    k: int,
    batch_x: Optional[Tensor] = None,
    batch_y: Optional[Tensor] = None,
) -> KNNResult:
    r"""Finds for each point in :obj:`y` its :obj:`k` nearest points in :obj:`x` *of the
    same cloud* (Euclidean distance), like :func:`torch_geometric.nn.knn`, but returned as a
    fixed :obj:`[M, k]` table.

    .. code-block:: python

        x = torch.tensor([[0.0, 0, 0], [1, 0, 0], [5, 0, 0], [6, 0, 0]])
        batch_x = torch.tensor([0, 0, 1, 1])
        y = torch.tensor([[0.2, 0, 0], [5.9, 0, 0]])
        batch_y = torch.tensor([0, 1])
        index, mask = padded_knn(x, y, 3, batch_x, batch_y)
        # index = [[0, 1, 0], [3, 2, 3]], mask = [[True, True, False], [True, True, False]]

    Distances are computed on each cloud scaled by a power of two (exact), so that
    coordinates anywhere in the floating-point range neither overflow nor underflow;
    half-precision points are searched in float32.

    Args:
        x (torch.Tensor): Reference points :math:`\mathbf{X} \in \mathbb{R}^{N \times D}`,
            finite, floating point.
        y (torch.Tensor): Query points :math:`\mathbf{Y} \in \mathbb{R}^{M \times D}` of
            the same dtype.
        k (int): The number of neighbours, at least 1.
        batch_x (torch.Tensor, optional): Sorted batch vector
            :math:`\mathbf{b} \in {\{ 0, \ldots, B-1\}}^N` of :obj:`x`. (default: :obj:`None`)
        batch_y (torch.Tensor, optional): Sorted batch vector of :obj:`y`; every cloud with
            queries needs reference points. (default: :obj:`None`)

    :rtype: :class:`KNNResult` with :obj:`index` and :obj:`mask` of shape :obj:`[M, k]`.
        Neighbour search carries no gradient: recompute distances from :obj:`index`.
    """
    k = check_positive_int(k, "k")
    check_points(x, "x", dim=None)
    check_points(y, "y", dim=None)
    check_matching_points(x, y, "x", "y")
    batch_x, clouds_x = check_cloud_batch(batch_x, x, "batch_x", pos_name="x")
    batch_y, clouds_y = check_cloud_batch(batch_y, y, "batch_y", pos_name="y")
    B = max(clouds_x, clouds_y)
    check_references(batch_x, batch_y, B, "x", "y")
    return _padded_knn(x, y, k, batch_x, batch_y, B)


def _padded_knn(
    x: Tensor, y: Tensor, k: int, batch_x: Tensor, batch_y: Tensor, num_clouds: int
) -> KNNResult:
    # padded_knn for checked input: every cloud with queries has reference points.
    if is_compiling():  # one opaque operator: the extensions have no fake kernel
        index, mask = torch.ops.tg_samplenet.padded_knn(
            x.detach(), y.detach(), k, batch_x, batch_y, num_clouds
        )
        return KNNResult(index, mask)
    if y.size(0) == 0:
        empty = torch.empty((0, k), dtype=torch.long, device=y.device)
        return KNNResult(empty, empty.bool())
    B = num_clouds
    with torch.no_grad():
        x, y = x.detach(), y.detach()
        if x.dtype in (torch.float16, torch.bfloat16):
            x, y = x.float(), y.float()
        x, y = scale_clouds([(x, batch_x), (y, batch_y)], B)
        backend = get_backend()
        if _use_kdtree(backend, x, y):
            return KNNResult(*kdtree_knn(x, y, k, batch_x, batch_y, B))
        if backend == "torch":
            return _knn_torch(x, y, k, batch_x, batch_y, B)
        if backend == "pyg_lib":
            ptr_x, ptr_y = cloud_ptr(batch_x, B), cloud_ptr(batch_y, B)
            edges = torch.ops.pyg.knn(x, y, ptr_x, ptr_y, k, False, 1)
        else:
            import torch_cluster

            if x.device.type == "cpu" and max(x.size(0), y.size(0)) >= _ZORDER_ABOVE:
                # torch_cluster builds a kd-tree over each cloud of x on one thread; on
                # points in Z-order its build and queries read memory in order
                # (benchmarks/scaling_profile.py: 31k queries into 1M points 1.35 s -> 0.54 s).
                order_x, order_y = _zorder(x, batch_x, B), _zorder(y, batch_y, B)
                edges = torch_cluster.knn(x[order_x], y[order_y], k, batch_x, batch_y, batch_size=B)
                row, col = order_y[edges[0]], order_x[edges[1]]
                if k == 1 and row.numel() == y.size(0):  # one neighbour per query
                    index = torch.empty_like(col).scatter_(0, row, col).unsqueeze(1)
                    return KNNResult(index, torch.ones_like(index, dtype=torch.bool))
                regroup = torch.sort(row, stable=True).indices  # keeps each query's order
                return _edges_to_padded(row[regroup], col[regroup], y.size(0), k)
            edges = torch_cluster.knn(x, y, k, batch_x, batch_y, batch_size=B)
        return _edges_to_padded(edges[0], edges[1], y.size(0), k)


def _use_kdtree(backend: str, x: Tensor, y: Tensor) -> bool:
    # scipy's kd-tree on CPU is the plain-torch back-end's engine. It would also beat
    # torch_cluster.knn where the references are at least as many as the queries (one
    # thread, 1k-100k points: 0.3-0.6x its time), but it ranks in float64 where
    # torch_cluster ranks in float32: near-ties then take another order in the [M, k]
    # table, the soft projection sums in another order, and a training run drifts off the
    # published one in the last bits. So torch_cluster stays torch_cluster.
    return _KDTREE and backend == "torch" and x.device.type == "cpu"


@torch.library.impl(PADDED_KNN, ("CPU", "CUDA"))
@torch.compiler.disable
def _padded_knn_operator(
    x: Tensor, y: Tensor, k: int, batch_x: Tensor, batch_y: Tensor, num_clouds: int
) -> tuple[Tensor, Tensor]:
    # What tg_samplenet::padded_knn runs when a compiled graph calls it (eagerly).
    return tuple(_padded_knn(x, y, k, batch_x, batch_y, num_clouds))


def nearest_index(
    x: Tensor,
    y: Tensor,
    batch_x: Optional[Tensor] = None,
    batch_y: Optional[Tensor] = None,
) -> Tensor:
    r"""Index of the nearest point in :obj:`x` (same cloud) for each point in :obj:`y`,
    with the arguments and checks of :func:`padded_knn`.

    Args:
        x (torch.Tensor): Reference points :obj:`[N, D]`.
        y (torch.Tensor): Query points :obj:`[M, D]`.
        batch_x (torch.Tensor, optional): Sorted batch vector of :obj:`x`.
            (default: :obj:`None`)
        batch_y (torch.Tensor, optional): Sorted batch vector of :obj:`y`.
            (default: :obj:`None`)

    :rtype: :class:`torch.LongTensor` of shape :obj:`[M]`
    """
    return padded_knn(x, y, 1, batch_x, batch_y).index[:, 0]


def _nearest_index(
    x: Tensor, y: Tensor, batch_x: Tensor, batch_y: Tensor, num_clouds: int
) -> Tensor:
    # nearest_index for checked input.
    return _padded_knn(x, y, 1, batch_x, batch_y, num_clouds).index[:, 0]
