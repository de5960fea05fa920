r"""Farthest point sampling that can continue from an already chosen set, batched over clouds
of any sizes, and :func:`fps` with :func:`torch_geometric.nn.fps`'s contract on every
back-end."""

from __future__ import annotations

from typing import Optional

import torch
from torch import Tensor

from tg_samplenet.ops.batch import _sample_counts, cloud_ptr, cloud_sizes
from tg_samplenet.ops.checks import (
    InputTypeError,
    check_bool,
    check_cloud_batch,
    check_counts,
    check_counts_fit,
    check_index,
    check_points,
    check_ratio,
)
from tg_samplenet.ops.custom_ops import FARTHEST_POINT_SAMPLING, is_compiling
from tg_samplenet.ops.neighbors import _nearest_index, _zorder, get_backend
from tg_samplenet.ops.pruned_fps import lower_distances, pruned_fps_steps
from tg_samplenet.ops.scaling import scale_clouds

__all__ = ["farthest_point_sampling", "fps"]


def farthest_point_sampling(
    pos: Tensor,
    batch: Optional[Tensor],
    counts: Tensor,
    selected: Optional[Tensor] = None,
    random_start: bool = False,
    generator: Optional[torch.Generator] = None,
) -> Tensor:
    r"""Farthest point sampling (`"PointNet++" <https://arxiv.org/abs/1706.02413>`_) that
    *continues* from an already selected set, as SampleNet's inference completes its matched
    points:

    .. math::
        p_{\text{next}} = \operatorname*{arg\,max}_{p \in P_i \setminus S_i}
        \min_{s \in S_i} \| p - s \|^2

    All clouds advance together, one step per new point, on a dense :obj:`[B, N_max]`
    distance table: the Python loop runs over steps, never over clouds. A cloud with an
    empty :math:`S_i` starts from its first point (or a random one). Ties go to the lowest
    index. For clouds of 32768 points or more, the points are ordered along a Z-order curve
    in chunks, and a step only updates the chunks whose bounding box the new point can
    affect, so that a step costs far less than :math:`O(N)`; exact ties may then be broken
    in another order. When every cloud that needs points continues from selected points
    (SampleNet's completion of its matches) and :obj:`random_start` is :obj:`False`, the steps
    run only on the points that can be picked
    (:func:`~tg_samplenet.ops.pruned_fps.pruned_fps_steps`), with the dense steps' picks and
    ties. Distances are computed on each cloud scaled by a power of two (exact),
    so that no coordinate range overflows; half-precision points are sampled in float32.

    Args:
        pos (torch.Tensor): Points :obj:`[N, D]`, finite, floating point.
        batch (torch.LongTensor, optional): Sorted batch vector :obj:`[N]`; :obj:`None` for
            one cloud.
        counts (torch.LongTensor): How many *new* points to pick per cloud, :obj:`[B]`; at
            least 0 and at most the number of unselected points of that cloud. Its length
            is the number of clouds (at least the largest batch id plus one).
        selected (torch.LongTensor, optional): Indices into :obj:`pos` already chosen,
            :math:`S`, in any order (repeats count once). They are never picked again.
            (default: :obj:`None`)
        random_start (bool, optional): Start clouds with an empty :math:`S_i` at a random
            point. (default: :obj:`False`)
        generator (torch.Generator, optional): Random source for :obj:`random_start`.
            (default: :obj:`None`)

    :rtype: :class:`torch.LongTensor` with :obj:`counts.sum()` new indices into :obj:`pos`,
        grouped by cloud in batch order, in the order they were picked.
    """
    check_points(pos, "pos", dim=None)
    batch, implied = check_cloud_batch(batch, pos, "batch")
    counts = check_counts(counts, "counts", implied)
    B = counts.numel()
    available = cloud_sizes(batch, B)
    if selected is not None:
        selected = torch.unique(check_index(selected, "selected", pos.size(0), "points of pos"))
        available = available - cloud_sizes(batch[selected], B)
    check_counts_fit(counts, "counts", available, "unselected points")
    check_bool(random_start, "random_start")
    if generator is not None and not isinstance(generator, torch.Generator):
        raise InputTypeError(
            "generator",
            f"generator must be a torch.Generator or None (got {type(generator).__name__})",
        )
    return _farthest_point_sampling(pos, batch, counts, selected, random_start, generator)


