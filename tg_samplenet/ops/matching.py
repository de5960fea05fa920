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
from tg_samplenet.ops.neighbors import _ZORDER_ABOVE, _nearest_index, _use_kdtree, get_backend

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
    matched, matched_batch = _first_distinct_matches(
        pos, batch, simplified, simplified_batch, counts
    )
    if not complete:
        return matched

    missing = counts - torch.bincount(matched_batch, minlength=B)
    extra = _farthest_point_sampling(pos, batch, missing, selected=torch.sort(matched).values)
    index = torch.cat([matched, extra])
    cloud = torch.cat([matched_batch, batch[extra]])
    return index[torch.sort(cloud, stable=True).indices]


# A first matching round takes PREFIX_FACTOR x counts[i] + PREFIX_EXTRA simplified points of
# each cloud (a progressive sampler returns many more points than are asked for).
PREFIX_FACTOR = 2
PREFIX_EXTRA = 16


def _first_distinct_matches(
    pos: Tensor, batch: Tensor, simplified: Tensor, simplified_batch: Tensor, counts: Tensor
) -> tuple[Tensor, Tensor]:
    # The first counts[i] distinct nearest input points of each cloud's simplified points,
    # in order, and their batch vector. Only a prefix of the simplified points can hold
    # them: a first round matches a prefix of each cloud, and a cloud whose prefix holds
    # fewer distinct matches than it needs (while more simplified points follow) is matched
    # again in full. Each query's nearest point does not depend on the other queries.
    B = counts.numel()
    rank = _rank_in_cloud(simplified_batch, B)
    prefix = rank < PREFIX_FACTOR * counts[simplified_batch] + PREFIX_EXTRA
    if _same_search(pos, simplified, prefix) and not bool(prefix.all()):
        index = prefix.nonzero().view(-1)
        matched, matched_batch = _distinct_matches(
            pos, batch, simplified[index], simplified_batch[index], counts
        )
        found = torch.bincount(matched_batch, minlength=B)
        cut = torch.bincount(simplified_batch[~prefix], minlength=B) > 0
        if not bool(((found < counts) & cut).any()):  # one host sync
            return matched, matched_batch
    return _distinct_matches(pos, batch, simplified, simplified_batch, counts)


def _distinct_matches(
    pos: Tensor, batch: Tensor, simplified: Tensor, simplified_batch: Tensor, counts: Tensor
) -> tuple[Tensor, Tensor]:
    # Nearest input points, repeats dropped (first kept), at most counts[i] per cloud.
    B = counts.numel()
    matched = _nearest_index(pos, simplified, batch, simplified_batch, B)
    keep = first_occurrence(matched)
    matched, matched_batch = matched[keep], simplified_batch[keep]
    keep = _rank_in_cloud(matched_batch, B) < counts[matched_batch]
    return matched[keep], matched_batch[keep]


def _same_search(pos: Tensor, simplified: Tensor, prefix: Tensor) -> bool:
    # Whether fewer queries run the same search on the same reference points. The
    # plain-torch brute force centres each cloud on the box of its points and queries (other
    # roundings), and on CPU torch_cluster orders the references along a Z-order curve from
    # a number of points that counts the queries (that order decides exact ties).
    backend = get_backend()
    if backend == "torch":
        return _use_kdtree(backend, pos, simplified)
    if backend != "torch_cluster" or pos.device.type != "cpu":
        return True
    total = max(pos.size(0), simplified.size(0))
    fewer = max(pos.size(0), int(prefix.sum()))
    return (total >= _ZORDER_ABOVE) == (fewer >= _ZORDER_ABOVE)
