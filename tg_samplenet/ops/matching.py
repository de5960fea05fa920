r"""SampleNet's inference step (paper §3.3, Eq. 12): simplified points become a subset of the
input points, batched over clouds."""

from __future__ import annotations

from typing import Optional

import torch
from torch import Tensor
from torch_geometric.utils import to_dense_batch

from tg_samplenet.ops.batch import cloud_ptr, cloud_sizes, rank_in_cloud
from tg_samplenet.ops.checks import (
    check_bool,
    check_cloud_batch,
    check_counts,
    check_index_vector,
    check_int,
    check_like,
    check_points,
    check_references,
)
from tg_samplenet.ops.scaling import scale_clouds

__all__ = ["first_occurrence", "hard_sample", "distinct_sample"]

MATCHINGS = ("nearest", "distinct")
# A first matching round takes PREFIX_FACTOR * counts[i] + PREFIX_EXTRA simplified points.
PREFIX_FACTOR = 2
PREFIX_EXTRA = 16
# Candidates per simplified point and round of the distinct matching (speed only).
DISTINCT_CANDIDATES = 16


def first_occurrence(index: Tensor) -> Tensor:
    r"""A boolean mask that keeps the first occurrence of each value of :obj:`index`.

    Args:
        index (torch.Tensor): A 1-D integer tensor :obj:`[M]`.

    :rtype: :class:`torch.BoolTensor` of shape :obj:`[M]`
    """
    index = check_index_vector(index, "index")
    order = torch.sort(index, stable=True).indices
    ordered = index[order]
    head = torch.ones_like(index, dtype=torch.bool)
    head[1:] = ordered[1:] != ordered[:-1]
    return torch.empty_like(head).scatter_(0, order, head)


def match_sample(
    pos: Tensor,
    batch: Tensor,
    simplified: Tensor,
    simplified_batch: Tensor,
    counts: Tensor,
    matching: str,
    max_matched: Optional[int],
    complete: bool,
) -> Tensor:
    r"""The kernel (:obj:`tg_samplenet::match_sample`) of :func:`hard_sample`
    (:obj:`matching="nearest"`) and :func:`distinct_sample` (:obj:`"distinct"`)."""
    B = counts.numel()
    pos, simplified = pos.detach(), simplified.detach()
    if pos.dtype in (torch.float16, torch.bfloat16):
        pos, simplified = pos.float(), simplified.float()
    if matching == "distinct":
        limit = counts if max_matched is None else counts.clamp(max=max_matched)
        keep = rank_in_cloud(simplified_batch, B) < limit[simplified_batch]
        query, matched_batch = simplified[keep], simplified_batch[keep]
        scaled, query = scale_clouds([(pos, batch), (query, matched_batch)], B)
        matched, _ = _greedy_distinct(scaled, batch, query, matched_batch, B, DISTINCT_CANDIDATES)
    else:
        matched, matched_batch = _first_distinct_matches(
            pos, batch, simplified, simplified_batch, counts
        )
    if not complete:
        return matched
    missing = counts - cloud_sizes(matched_batch, B)
    if B == 0 or int(missing.max()) <= 0:
        return matched
    start = torch.zeros_like(counts)
    selected = torch.sort(matched).values
    extra = torch.ops.tg_samplenet.farthest_point_steps(pos, batch, missing, selected, start)
    index = torch.cat([matched, extra])
    cloud = torch.cat([matched_batch, batch[extra]])
    return index[torch.sort(cloud, stable=True).indices]


def _first_distinct_matches(
    pos: Tensor, batch: Tensor, simplified: Tensor, simplified_batch: Tensor, counts: Tensor
) -> tuple[Tensor, Tensor]:
    # The first counts[i] distinct nearest input points of each cloud's simplified points:
    # a prefix first; all of them only if some cloud's prefix holds too few.
    B = counts.numel()
    rank = rank_in_cloud(simplified_batch, B)
    prefix = rank < PREFIX_FACTOR * counts[simplified_batch] + PREFIX_EXTRA
    if not bool(prefix.all()):
        index = prefix.nonzero().view(-1)
        matched, matched_batch = _distinct_matches(
            pos, batch, simplified[index], simplified_batch[index], counts
        )
        short = cloud_sizes(matched_batch, B) < counts
        cut = cloud_sizes(simplified_batch[~prefix], B) > 0
        if not bool((short & cut).any()):
            return matched, matched_batch
    return _distinct_matches(pos, batch, simplified, simplified_batch, counts)


def _distinct_matches(
    pos: Tensor, batch: Tensor, simplified: Tensor, simplified_batch: Tensor, counts: Tensor
) -> tuple[Tensor, Tensor]:
    # Nearest input points, repeats dropped (first kept), at most counts[i] per cloud.
    B = counts.numel()
    matched = torch.ops.tg_samplenet.knn(pos, simplified, 1, batch, simplified_batch, B)[0][:, 0]
    keep = first_occurrence(matched)
    matched, matched_batch = matched[keep], simplified_batch[keep]
    keep = rank_in_cloud(matched_batch, B) < counts[matched_batch]
    return matched[keep], matched_batch[keep]