def _farthest_point_sampling(
    pos: Tensor,
    batch: Tensor,
    counts: Tensor,
    selected: Optional[Tensor] = None,
    random_start: bool = False,
    generator: Optional[torch.Generator] = None,
) -> Tensor:
    # farthest_point_sampling for checked input (selected unique, counts that fit).
    from torch_geometric.utils import to_dense_batch

    if is_compiling() and generator is None:  # a loop of counts.max() steps: one operator
        return torch.ops.tg_samplenet.farthest_point_sampling(
            pos.detach(), batch, counts, selected, random_start
        )
    B = counts.numel()
    steps = int(counts.max()) if B > 0 else 0
    if steps == 0:
        return torch.empty(0, dtype=torch.long, device=pos.device)

    pos = pos.detach()
    if pos.dtype in (torch.float16, torch.bfloat16):
        pos = pos.float()
    (pos,) = scale_clouds([(pos, batch)], B)
    ptr = cloud_ptr(batch, B)

    # Distance of every point to the selected set: +inf where a cloud has none yet, so the
    # first argmax picks the cloud's first point; -1 marks chosen points.
    dist = torch.full((pos.size(0),), float("inf"), dtype=pos.dtype, device=pos.device)
    seeded = torch.zeros(B, dtype=torch.bool, device=pos.device)
    if selected is not None and selected.numel() > 0:
        seeded[batch[selected]] = True
        query = seeded[batch].nonzero().view(-1)
        pruned = not random_start and not bool(((counts > 0) & ~seeded).any())
        dist[query] = _selected_distances(pos, batch, selected, query, B)
        dist[selected] = -1.0
        if pruned:
            # Every cloud continues from its selected points (hard sampling's completion):
            # only the points farthest from them can be picked, the same picks as below.
            return pruned_fps_steps(pos, batch, dist, counts, B)

    dense, valid = to_dense_batch(pos, batch, batch_size=B)  # [B, Nmax, D]
    rank = torch.arange(batch.numel(), device=pos.device) - ptr[batch]
    dist = to_dense_batch(dist, batch, float("-inf"), batch_size=B)[0]  # -inf: padding

    first = dist.argmax(dim=1)
    if random_start:
        sizes = ptr[1:] - ptr[:-1]
        device = generator.device if generator is not None else "cpu"
        rnd = torch.rand(B, generator=generator, device=device).to(pos.device)
        start = (rnd * sizes).long().clamp(max=(sizes - 1).clamp(min=0))
        first = torch.where(seeded, first, start)

    planes = dense.permute(2, 0, 1).contiguous()  # [D, B, Nmax], one plane per coordinate
    if valid.size(1) >= _CHUNKED_ABOVE:
        # Each row's positions in Z-order, padding positions last (in place).
        order = to_dense_batch(rank[_zorder(pos, batch, B)], batch, batch_size=B)[0]
        slots = torch.arange(valid.size(1), device=pos.device).expand_as(order)
        order = torch.where(valid, order, slots)
        picked = _steps_chunked(planes, valid, dist, first, steps, order)
    else:
        picked = _steps_dense(planes, dist, first, steps)
    keep = torch.arange(steps, device=pos.device).unsqueeze(0) < counts.unsqueeze(1)
    return (picked + ptr[:-1].unsqueeze(1))[keep]


# Clouds are compared with all their selected points at once up to this many point pairs
# per block (the nearest-neighbour search's build and calls cost more below it).
_PAIRS_PER_BLOCK = 1 << 16
_DENSE_PAIRS = 1 << 21


