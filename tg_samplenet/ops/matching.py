r"""SampleNet's inference step: match simplified points to input points, remove duplicates
and complete with farthest point sampling."""

from __future__ import annotations

from typing import Optional

import torch
from torch import Tensor

from tg_samplenet.ops.batch import _rank_in_cloud, cloud_sizes
from tg_samplenet.ops.checks import (
    check_bool,
    check_cloud_batch,
    check_counts,
    check_counts_fit,
    check_index_vector,
    check_matching_points,
    check_points,
    check_references,
)
from tg_samplenet.ops.farthest_point import _farthest_point_sampling
from tg_samplenet.ops.neighbors import _nearest_index

__all__ = ["first_occurrence", "hard_sample"]


def first_occurrence(index: Tensor) -> Tensor:
    r"""Boolean mask that keeps the first occurrence of each value of :obj:`index` and drops
    its repeats, preserving order (like :obj:`np.unique(..., return_index=True)` without the
    sort).

    Args:
        index (torch.LongTensor): Any 1-D integer tensor :obj:`[M]`.

    :rtype: :class:`torch.BoolTensor` of shape :obj:`[M]`
    """
    index = check_index_vector(index, "index")
    if index.numel() == 0:
        return torch.zeros(0, dtype=torch.bool, device=index.device)
    # A stable sort puts each value's first occurrence at the head of its run: static
    # shapes, no read of a value (torch.unique's output size depends on the values).
    order = torch.sort(index, stable=True).indices
    ordered = index[order]
    head = torch.ones_like(index, dtype=torch.bool)
    head[1:] = ordered[1:] != ordered[:-1]
    return torch.empty_like(head).scatter_(0, order, head)


def hard_sample(
    pos: Tensor,
    batch: Optional[Tensor],
    simplified: Tensor,
    simplified_batch: Optional[Tensor],
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
    :func:`~tg_samplenet.ops.farthest_point_sampling`.

    Args:
        pos (torch.Tensor): Input points :obj:`[N, D]`, finite, floating point.
        batch (torch.LongTensor, optional): Sorted batch vector of :obj:`pos`.
        simplified (torch.Tensor): Simplified points, grouped by cloud, :obj:`[Q, D]`, of
            the dtype of :obj:`pos`; a cloud with simplified points needs input points.
        simplified_batch (torch.LongTensor, optional): Sorted batch vector of
            :obj:`simplified`.
        counts (torch.LongTensor): Points to return per cloud :obj:`[B]`, between 0 and the
            size of each cloud; its length is the number of clouds.
        complete (bool, optional): Complete with farthest point sampling; if :obj:`False`,
            a cloud may get fewer than :obj:`counts[i]` points. (default: :obj:`True`)

    :rtype: :class:`torch.LongTensor` of indices into :obj:`pos`, grouped by cloud in batch
        order, matched points first.
    """
    batch, simplified_batch, counts = check_sampling_inputs(
        pos, batch, simplified, simplified_batch, counts
    )
    check_bool(complete, "complete")
    return _hard_sample(pos, batch, simplified, simplified_batch, counts, complete)


def check_sampling_inputs(
    pos: Tensor,
    batch: Optional[Tensor],
    simplified: Tensor,
    simplified_batch: Optional[Tensor],
    counts: Tensor,
) -> tuple[Tensor, Tensor, Tensor]:
    r"""The checks of a hard sampling's input (see :func:`hard_sample`): points of one
    dtype and dimension, sorted batch vectors, one count per cloud that fits its cloud, input
    points for every cloud with simplified points. Returns the checked :obj:`batch`,
    :obj:`simplified_batch` and :obj:`counts`."""
    check_points(pos, "pos", dim=None)
    check_points(simplified, "simplified", dim=None)
    check_matching_points(pos, simplified, "pos", "simplified")
    batch, clouds = check_cloud_batch(batch, pos, "batch")
    simplified_batch, simplified_clouds = check_cloud_batch(
        simplified_batch, simplified, "simplified_batch", pos_name="simplified"
    )
    counts = check_counts(counts, "counts", max(clouds, simplified_clouds))
    check_counts_fit(counts, "counts", cloud_sizes(batch, counts.numel()), "points")
    check_references(batch, simplified_batch, counts.numel(), "pos", "simplified")
    return batch, simplified_batch, counts


def _hard_sample(
    pos: Tensor,
    batch: Tensor,
    simplified: Tensor,
    simplified_batch: Tensor,
    counts: Tensor,
    complete: bool = True,
) -> Tensor:
    # hard_sample for checked input.
    B = counts.numel()
    matched = _nearest_index(pos, simplified, batch, simplified_batch, B)
    keep = first_occurrence(matched)
    matched, matched_batch = matched[keep], simplified_batch[keep]
    keep = _rank_in_cloud(matched_batch, B) < counts[matched_batch]
    matched, matched_batch = matched[keep], matched_batch[keep]
    if not complete:
        return matched

    missing = counts - torch.bincount(matched_batch, minlength=B)
    extra = _farthest_point_sampling(pos, batch, missing, selected=torch.sort(matched).values)
    index = torch.cat([matched, extra])
    cloud = torch.cat([matched_batch, batch[extra]])
    return index[torch.sort(cloud, stable=True).indices]
