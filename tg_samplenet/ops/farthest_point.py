r"""Farthest point sampling batched over clouds, continuing from a chosen set if given, and
:func:`fps` with :func:`torch_geometric.nn.fps`'s contract."""

from __future__ import annotations

from typing import Optional

import torch
from torch import Tensor

from tg_samplenet.ops.batch import cloud_ptr, cloud_sizes, sample_counts
from tg_samplenet.ops.checks import (
    InputTypeError,
    check_bool,
    check_cloud_batch,
    check_counts,
    check_index,
    check_points,
    check_ratio,
)
from tg_samplenet.ops.neighbors import get_backend
from tg_samplenet.ops.pruned_fps import dense_steps, pruned_fps_steps
from tg_samplenet.ops.scaling import scale_clouds
from tg_samplenet.ops.zorder import zorder

__all__ = ["farthest_point_sampling", "fps"]


def farthest_point_steps(
    pos: Tensor, batch: Tensor, counts: Tensor, selected: Tensor, start: Tensor
) -> Tensor:
    r"""The kernel of farthest point sampling (:obj:`tg_samplenet::farthest_point_steps`):
    :obj:`counts[i]` new points per cloud, continuing from the sorted, unique indices
    :obj:`selected`, else from the local index :obj:`start[i]`. All clouds advance together
    on a dense :obj:`[B, N_max]` table; large clouds are cut into Z-order chunks, of which a
    step updates those the new point can reach.
    """
    from torch_geometric.utils import to_dense_batch

    B = counts.numel()
    steps = int(counts.max()) if B > 0 else 0
    if steps == 0:
        return torch.empty(0, dtype=torch.long, device=pos.device)
    pos = pos.detach()
    if pos.dtype in (torch.float16, torch.bfloat16):
        pos = pos.float()
    (pos,) = scale_clouds([(pos, batch)], B)
    ptr = cloud_ptr(batch, B)

    # Distance to the selected set: +inf where a cloud has none yet, -1 for chosen points.
    dist = torch.full((pos.size(0),), float("inf"), dtype=pos.dtype, device=pos.device)
    seeded = torch.zeros(B, dtype=torch.bool, device=pos.device)
    if selected.numel() > 0:
        seeded[batch[selected]] = True
        query = seeded[batch].nonzero().view(-1)
        dist[query] = _selected_distances(pos, batch, selected, query, B)
        dist[selected] = -1.0
        if not bool(((counts > 0) & ~seeded).any()):
            return pruned_fps_steps(pos, batch, dist, counts, B)

    dense, valid = to_dense_batch(pos, batch, batch_size=B)  # [B, N_max, D]
    dist = to_dense_batch(dist, batch, float("-inf"), batch_size=B)[0]  # -inf: padding
    first = torch.where(seeded, dist.argmax(dim=1), start.clamp(min=0))
    planes = dense.permute(2, 0, 1).contiguous()  # [D, B, N_max], one plane per coordinate
    if valid.size(1) >= _CHUNKED_ABOVE:
        # Each row's positions in Z-order, padding positions last.
        rank = torch.arange(batch.numel(), device=pos.device) - ptr[batch]
        order = to_dense_batch(rank[zorder(pos, batch, B)], batch, batch_size=B)[0]
        slots = torch.arange(valid.size(1), device=pos.device).expand_as(order)
        order = torch.where(valid, order, slots)
        picked = _steps_chunked(planes, valid, dist, first, steps, order)
    else:
        picked = dense_steps(planes, dist, steps, first)[0]
    keep = torch.arange(steps, device=pos.device).unsqueeze(0) < counts.unsqueeze(1)
    return (picked + ptr[:-1].unsqueeze(1))[keep]


# Below _DENSE_PAIRS point pairs, a dense comparison (blocks of _PAIRS_PER_BLOCK) is faster
# than building a search structure.
_PAIRS_PER_BLOCK = 1 << 16
_DENSE_PAIRS = 1 << 21


def _selected_distances(
    pos: Tensor, batch: Tensor, selected: Tensor, query: Tensor, num_clouds: int
) -> Tensor:
    # The squared distance of each query point to the nearest selected point of its cloud,
    # as (q - s).pow(2).sum(-1) computes it on either path.
    from torch_geometric.utils import to_dense_batch

    B = num_clouds
    q, q_batch = pos[query], batch[query]
    s, s_batch = pos[selected], batch[selected]
    q_size, s_size = cloud_sizes(q_batch, B), cloud_sizes(s_batch, B)
    q_max, s_max = torch.stack([q_size.max(), s_size.max()]).tolist()  # one host sync
    if B * q_max * s_max > _DENSE_PAIRS:
        near = torch.ops.tg_samplenet.knn(s, q, 1, s_batch, q_batch, B)[0][:, 0]
        return (q - s[near]).pow(2).sum(-1)
    # Planes [D, B, 1, S_max] and [D, B, Q_max, 1]; padding 2^60 away from any scaled point.
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
    # Sum of (a - b)^2 over the planes [D, ...], in the order of (a - b).pow(2).sum(-1).
    d = (planes_a[0] - planes_b[0]).square_()
    for axis in range(1, planes_a.size(0)):
        d.add_((planes_a[axis] - planes_b[axis]).square_())
    return d


# Clouds of at least this many points update only the chunks a new point can reach.
_CHUNKED_ABOVE = 1 << 15
_CHUNK = 1024


def _steps_chunked(
    planes: Tensor, valid: Tensor, dist: Tensor, first: Tensor, steps: int, order: Tensor
) -> Tensor:
    # dense_steps on Z-order chunks: a new point only lowers distances in chunks whose
    # bounding box lies closer to it than the chunk's largest distance.
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
    # The slot of each position (padding slots past n left out).
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