def _selected_distances(
    pos: Tensor, batch: Tensor, selected: Tensor, query: Tensor, num_clouds: int
) -> Tensor:
    # The squared distance of each query point to the nearest selected point of its cloud,
    # as (q - s).pow(2).sum(-1) in pos's dtype: the minimum of that expression over the
    # cloud's selected points. The nearest-neighbour search finds the point that attains
    # it; on small clouds a dense comparison with all selected points finds the same
    # minimum without building a search structure. selected is sorted (torch.unique), so
    # its batch vector is sorted too.
    from torch_geometric.utils import to_dense_batch

    B = num_clouds
    q, q_batch = pos[query], batch[query]
    s, s_batch = pos[selected], batch[selected]
    q_size, s_size = cloud_sizes(q_batch, B), cloud_sizes(s_batch, B)
    q_max, s_max = torch.stack([q_size.max(), s_size.max()]).tolist()  # one host sync
    if B * q_max * s_max > _DENSE_PAIRS:
        near = _nearest_index(s, q, s_batch, q_batch, B)
        return (q - s[near]).pow(2).sum(-1)
    # One plane per coordinate, [D, B, 1, S_max] and [D, B, Q_max, 1]. Padding of the
    # selected points lies 2^60 away: farther than any point (coordinates are scaled below
    # 2^3), and its squares do not overflow.
    dense_s = to_dense_batch(s, s_batch, 2.0**60, batch_size=B)[0]
    planes_s = dense_s.permute(2, 0, 1).unsqueeze(2).contiguous()
    dense_q, q_valid = to_dense_batch(q, q_batch, batch_size=B)
    planes_q = dense_q.permute(2, 0, 1).unsqueeze(3).contiguous()
    block = max(1, _PAIRS_PER_BLOCK // max(1, B * s_max))
    parts = []
    for start in range(0, q_max, block):
        d = _squared_distances(planes_q[:, :, start : start + block], planes_s)
        parts.append(d.amin(-1))  # [B, block]
    return torch.cat(parts, 1)[q_valid]


def _squared_distances(planes_a: Tensor, planes_b: Tensor) -> Tensor:
    # Sum over the coordinate planes [D, ...] of (a - b)^2, added up axis by axis as
    # (a - b).pow(2).sum(-1) adds it (no fused multiply-add), so that the values are equal.
    d = (planes_a[0] - planes_b[0]).square_()
    for axis in range(1, planes_a.size(0)):
        d.add_((planes_a[axis] - planes_b[axis]).square_())
    return d


@torch.library.impl(FARTHEST_POINT_SAMPLING, ("CPU", "CUDA"))
@torch.compiler.disable
def _farthest_point_sampling_operator(
    pos: Tensor, batch: Tensor, counts: Tensor, selected: Optional[Tensor], random_start: bool
) -> Tensor:
    # What tg_samplenet::farthest_point_sampling runs when a compiled graph calls it.
    return _farthest_point_sampling(pos, batch, counts, selected, random_start)


# Clouds of at least this many points update only the chunks a new point can reach.
_CHUNKED_ABOVE = 1 << 15
_CHUNK = 1024


def _steps_dense(planes: Tensor, dist: Tensor, first: Tensor, steps: int) -> Tensor:
    # Every step updates the whole [B, Nmax] table with a few in-place passes.
    B = dist.size(0)
    arange = torch.arange(B, device=dist.device)
    d, diff = torch.empty_like(dist), torch.empty_like(dist)
    picked = torch.empty((B, steps), dtype=torch.long, device=dist.device)
    for step in range(steps):
        far = first if step == 0 else dist.argmax(dim=1)
        picked[:, step] = far
        lower_distances(planes, dist, far, arange, d, diff)
    return picked


def _steps_chunked(
    planes: Tensor, valid: Tensor, dist: Tensor, first: Tensor, steps: int, order: Tensor
) -> Tensor:
    # The same steps as _steps_dense on points sorted along a Z-order curve and cut into
    # chunks. A new point p can only lower distances in chunks whose bounding box lies
    # closer to p than the chunk's largest distance, so each step touches a few chunks and
    # finds the next point from the chunk maxima: the cost per step no longer grows with N.
    B, n = dist.shape
    size = -(-n // _CHUNK) * _CHUNK
    order = torch.cat([order, order.new_zeros(B, size - n)], 1)  # padding slots -> dummy
    pad = torch.arange(size, device=dist.device) >= n
    inside = valid.gather(1, order[:, :n])
    inside = torch.cat([inside, inside.new_zeros(B, size - n)], 1) & ~pad
    D = planes.size(0)
    pts = planes.gather(2, order.unsqueeze(0).expand(D, -1, -1))  # [D, B, size]
    table = dist.gather(1, order[:, :n])
    table = torch.cat([table, table.new_full((B, size - n), float("-inf"))], 1)
    table = table.masked_fill(~inside, float("-inf")).view(B, -1, _CHUNK)
    pts = pts.view(D, B, -1, _CHUNK)
    big = torch.finfo(pts.dtype).max
    mask = inside.view(1, B, -1, _CHUNK)
    low = pts.masked_fill(~mask, big).amin(-1)  # [D, B, chunks]
    high = pts.masked_fill(~mask, -big).amax(-1)
    chunk_max = table.amax(-1)  # [B, chunks]
    # The slot of each position; the padding slots past n (all pointing at position 0)
    # are left out, so that they cannot stand for position 0.
    slot_of = torch.empty_like(order[:, :n])
    slot_of.scatter_(1, order[:, :n], torch.arange(n, device=dist.device).expand(B, -1))

    arange = torch.arange(B, device=dist.device)
    picked = torch.empty((B, steps), dtype=torch.long, device=dist.device)
    for step in range(steps):
        if step == 0:
            slot = slot_of[arange, first]
            chunk, within = slot // _CHUNK, slot % _CHUNK
        else:
            chunk = chunk_max.argmax(1)
            within = table[arange, chunk].argmax(1)
        picked[:, step] = order[arange, chunk * _CHUNK + within]
        new = pts[:, arange, chunk, within]  # [D, B]
        gap = (low - new.unsqueeze(-1)).clamp(min=0) + (new.unsqueeze(-1) - high).clamp(min=0)
        touch = gap.pow(2).sum(0) < chunk_max
        touch[arange, chunk] = True
        b, c = touch.nonzero(as_tuple=True)
        d = (pts[:, b, c] - new[:, b].unsqueeze(-1)).pow(2).sum(0)  # [T, CHUNK]
        table[b, c] = torch.minimum(table[b, c], d)
        table[arange, chunk, within] = -1.0
        chunk_max[b, c] = table[b, c].amax(-1)
    return picked


def fps(
    x: Tensor,
    batch: Optional[Tensor] = None,
    ratio: float = 0.5,
    random_start: bool = True,
    batch_size: Optional[int] = None,
) -> Tensor:
    r"""Farthest point sampling (`"PointNet++" <https://arxiv.org/abs/1706.02413>`_) with
    :func:`torch_geometric.nn.fps`'s contract on every back-end, pyg-lib and torch_cluster
    included and none needed: :math:`\lceil n_i \cdot r \rceil` points per cloud (computed
    in float32), grouped by cloud in batch order, each cloud's start point first, never an
    index twice within a cloud (torch_cluster repeats one on clouds with fewer distinct
    points than it samples; such input goes to the plain-PyTorch path). Empty clouds get no
    points (where torch_cluster would end the process).

    Args:
        x (torch.Tensor): Points :obj:`[N, D]`, finite, floating point.
        batch (torch.Tensor, optional): Sorted batch vector. (default: :obj:`None`)
        ratio (float, optional): Sampling ratio in :math:`(0, 1]`. (default: :obj:`0.5`)
        random_start (bool, optional): Start each cloud at a random point instead of its
            first one. (default: :obj:`True`)
        batch_size (int, optional): The number of clouds, for trailing empty ones; at least
            the largest batch id plus one. (default: :obj:`None`)

    :rtype: :class:`torch.LongTensor`
    """
    check_points(x, "x", dim=None)
    ratio = check_ratio(ratio)
    check_bool(random_start, "random_start")
    batch, B = check_cloud_batch(batch, x, "batch", batch_size, "batch_size", pos_name="x")
    return _fps(x, batch, ratio, random_start, B)


def _fps(x: Tensor, batch: Tensor, ratio: float, random_start: bool, num_clouds: int) -> Tensor:
    # fps for checked input.
    if x.size(0) == 0:
        return torch.empty(0, dtype=torch.long, device=x.device)
    B = num_clouds
    sizes = cloud_sizes(batch, B)
    backend = get_backend()
    if backend == "torch" or bool((sizes == 0).any()):
        # torch_cluster's fps kills the process on an empty cloud (rand() % 0).
        counts = _sample_counts(sizes, ratio=ratio)
        return _farthest_point_sampling(x, batch, counts, random_start=random_start)
    x = x.detach()
    if x.dtype in (torch.float16, torch.bfloat16):
        x = x.float()
    (x,) = scale_clouds([(x, batch)], B)
    if backend == "pyg_lib":
        index = torch.ops.pyg.fps(x, cloud_ptr(batch, B), ratio, random_start)
    else:
        import torch_cluster

        index = torch_cluster.fps(x, batch, ratio, random_start)
    if _repeats(index):
        # A cloud with fewer distinct points than it samples: the compiled back-ends then
        # pick an already chosen point again, the plain-PyTorch steps never do.
        counts = _sample_counts(sizes, ratio=ratio)
        return _farthest_point_sampling(x, batch, counts, random_start=random_start)
    return index


def _repeats(index: Tensor) -> bool:
    # Whether any index occurs twice (indices are global, so across clouds they differ).
    # One host sync on CUDA.
    ordered = torch.sort(index).values
    return bool((ordered[1:] == ordered[:-1]).any())