def _check_sampling(pos, batch, simplified, simplified_batch, counts, complete):
    check_points(pos, "pos", dim=None)
    check_points(simplified, "simplified", dim=None)
    check_like(pos, simplified, "pos", "simplified")
    batch, clouds = check_cloud_batch(batch, pos, "batch")
    simplified_batch, simplified_clouds = check_cloud_batch(
        simplified_batch, simplified, "simplified_batch", pos_name="simplified"
    )
    B = max(clouds, simplified_clouds)
    if isinstance(counts, Tensor) and counts.dim() == 1:
        B = max(B, counts.numel())
    counts = check_counts(counts, "counts", cloud_sizes(batch, B))
    check_references(batch, simplified_batch, B, "pos", "simplified")
    check_bool(complete, "complete")
    return batch, simplified_batch, counts


def hard_sample(
    pos: Tensor,
    batch: Optional[Tensor],
    simplified: Tensor,
    simplified_batch: Optional[Tensor],
    counts: Tensor,
    complete: bool = True,
) -> Tensor:
    r"""SampleNet's inference step from the `"SampleNet: Differentiable Point Cloud Sampling"
    <https://arxiv.org/abs/1912.03663>`_ paper (§3.3, Eq. 12): each simplified point is
    replaced by its nearest input point, repeats dropped per cloud (the first kept), and
    farthest point sampling continued from the first :obj:`counts[i]` survivors
    (:func:`~tg_samplenet.ops.farthest_point_sampling`) fills each cloud up.

    Args:
        pos (torch.Tensor): Input points :obj:`[N, D]`.
        batch (torch.Tensor, optional): Sorted batch vector
            :math:`\mathbf{b} \in {\{ 0, \ldots, B-1\}}^N` of :obj:`pos`.
        simplified (torch.Tensor): Simplified points :obj:`[Q, D]`, grouped by cloud, in the
            network's order, of :obj:`pos`'s dtype.
        simplified_batch (torch.Tensor, optional): Sorted batch vector of :obj:`simplified`.
        counts (torch.Tensor): Points to return per cloud :obj:`[B]`, at most its size.
        complete (bool, optional): Complete with farthest point sampling; if :obj:`False` a
            cloud may get fewer than :obj:`counts[i]` points. (default: :obj:`True`)

    :rtype: :class:`torch.LongTensor` of indices into :obj:`pos`, unique within each cloud,
        grouped by cloud in batch order, matched points first
    """
    batch, simplified_batch, counts = _check_sampling(
        pos, batch, simplified, simplified_batch, counts, complete
    )
    return torch.ops.tg_samplenet.match_sample(
        pos, batch, simplified, simplified_batch, counts, "nearest", None, complete
    )


def distinct_sample(
    pos: Tensor,
    batch: Optional[Tensor],
    simplified: Tensor,
    simplified_batch: Optional[Tensor],
    counts: Tensor,
    max_matched: Optional[int] = None,
    complete: bool = True,
) -> Tensor:
    r"""Matches the first :obj:`counts[i]` simplified points of each cloud to as many
    *distinct* input points, greedily in order of distance: of all pairs of a cloud whose
    :math:`\mathbf{q}` and :math:`\mathbf{p}` are both free, the pair

    .. math::
        (\mathbf{q}, \mathbf{p}) = \operatorname*{arg\,min}_{\mathbf{q} \in Q_{\text{free}},
        \, \mathbf{p} \in P_{\text{free}}} \|\mathbf{q} - \mathbf{p}\|^2

    is matched next, so that a :math:`\mathbf{q}` whose nearest point is taken gets its
    nearest free one (:func:`hard_sample` refills repeats by farthest point sampling).

    .. code-block:: python

        pos = torch.tensor([[0.0, 0, 0], [1, 0, 0], [3, 0, 0]])
        q = torch.tensor([[0.1, 0, 0], [0.2, 0, 0]])
        zeros = torch.zeros(3, dtype=torch.long)
        distinct_sample(pos, zeros, q, zeros[:2], torch.tensor([2]))
        # tensor([0, 1]): the second gets the next free point (hard_sample gives [0, 2])

    Args:
        pos (torch.Tensor): Input points :obj:`[N, D]`.
        batch (torch.Tensor, optional): Sorted batch vector of :obj:`pos`.
        simplified (torch.Tensor): Simplified points :obj:`[Q, D]`, grouped by cloud.
        simplified_batch (torch.Tensor, optional): Sorted batch vector of :obj:`simplified`.
        counts (torch.Tensor): Points to return per cloud :obj:`[B]`, at most its size.
        max_matched (int, optional): Match at most this many simplified points per cloud
            and complete with farthest point sampling. (default: :obj:`None`: no limit)
        complete (bool, optional): Complete clouds with fewer matches than
            :obj:`counts[i]` by farthest point sampling. (default: :obj:`True`)

    :rtype: :class:`torch.LongTensor` of indices into :obj:`pos`, unique within each cloud,
        grouped by cloud in batch order: the :math:`j`-th matched to the :math:`j`-th
        simplified point of its cloud, then the farthest points
    """
    batch, simplified_batch, counts = _check_sampling(
        pos, batch, simplified, simplified_batch, counts, complete
    )
    if max_matched is not None:
        max_matched = check_int(max_matched, "max_matched", minimum=0)
    return torch.ops.tg_samplenet.match_sample(
        pos, batch, simplified, simplified_batch, counts, "distinct", max_matched, complete
    )