def _start(batch: Tensor, counts: Tensor, random_start: bool, generator) -> Tensor:
    if not random_start:
        return torch.zeros_like(counts)
    sizes = cloud_sizes(batch, counts.numel())
    device = generator.device if generator is not None else "cpu"
    draw = torch.rand(counts.numel(), generator=generator, device=device).to(batch.device)
    return (draw * sizes).long().clamp(max=(sizes - 1).clamp(min=0))


def farthest_point_sampling(
    pos: Tensor,
    batch: Optional[Tensor],
    counts: Tensor,
    selected: Optional[Tensor] = None,
    random_start: bool = False,
    generator: Optional[torch.Generator] = None,
) -> Tensor:
    r"""Farthest point sampling (`"PointNet++" <https://arxiv.org/abs/1706.02413>`_) that
    continues from an already selected set :math:`S_i`:

    .. math::
        p_{\text{next}} = \operatorname*{arg\,max}_{p \in P_i \setminus S_i}
        \min_{s \in S_i} \| p - s \|^2

    A cloud with an empty :math:`S_i` starts from its first (or a random) point. Ties go to
    the lowest index (on clouds of 32768 points or more, not always).

    Args:
        pos (torch.Tensor): Points :obj:`[N, D]`.
        batch (torch.Tensor, optional): Sorted batch vector
            :math:`\mathbf{b} \in {\{ 0, \ldots, B-1\}}^N`; :obj:`None` for one cloud.
        counts (torch.Tensor): How many *new* points to pick per cloud, :obj:`[B]`, at most
            the cloud's unselected points.
        selected (torch.Tensor, optional): Indices into :obj:`pos` already chosen, in any
            order (repeats count once); never picked again. (default: :obj:`None`)
        random_start (bool, optional): Start clouds with nothing selected at a random point.
            (default: :obj:`False`)
        generator (torch.Generator, optional): The random source of :obj:`random_start`.
            (default: :obj:`None`)

    :rtype: :class:`torch.LongTensor` of :obj:`counts.sum()` new indices into :obj:`pos`,
        grouped by cloud in batch order, in the order they were picked
    """
    check_points(pos, "pos", dim=None)
    batch, implied = check_cloud_batch(batch, pos, "batch")
    B = counts.numel() if isinstance(counts, Tensor) and counts.dim() == 1 else implied
    if B < implied:
        B = implied  # check_counts below names the short counts
    available = cloud_sizes(batch, B)
    selected = check_index(
        selected if selected is not None else torch.empty(0, dtype=torch.long, device=pos.device),
        "selected",
        pos.size(0),
    ).view(-1)
    selected = torch.unique(selected)
    counts = check_counts(
        counts, "counts", available - cloud_sizes(batch[selected], B), "unselected points"
    )
    check_bool(random_start, "random_start")
    if generator is not None and not isinstance(generator, torch.Generator):
        raise InputTypeError(
            "generator", f"generator must be a torch.Generator (got {type(generator).__name__})"
        )
    start = _start(batch, counts, random_start, generator)
    return torch.ops.tg_samplenet.farthest_point_steps(pos, batch, counts, selected, start)


def fps(
    x: Tensor,
    batch: Optional[Tensor] = None,
    ratio: float = 0.5,
    random_start: bool = True,
    batch_size: Optional[int] = None,
) -> Tensor:
    r""":func:`torch_geometric.nn.fps` (`"PointNet++" <https://arxiv.org/abs/1706.02413>`_)
    with PyG's contract and no extension needed: :math:`\lceil n_i \cdot r \rceil` points
    per cloud, grouped by cloud, never an index twice within a cloud. On GPU it uses
    :obj:`pyg_lib` or :obj:`torch_cluster` where installed (:func:`~tg_samplenet.ops.get_backend`).

    .. code-block:: python

        from tg_samplenet.ops import fps
        index = fps(pos, batch, ratio=0.25)  # as torch_geometric.nn.fps(pos, batch, 0.25)

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
    check_points(x, "x", dim=None)
    ratio = check_ratio(ratio)
    check_bool(random_start, "random_start")
    batch, B = check_cloud_batch(batch, x, "batch", batch_size, "batch_size", pos_name="x")
    sizes = cloud_sizes(batch, B)
    counts = sample_counts(sizes, ratio=ratio)
    backend = get_backend(x.device)
    if backend in ("pyg_lib", "torch_cluster") and x.size(0) > 0 and bool((sizes > 0).all()):
        # The extensions crash on an empty cloud and repeat indices on too few distinct ones.
        index = _fps_extension(backend, x, batch, ratio, random_start, B)
        if not _repeats(index):
            return index
    start = _start(batch, counts, random_start, None)
    none = torch.empty(0, dtype=torch.long, device=x.device)
    return torch.ops.tg_samplenet.farthest_point_steps(x, batch, counts, none, start)


def _fps_extension(backend, x, batch, ratio, random_start, B) -> Tensor:
    x = x.detach().float() if x.dtype in (torch.float16, torch.bfloat16) else x.detach()
    (x,) = scale_clouds([(x, batch)], B)
    if backend == "pyg_lib":
        return torch.ops.pyg.fps(x, cloud_ptr(batch, B), ratio, random_start)
    import torch_cluster

    return torch_cluster.fps(x, batch, ratio, random_start)


def _repeats(index: Tensor) -> bool:
    ordered = torch.sort(index).values
    return bool((ordered[1:] == ordered[:-1]).any())
