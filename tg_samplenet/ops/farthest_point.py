r"""Farthest point sampling that can continue from an already chosen set, batched over clouds
of any sizes, and :func:`fps` with :func:`torch_geometric.nn.fps`'s contract on every
back-end."""

from __future__ import annotations

from typing import Optional

import torch
from torch import Tensor

from tg_samplenet.ops.batch import cloud_ptr, cloud_sizes, default_batch, num_clouds, sample_counts
from tg_samplenet.ops.checks import check_ratio
from tg_samplenet.ops.neighbors import get_backend, nearest_index, zorder

__all__ = ["farthest_point_sampling", "fps"]


def farthest_point_sampling(
    pos: Tensor,
    batch: Tensor,
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
    in another order.

    Args:
        pos (torch.Tensor): Points :obj:`[N, 3]`.
        batch (torch.LongTensor): Sorted batch vector :obj:`[N]`.
        counts (torch.LongTensor): How many *new* points to pick per cloud, :obj:`[B]`; at
            most the number of unselected points of that cloud.
        selected (torch.LongTensor, optional): Indices into :obj:`pos` already chosen,
            :math:`S`. They are never picked again. (default: :obj:`None`)
        random_start (bool, optional): Start clouds with an empty :math:`S_i` at a random
            point. (default: :obj:`False`)
        generator (torch.Generator, optional): Random source for :obj:`random_start`.
            (default: :obj:`None`)

    :rtype: :class:`torch.LongTensor` with :obj:`counts.sum()` new indices into :obj:`pos`,
        grouped by cloud in batch order, in the order they were picked.
    """
    from torch_geometric.utils import to_dense_batch

    B = counts.numel()
    steps = int(counts.max()) if B > 0 else 0
    if steps == 0:
        return torch.empty(0, dtype=torch.long, device=pos.device)

    ptr = cloud_ptr(batch, B)
    dense, valid = to_dense_batch(pos.detach(), batch, batch_size=B)  # [B, Nmax, 3]
    rank = torch.arange(batch.numel(), device=pos.device) - ptr[batch]

    # Distance of every point to the selected set: +inf where a cloud has none yet, so the
    # first argmax picks the cloud's first point; -inf marks padding, -1 chosen points.
    dist = torch.full(valid.shape, float("inf"), dtype=dense.dtype, device=pos.device)
    seeded = torch.zeros(B, dtype=torch.bool, device=pos.device)
    if selected is not None and selected.numel() > 0:
        seeded[batch[selected]] = True
        query = seeded[batch].nonzero().view(-1)
        near = nearest_index(pos[selected], pos[query], batch[selected], batch[query])
        d = (pos[query].detach() - pos[selected][near].detach()).pow(2).sum(-1)
        dist[batch[query], rank[query]] = d
        dist[batch[selected], rank[selected]] = -1.0
    dist = dist.masked_fill(~valid, float("-inf"))

    first = dist.argmax(dim=1)
    if random_start:
        sizes = ptr[1:] - ptr[:-1]
        rnd = torch.rand(B, generator=generator).to(pos.device)
        start = (rnd * sizes).long().clamp(max=(sizes - 1).clamp(min=0))
        first = torch.where(seeded, first, start)

    planes = dense.permute(2, 0, 1).contiguous()  # [3, B, Nmax], one plane per coordinate
    if valid.size(1) >= _CHUNKED_ABOVE:
        # Each row's positions in Z-order, padding positions last (in place).
        order = to_dense_batch(rank[zorder(pos.detach(), batch, B)], batch, batch_size=B)[0]
        slots = torch.arange(valid.size(1), device=pos.device).expand_as(order)
        order = torch.where(valid, order, slots)
        picked = _steps_chunked(planes, valid, dist, first, steps, order)
    else:
        picked = _steps_dense(planes, dist, first, steps)
    keep = torch.arange(steps, device=pos.device).unsqueeze(0) < counts.unsqueeze(1)
    return (picked + ptr[:-1].unsqueeze(1))[keep]


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
        new = planes[:, arange, far].unsqueeze(-1)  # [3, B, 1]
        torch.sub(planes[0], new[0], out=d).square_()
        for axis in (1, 2):
            torch.sub(planes[axis], new[axis], out=diff)
            d.addcmul_(diff, diff)
        torch.minimum(dist, d, out=dist)
        dist[arange, far] = -1.0
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
    pts = planes.gather(2, order.unsqueeze(0).expand(3, -1, -1))  # [3, B, size]
    table = dist.gather(1, order[:, :n])
    table = torch.cat([table, table.new_full((B, size - n), float("-inf"))], 1)
    table = table.masked_fill(~inside, float("-inf")).view(B, -1, _CHUNK)
    pts = pts.view(3, B, -1, _CHUNK)
    big = torch.finfo(pts.dtype).max
    mask = inside.view(1, B, -1, _CHUNK)
    low = pts.masked_fill(~mask, big).amin(-1)  # [3, B, chunks]
    high = pts.masked_fill(~mask, -big).amax(-1)
    chunk_max = table.amax(-1)  # [B, chunks]
    slot_of = torch.empty_like(order)
    slot_of.scatter_(1, order, torch.arange(size, device=dist.device).expand(B, -1))

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
        new = pts[:, arange, chunk, within]  # [3, B]
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
    in float32), grouped by cloud in batch order, each cloud's start point first. Empty clouds
    get no points (where torch_cluster would end the process).

    Args:
        x (torch.Tensor): Points :obj:`[N, D]`.
        batch (torch.Tensor, optional): Sorted batch vector. (default: :obj:`None`)
        ratio (float, optional): Sampling ratio in :math:`(0, 1]`. (default: :obj:`0.5`)
        random_start (bool, optional): Start each cloud at a random point instead of its
            first one. (default: :obj:`True`)
        batch_size (int, optional): The number of clouds, for trailing empty ones.
            (default: :obj:`None`)

    :rtype: :class:`torch.LongTensor`
    """
    ratio = check_ratio(ratio)
    batch = default_batch(x, batch)
    if x.size(0) == 0:
        return torch.empty(0, dtype=torch.long, device=x.device)
    B = num_clouds(batch) if batch_size is None else max(int(batch_size), num_clouds(batch))
    sizes = cloud_sizes(batch, B)
    backend = get_backend()
    if backend == "torch" or bool((sizes == 0).any()):
        # torch_cluster's fps kills the process on an empty cloud (rand() % 0).
        counts = sample_counts(sizes, ratio=ratio)
        return farthest_point_sampling(x, batch, counts, random_start=random_start)
    if backend == "pyg_lib":
        return torch.ops.pyg.fps(x, cloud_ptr(batch, B), float(ratio), random_start)
    import torch_cluster

    return torch_cluster.fps(x, batch, float(ratio), random_start)