def _greedy_distinct(
    pos: Tensor, batch: Tensor, query: Tensor, query_batch: Tensor, num_clouds: int, k: int
) -> tuple[Tensor, int]:
    # Rounds of locally dominant pairs: (q, p) is matched when p is q's nearest free
    # candidate and no free q, listing p or not (its unlisted points lie beyond its farthest
    # candidate), can be nearer to p.
    M, N = query.size(0), pos.size(0)
    device = pos.device
    out = torch.full((M,), -1, dtype=torch.long, device=device)
    p_free = torch.ones(N, dtype=torch.bool, device=device)
    width = min(k, max(N, 1))
    if M == 0:
        return out, 0
    cand, valid = torch.ops.tg_samplenet.knn(
        pos, query, width, batch, query_batch, num_clouds
    )  # [A, width] rows of the active (free) q's
    dist = (pos[cand] - query.unsqueeze(1)).pow(2).sum(-1)
    listed_all = (cloud_sizes(batch, num_clouds) <= width)[query_batch]
    active = torch.arange(M, device=device)
    ptr = cloud_ptr(batch, num_clouds)
    dense = to_dense_batch(pos, batch, batch_size=num_clouds)[0]
    rounds = 0
    while active.numel() > 0:
        rounds += 1
        active_batch = query_batch[active]
        avail = valid & p_free[cand]
        stale = ~avail.any(1)
        if bool(stale.any()):  # all candidates taken: search the free points again
            r = stale.nonzero().view(-1)
            cand[r], valid[r] = _nearest_free(
                dense, ptr, p_free, query[active[r]], active_batch[r], width
            )
            dist[r] = (pos[cand[r]] - query[active[r]].unsqueeze(1)).pow(2).sum(-1)
            free_per_cloud = torch.bincount(batch[p_free], minlength=num_clouds)
            listed_all[r] = free_per_cloud[active_batch[r]] <= width
            avail[r] = valid[r] & p_free[cand[r]]

        d = torch.where(avail, dist, float("inf"))
        best, slot = d.min(1)
        best_p = cand.gather(1, slot.unsqueeze(1)).view(-1)
        p_min = torch.full((N,), float("inf"), dtype=dist.dtype, device=device)
        p_min = p_min.scatter_reduce(0, cand[avail], d[avail], "amin")
        reach = torch.where(valid, dist, float("-inf")).max(1).values
        reach = torch.where(listed_all, float("inf"), reach)
        bound = torch.full((num_clouds,), float("inf"), dtype=dist.dtype, device=device)
        bound = bound.scatter_reduce(0, active_batch, reach, "amin")
        accept = (best == p_min[best_p]) & (best <= bound[active_batch]) & torch.isfinite(best)
        winners = accept.nonzero().view(-1)
        winners = winners[first_occurrence(best_p[winners])]  # exact ties: lowest q wins
        out[active[winners]] = best_p[winners]
        p_free[best_p[winners]] = False
        still = torch.ones(active.numel(), dtype=torch.bool, device=device)
        still[winners] = False
        active, cand, valid = active[still], cand[still], valid[still]
        dist, listed_all = dist[still], listed_all[still]
    return out, rounds


def _nearest_free(
    dense: Tensor, ptr: Tensor, p_free: Tensor, query: Tensor, query_batch: Tensor, k: int
) -> tuple[Tensor, Tensor]:
    # The k nearest free points of each query by brute force over the padded clouds, in
    # chunks of about 4M distances (such queries are few; a tree would change every round).
    B, n_max, _ = dense.shape
    local = torch.arange(n_max, device=dense.device)
    slot = ptr[:-1].unsqueeze(1) + local  # [B, n_max] global index of each padded slot
    free = (local < (ptr[1:] - ptr[:-1]).unsqueeze(1)) & p_free[slot.clamp(max=p_free.numel() - 1)]
    k = min(k, n_max)
    index, mask = [], []
    step = max(1, (1 << 22) // max(n_max, 1))
    for start in range(0, query.size(0), step):
        b = query_batch[start : start + step]
        d = (dense[b] - query[start : start + step].unsqueeze(1)).pow(2).sum(-1)
        d = d.masked_fill(~free[b], float("inf"))
        value, arg = d.topk(k, dim=1, largest=False)
        index.append(slot[b].gather(1, arg))
        mask.append(torch.isfinite(value))
    index, mask = torch.cat(index), torch.cat(mask)
    return torch.where(mask, index, index[:, :1]), mask
