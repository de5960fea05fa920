r"""SampleNet's inference step: match simplified points to input points, remove duplicates
and complete with farthest point sampling."""

from __future__ import annotations

import torch
from torch import Tensor

from tg_samplenet.ops.batch import rank_in_cloud
from tg_samplenet.ops.farthest_point import farthest_point_sampling
from tg_samplenet.ops.neighbors import nearest_index

__all__ = ["first_occurrence", "hard_sample"]


def first_occurrence(index: Tensor) -> Tensor:
    r"""Boolean mask that keeps the first occurrence of each value of :obj:`index` and drops
    its repeats, preserving order (like :obj:`np.unique(..., return_index=True)` without the
    sort).

    :rtype: :class:`torch.BoolTensor` of shape :obj:`[M]`
    """
    if index.numel() == 0:
        return torch.zeros(0, dtype=torch.bool, device=index.device)
    _, inverse = torch.unique(index, return_inverse=True)
    position = torch.arange(index.numel(), device=index.device)
    first = torch.full((int(inverse.max()) + 1,), index.numel(), device=index.device)
    first = first.scatter_reduce(0, inverse, position, "amin")
    return first[inverse] == position


def hard_sample(
    pos: Tensor,
    batch: Tensor,
    simplified: Tensor,
    simplified_batch: Tensor,
    counts: Tensor,
    complete: bool = True,
) -> Tensor:
    r"""Turns simplified points :math:`\mathbf{Q}` into a subset of the input
    :math:`\mathbf{P}` (paper §3.3, Eq. 12): each :math:`\mathbf{q}` is replaced by the index
    of its nearest input point, repeats are removed per cloud keeping the first occurrence,
    the first :obj:`counts[i]` survivors are kept, and farthest point sampling continued from
    them fills each cloud up to :obj:`counts[i]`.

    Everything is batched: the nearest-neighbour search, a sort-based de-duplication over
    all clouds at once (indices are global, so repeats can only occur within a cloud) and
    :func:`~tg_samplenet.farthest_point.farthest_point_sampling`.

    Args:
        pos (torch.Tensor): Input points :obj:`[N, 3]`.
        batch (torch.LongTensor): Sorted batch vector of :obj:`pos`.
        simplified (torch.Tensor): Simplified points, grouped by cloud, :obj:`[Q, 3]`.
        simplified_batch (torch.LongTensor): Sorted batch vector of :obj:`simplified`.
        counts (torch.LongTensor): Points to return per cloud :obj:`[B]`, at most the size
            of each cloud.
        complete (bool, optional): Complete with farthest point sampling; if :obj:`False`,
            a cloud may get fewer than :obj:`counts[i]` points. (default: :obj:`True`)

    :rtype: :class:`torch.LongTensor` of indices into :obj:`pos`, grouped by cloud in batch
        order, matched points first.
    """
    B = counts.numel()
    matched = nearest_index(pos, simplified, batch, simplified_batch)
    keep = first_occurrence(matched)
    matched, matched_batch = matched[keep], simplified_batch[keep]
    keep = rank_in_cloud(matched_batch, B) < counts[matched_batch]
    matched, matched_batch = matched[keep], matched_batch[keep]
    if not complete:
        return matched

    missing = counts - torch.bincount(matched_batch, minlength=B)
    extra = farthest_point_sampling(pos, batch, missing, selected=matched)
    index = torch.cat([matched, extra])
    cloud = torch.cat([matched_batch, batch[extra]])
    return index[torch.sort(cloud, stable=True).indices]
