r"""The non-learned samplers SampleNet is compared with, behind one signature:
:obj:`sample(pos, batch, num_samples) -> index` with :math:`\min(m, n_i)` indices per cloud,
grouped by cloud in batch order."""

from __future__ import annotations

from typing import Callable, Optional

import torch
from torch import Tensor
from torch_geometric.utils import scatter

from tg_samplenet.ops import fps
from tg_samplenet.ops.batch import cloud_sizes, rank_in_cloud

__all__ = ["baseline_samplers", "fps_sample", "random_sample", "voxel_sample"]


def _num_clouds(batch: Tensor) -> int:
    r"""The number of clouds of a sorted, non-empty batch vector."""
    return int(batch[-1]) + 1


def fps_sample(pos: Tensor, batch: Tensor, num_samples: int) -> Tensor:
    r"""Farthest point sampling of :math:`\min(m, n_i)` points per cloud with PyG's kernel
    (:func:`tg_samplenet.ops.fps`: :obj:`pyg-lib` or :obj:`torch_cluster`, as
    :func:`torch_geometric.nn.fps`, else plain torch), starting at each cloud's first point.

    :func:`~torch_geometric.nn.fps` takes a ratio; it is called with one large enough for the
    smallest cloud, and each cloud keeps the first :math:`m` points (every prefix of an FPS
    order is itself an FPS sample).
    """
    if pos.size(0) == 0:
        return torch.empty(0, dtype=torch.long, device=pos.device)
    B = _num_clouds(batch)
    sizes = cloud_sizes(batch, B)
    ratio = min(1.0, num_samples / max(int(sizes[sizes > 0].min()), 1))
    index = fps(pos, batch, ratio=ratio, random_start=False)
    return index[rank_in_cloud(batch[index], B) < num_samples]


def random_sample(
    pos: Tensor,
    batch: Tensor,
    num_samples: int,
    generator: Optional[torch.Generator] = None,
) -> Tensor:
    r"""Uniform random sampling without replacement of :math:`\min(m, n_i)` points per cloud,
    batched: each point draws a random key, and each cloud keeps its :math:`m` smallest keys
    (one sort over all clouds, no per-cloud loop)."""
    if pos.size(0) == 0:
        return torch.empty(0, dtype=torch.long, device=pos.device)
    B = _num_clouds(batch)
    key = torch.rand(pos.size(0), generator=generator, dtype=torch.float64).to(pos.device)
    order = torch.argsort(batch.to(torch.float64) * 2 + key)  # clouds in order, shuffled inside
    return order[rank_in_cloud(batch[order], B) < num_samples]


def voxel_sample(pos: Tensor, batch: Tensor, num_samples: int, iterations: int = 20) -> Tensor:
    r"""Voxel-grid sampling (as :func:`torch_geometric.nn.voxel_grid` /
    :class:`~torch_geometric.transforms.GridSampling`) at a matched count: each cloud gets its
    own voxel size, found by bisection, the largest at which at least :math:`\min(m, n_i)`
    voxels are occupied. Each occupied voxel is represented by its input point nearest to
    the voxel's centroid, and the :math:`m` most populated voxels are kept.

    All clouds are bisected together (one :func:`torch.unique` over all points per step).
    """
    if pos.size(0) == 0:
        return torch.empty(0, dtype=torch.long, device=pos.device)
    B = _num_clouds(batch)
    sizes = cloud_sizes(batch, B)
    target = sizes.clamp(max=num_samples)
    low = scatter(pos, batch, 0, B, "min")
    extent = (scatter(pos, batch, 0, B, "max") - low).amax(1).clamp(min=1e-12)
    cells = 1 << 16  # 16 bits per axis leave 15 bits (32768 clouds) of an int64 key

    def voxels(size: Tensor) -> tuple[Tensor, Tensor]:
        coord = ((pos - low[batch]) / size[batch, None]).floor().long().clamp(0, cells - 1)
        key = ((batch * cells + coord[:, 0]) * cells + coord[:, 1]) * cells + coord[:, 2]
        return torch.unique(key, return_inverse=True)

    def occupied(size: Tensor) -> Tensor:
        keys, _ = voxels(size)
        return torch.bincount(keys // cells**3, minlength=B)

    # Bisect log(size) between one voxel per point (tiny) and one voxel per cloud (extent).
    lo, hi = torch.log(extent / cells), torch.log(extent * 2)
    for _ in range(iterations):
        mid = (lo + hi) / 2
        enough = occupied(torch.exp(mid)) >= target
        lo, hi = torch.where(enough, mid, lo), torch.where(enough, hi, mid)
    keys, inverse = voxels(torch.exp(lo))

    centroid = scatter(pos, inverse, 0, keys.numel(), "mean")
    dist = (pos - centroid[inverse]).pow(2).sum(-1)
    best = scatter(dist, inverse, 0, keys.numel(), "min")
    is_best = dist <= best[inverse]
    point = torch.arange(pos.size(0), device=pos.device)
    # One representative per voxel: the first point at the minimal distance.
    representative = torch.full((keys.numel(),), pos.size(0), device=pos.device)
    representative = representative.scatter_reduce(0, inverse[is_best], point[is_best], "amin")
    population = torch.bincount(inverse, minlength=keys.numel())
    voxel_cloud = keys // cells**3
    # Most populated voxels first within each cloud (stable on ties).
    order = torch.argsort(population, descending=True, stable=True)
    order = order[torch.sort(voxel_cloud[order], stable=True).indices]
    keep = rank_in_cloud(voxel_cloud[order], B) < target[voxel_cloud[order]]
    return representative[order[keep]]


def baseline_samplers(seed: int) -> dict[str, Callable[[Tensor, Tensor, int], Tensor]]:
    r"""PyG's farthest point sampling, seeded random sampling and voxel-grid sampling at
    matched counts, as :obj:`sample(pos, batch, m) -> index`; the random sampler draws from
    one generator seeded with :obj:`seed` across all its calls."""
    generator = torch.Generator().manual_seed(seed)
    return {
        "fps": fps_sample,
        "random": lambda pos, batch, m: random_sample(pos, batch, m, generator),
        "voxel": voxel_sample,
    }
