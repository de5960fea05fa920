r"""Brute-force references and random inputs that the tests and the benchmarks share: clouds
in PyG's layout, and a sampler and queries that stand in for a trained sampler's.

Every reference here is written independently of the library (plain Python loops over
:obj:`tolist()` values, or dense PyTorch), exact and slow: use it on small inputs only. Ties
are broken towards the lowest index, as the library's kernels do.

.. code-block:: python

    from reproduction.testing import brute_fps, random_clouds

    pos, batch = random_clouds([20, 7], seed=0, dtype=torch.float64)
    expected = brute_fps(pos, batch, counts=[5, 3])  # greedy farthest points, per cloud
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Optional, Sequence, Union

import numpy as np
import torch
from torch import Tensor

if TYPE_CHECKING:
    from tg_samplenet import SampleNet

__all__ = [
    "random_clouds",
    "sphere_clouds",
    "surface_sampler",
    "near_surface_queries",
    "float32_ceil",
    "squared_distance",
    "split_clouds",
    "brute_knn",
    "brute_nearest",
    "brute_farthest_points",
    "brute_fps",
    "brute_hard_sample",
    "brute_distinct_sample",
    "brute_soft_projection",
    "dense_soft_projection",
    "nn_squared_distances",
    "brute_chamfer",
]

Point = Sequence[float]
Device = Union[str, torch.device]


def random_clouds(
    sizes: Sequence[int],
    seed: int = 0,
    dtype: torch.dtype = torch.float32,
    device: Device = "cpu",
) -> tuple[Tensor, Tensor]:
    r"""One cloud per entry of :obj:`sizes`, uniform in the unit cube (drawn in float64 from
    a seeded generator, then cast), in PyG's layout :obj:`(pos [N, 3], batch [N])` with a
    sorted batch vector; empty clouds are allowed.

    Args:
        sizes (Sequence[int]): Points per cloud.
        seed (int, optional): Seed of the generator. (default: :obj:`0`)
        dtype (torch.dtype, optional): Type of :obj:`pos`. (default: :obj:`torch.float32`)
        device (torch.device, optional): Device of both tensors. (default: :obj:`"cpu"`)
    """
    generator = torch.Generator().manual_seed(seed)
    pos = torch.rand(sum(sizes), 3, generator=generator, dtype=torch.float64)
    batch = torch.repeat_interleave(
        torch.arange(len(sizes)), torch.tensor(list(sizes), dtype=torch.long)
    )
    return pos.to(dtype).to(device), batch.to(device)


def sphere_clouds(
    num_points: int,
    num_clouds: int = 1,
    seed: int = 0,
    device: Device = "cpu",
) -> tuple[Tensor, Tensor]:
    r""":obj:`num_clouds` clouds of :obj:`num_points` points each, uniform on the unit sphere
    (the scale of :class:`~torch_geometric.transforms.NormalizeScale`'d shapes), as
    :obj:`(pos [B * N, 3], batch [B * N])`."""
    generator = torch.Generator().manual_seed(seed)
    pos = torch.randn(num_clouds * num_points, 3, generator=generator)
    pos = pos / pos.norm(dim=1, keepdim=True)
    batch = torch.arange(num_clouds).repeat_interleave(num_points)
    return pos.to(device), batch.to(device)


def surface_sampler(
    num_out_points: int,
    k: int = 7,
    noise: float = 0.01,
    seed: int = 0,
    progressive: bool = False,
) -> SampleNet:
    r"""A :class:`~tg_samplenet.SampleNet` whose simplified points lie near the
    unit sphere, as a trained sampler's lie near the surface of the shapes it samples (a
    random network's collapsed output would leave nearly all the work to the farthest point
    completion). It is untrained except for its last layer, whose weight is zero and whose
    bias holds :obj:`num_out_points` points uniform on the unit sphere moved by
    :math:`\mathcal{N}(0, \text{noise}^2)` per coordinate. The network costs the same
    whatever its weights."""
    from tg_samplenet import SampleNet  # the references above never import the library

    torch.manual_seed(seed)
    sampler = SampleNet(num_out_points, k=k, progressive=progressive)
    generator = torch.Generator().manual_seed(seed + 2)
    target = torch.randn(num_out_points, 3, generator=generator)
    target = target / target.norm(dim=1, keepdim=True)
    target = target + noise * torch.randn(num_out_points, 3, generator=generator)
    last = sampler.head.lins[-1]
    with torch.no_grad():
        last.weight.zero_()
        last.bias.copy_(target.flatten())
    return sampler


def near_surface_queries(
    pos: Tensor, batch: Tensor, num_samples: int, noise: float = 0.01, seed: int = 0
) -> tuple[Tensor, Tensor]:
    r""":obj:`num_samples` points per cloud drawn at random from :obj:`pos` and moved by
    :math:`\mathcal{N}(0, \text{noise}^2)` per coordinate: simplified points near the
    surface, as a trained sampler gives. Returns :obj:`(query, query_batch)`."""
    from reproduction.baselines import random_sample

    generator = torch.Generator().manual_seed(seed + 1)
    index = random_sample(pos.cpu(), batch.cpu(), num_samples, generator).to(pos.device)
    jitter = noise * torch.randn(index.numel(), 3, generator=generator).to(pos.device)
    return pos[index] + jitter, batch[index]


def float32_ceil(num_points: int, ratio: float) -> int:
    r""":math:`\lceil n \cdot r \rceil` with both factors in float32, the count
    :func:`torch_geometric.nn.fps` (and :obj:`torch_cluster`) sample for a ratio."""
    return int(np.ceil(np.float32(num_points) * np.float32(ratio)))


def squared_distance(a: Point, b: Point) -> float:
    r""":math:`\|\mathbf{a} - \mathbf{b}\|^2` of two points given as sequences."""
    return sum((p - q) ** 2 for p, q in zip(a, b, strict=True))


def split_clouds(pos: Tensor, batch: Tensor, num_clouds: int) -> list[list[list[float]]]:
    r"""The points of each cloud as lists, :obj:`num_clouds` of them (empty ones too)."""
    points, cloud_of = pos.tolist(), batch.tolist()
    return [
        [p for p, b in zip(points, cloud_of, strict=True) if b == cloud]
        for cloud in range(num_clouds)
    ]


def brute_knn(
    pos: Tensor, query: Tensor, batch: Tensor, query_batch: Tensor, k: int
) -> list[list[tuple[float, int]]]:
    r"""For each query, its :obj:`k` nearest points of the same cloud (all of them in a
    smaller cloud) as :obj:`(squared distance, index into pos)` pairs, nearest first."""
    points, cloud_of = pos.tolist(), batch.tolist()
    return [
        sorted(
            (squared_distance(p, q), j)
            for j, (p, b) in enumerate(zip(points, cloud_of, strict=True))
            if b == cloud
        )[:k]
        for q, cloud in zip(query.tolist(), query_batch.tolist(), strict=True)
    ]


def brute_nearest(pos: Tensor, query: Tensor, batch: Tensor, query_batch: Tensor) -> list[int]:
    r"""For each query, the index of its nearest point of the same cloud."""
    return [row[0][1] for row in brute_knn(pos, query, batch, query_batch, 1)]


def brute_farthest_points(
    points: Sequence[Point],
    count: int,
    selected: Sequence[int] = (),
    members: Optional[Sequence[int]] = None,
) -> list[int]:
    r"""Greedy farthest point sampling that continues from :obj:`selected`: :obj:`count`
    times, the member not yet chosen farthest from the chosen ones (ties to the lowest
    index); with nothing chosen, the first member. Returns the new indices in pick order.

    Args:
        points (Sequence): All points, as sequences of coordinates.
        count (int): How many new points to pick.
        selected (Sequence[int], optional): Indices already chosen. (default: :obj:`()`)
        members (Sequence[int], optional): The candidates (one cloud), in increasing order.
            (default: :obj:`None`, every point)
    """
    members = range(len(points)) if members is None else members
    chosen, new = list(selected), []
    for _ in range(count):
        free = [j for j in members if j not in chosen]
        if not chosen:
            best = free[0]
        else:
            best = max(
                free,
                key=lambda j: (min(squared_distance(points[j], points[c]) for c in chosen), -j),
            )
        chosen.append(best)
        new.append(best)
    return new


def brute_fps(
    pos: Tensor, batch: Tensor, counts: Sequence[int], selected: Sequence[int] = ()
) -> list[int]:
    r""":func:`brute_farthest_points` on every cloud: :obj:`counts[i]` new indices into
    :obj:`pos` per cloud, continued from the :obj:`selected` indices of that cloud, grouped
    by cloud in batch order."""
    points, cloud_of = pos.tolist(), batch.tolist()
    out = []
    for cloud, count in enumerate(counts):
        members = [j for j, b in enumerate(cloud_of) if b == cloud]
        chosen = [j for j in selected if cloud_of[j] == cloud]
        out += brute_farthest_points(points, count, chosen, members)
    return out


def brute_hard_sample(
    pos: Tensor,
    batch: Tensor,
    simplified: Tensor,
    simplified_batch: Tensor,
    counts: Sequence[int],
    complete: bool = True,
) -> list[int]:
    r"""SampleNet's inference step (paper §3.3), cloud by cloud: the nearest input point of
    each simplified point, repeats dropped (first kept), the first :obj:`counts[i]` of them,
    then (with :obj:`complete`) farthest points continued from them up to :obj:`counts[i]`.
    Returns indices into :obj:`pos` grouped by cloud, matched points first."""
    nearest = brute_nearest(pos, simplified, batch, simplified_batch)
    points, cloud_of = pos.tolist(), batch.tolist()
    out = []
    for cloud, count in enumerate(counts):
        chosen = []
        for j, b in zip(nearest, simplified_batch.tolist(), strict=True):
            if b == cloud and j not in chosen:
                chosen.append(j)
        chosen = chosen[:count]
        if complete:
            members = [j for j, b in enumerate(cloud_of) if b == cloud]
            chosen += brute_farthest_points(points, count - len(chosen), chosen, members)
        out += chosen
    return out


def brute_distinct_sample(
    pos: Tensor,
    batch: Tensor,
    simplified: Tensor,
    simplified_batch: Tensor,
    counts: Sequence[int],
    max_matched: Optional[int] = None,
) -> list[int]:
    r"""The matching without duplicates, cloud by cloud: every :math:`(\mathbf{q},
    \mathbf{p})` pair of the first :obj:`min(counts[i], max_matched)` simplified points,
    sorted by squared distance, matched greedily while both are free; then farthest points
    continued from the matched ones up to :obj:`counts[i]`. Returns indices into :obj:`pos`
    grouped by cloud, matched points first."""
    points, cloud_of = pos.tolist(), batch.tolist()
    queries, query_cloud = simplified.tolist(), simplified_batch.tolist()
    out = []
    for cloud, count in enumerate(int(c) for c in counts):
        members = [j for j, b in enumerate(cloud_of) if b == cloud]
        mine = [q for q, b in zip(queries, query_cloud, strict=True) if b == cloud]
        mine = mine[: count if max_matched is None else min(count, max_matched)]
        pairs = sorted(
            (squared_distance(q, points[j]), a, j) for a, q in enumerate(mine) for j in members
        )
        match, used = [None] * len(mine), set()
        for _, a, j in pairs:
            if match[a] is None and j not in used:
                match[a] = j
                used.add(j)
        out += match + brute_farthest_points(points, count - len(match), match, members)
    return out


def brute_soft_projection(
    pos: Tensor, query: Tensor, batch: Tensor, query_batch: Tensor, k: int, sigma: float
) -> list[list[float]]:
    r"""The soft projection of every query (paper Eq. 4-6): the softmax of
    :math:`-\|\mathbf{q} - \mathbf{p}_i\|^2 / \sigma` over its :obj:`k` nearest same-cloud
    points, and the weighted average of those points."""
    points = pos.tolist()
    out = []
    for near in brute_knn(pos, query, batch, query_batch, k):
        # Shifted by the nearest distance, so that a small sigma cannot underflow them all.
        e = [math.exp(-(d - near[0][0]) / sigma) for d, _ in near]
        w = [x / sum(e) for x in e]
        out.append(
            [sum(wi * points[j][c] for wi, (_, j) in zip(w, near, strict=True)) for c in range(3)]
        )
    return out


def dense_soft_projection(
    pos: Tensor,
    query: Tensor,
    batch: Tensor,
    query_batch: Tensor,
    k: int,
    sigma: Union[Tensor, float],
) -> Tensor:
    r"""The soft projection written densely in plain PyTorch, differentiable, the reference
    the sparse :class:`~tg_samplenet.SoftProjection` is measured against: the full
    :math:`[B, M, N]` squared-distance matrix
    (:math:`\|\mathbf{q}\|^2 - 2 \mathbf{q}^\top \mathbf{p} + \|\mathbf{p}\|^2`, one batched
    matrix product), the :math:`k` smallest by :func:`torch.topk` (whose values carry the
    gradient, so the backward pass runs through the dense matrix), a softmax over
    :math:`-d / \sigma` and the weighted sum. Padding of unequal clouds is masked.

    :rtype: :class:`torch.Tensor` of shape :obj:`[M, 3]`
    """
    from torch_geometric.utils import to_dense_batch

    num_clouds = int(max(batch.max(), query_batch.max())) + 1
    dense_pos, valid = to_dense_batch(pos, batch, batch_size=num_clouds)  # [B, n, 3]
    dense_query, query_valid = to_dense_batch(query, query_batch, batch_size=num_clouds)
    dist = torch.baddbmm(
        dense_pos.pow(2).sum(-1).unsqueeze(1), dense_query, dense_pos.transpose(1, 2), alpha=-2
    )
    dist = dist + dense_query.pow(2).sum(-1, keepdim=True)  # [B, m, n]
    if not bool(valid.all()):
        dist = dist.masked_fill(~valid.unsqueeze(1), float("inf"))
    nearest_dist, index = dist.topk(min(k, dense_pos.size(1)), dim=-1, largest=False)
    weights = torch.softmax(-nearest_dist / sigma, dim=-1)
    offset = torch.arange(num_clouds, device=pos.device).view(-1, 1, 1) * dense_pos.size(1)
    grouped = dense_pos.reshape(-1, 3)[index + offset]  # [B, m, k, 3]
    return (weights.unsqueeze(-1) * grouped).sum(2)[query_valid]


def nn_squared_distances(X: Sequence[Point], Y: Sequence[Point]) -> list[float]:
    r"""For each point of :obj:`X`, its squared distance to the nearest point of :obj:`Y`."""
    return [min(squared_distance(x, y) for y in Y) for x in X]


def brute_chamfer(X: Sequence[Point], Y: Sequence[Point]) -> float:
    r"""The symmetric Chamfer distance of two clouds with squared distances:
    :math:`\frac{1}{|X|}\sum_x \min_y \|x - y\|^2 + \frac{1}{|Y|}\sum_y \min_x \|x - y\|^2`."""
    forward, backward = nn_squared_distances(X, Y), nn_squared_distances(Y, X)
    return sum(forward) / len(forward) + sum(backward) / len(backward)
