r"""Helpers for PyG's batch vector (a sorted cloud id per point): sizes, CSR offsets, the
rank of each point in its cloud and the per-cloud sample counts that every sampler shares."""

from __future__ import annotations

from typing import Optional

import torch
from torch import Tensor

__all__ = [
    "cloud_sizes",
    "cloud_ptr",
    "default_batch",
    "num_clouds",
    "rank_in_cloud",
    "sample_counts",
]


def cloud_sizes(batch: Tensor, num_clouds: int) -> Tensor:
    r"""Number of points of each cloud, :obj:`[num_clouds]`, for a sorted batch vector."""
    return torch.bincount(batch, minlength=num_clouds)


def cloud_ptr(batch: Tensor, num_clouds: int) -> Tensor:
    r"""CSR offsets :obj:`[num_clouds + 1]` of a sorted batch vector (empty clouds allowed)."""
    sizes = cloud_sizes(batch, num_clouds)
    return torch.cat([sizes.new_zeros(1), sizes.cumsum(0)])


def default_batch(x: Tensor, batch: Optional[Tensor]) -> Tensor:
    r"""Returns :obj:`batch`, or all zeros (one cloud) for :obj:`None`."""
    return x.new_zeros(x.size(0), dtype=torch.long) if batch is None else batch


def num_clouds(*batches: Tensor) -> int:
    r"""Number of clouds that the batch vectors name (the largest id plus one)."""
    return max((int(b.max()) + 1 if b.numel() > 0 else 0) for b in batches)


def sample_counts(
    sizes: Tensor,
    num_samples: Optional[int] = None,
    ratio: Optional[float] = None,
) -> Tensor:
    r"""Number of points to sample from each cloud.

    With :obj:`ratio`, this is :math:`\lceil n_i \cdot r \rceil` computed in float32, exactly
    as :func:`torch_geometric.nn.fps` (and :obj:`torch_cluster`) compute it: for example
    :math:`n = 25, r = 0.6` gives 16, not 15. Otherwise it is :math:`\min(m, n_i)`.

    Args:
        sizes (torch.LongTensor): Points per cloud :obj:`[B]`.
        num_samples (int, optional): The requested count :math:`m`. (default: :obj:`None`)
        ratio (float, optional): The sampling ratio, which wins over :obj:`num_samples`.
            (default: :obj:`None`)

    :rtype: :class:`torch.LongTensor` of shape :obj:`[B]`
    """
    if ratio is not None:
        return torch.ceil(sizes.to(torch.float32) * ratio).long().clamp(max=sizes)
    if num_samples is None:
        raise ValueError("sample_counts needs num_samples or ratio")
    return sizes.clamp(max=num_samples)


def rank_in_cloud(batch: Tensor, num_clouds: int) -> Tensor:
    r"""Position of each element within its cloud (0 for the first), for a sorted batch
    vector.

    :rtype: :class:`torch.LongTensor` of shape :obj:`[N]`
    """
    ptr = cloud_ptr(batch, num_clouds)
    return torch.arange(batch.numel(), device=batch.device) - ptr[batch]
