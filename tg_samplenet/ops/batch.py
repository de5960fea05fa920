r"""Helpers for PyG's sorted batch vector (unchecked, no host sync) and :func:`sample_counts`,
the per-cloud sample counts every sampler shares."""

from __future__ import annotations

from typing import Optional

import torch
from torch import Tensor

from tg_samplenet.ops.checks import (
    InputError,
    check_index_vector,
    check_positive_int,
    check_ratio,
    readable,
)

__all__ = ["cloud_sizes", "cloud_ptr", "num_clouds", "rank_in_cloud", "sample_counts"]


def cloud_sizes(batch: Tensor, num_clouds: int) -> Tensor:
    r"""The number of points of each of the :obj:`num_clouds` clouds.

    :rtype: :class:`torch.LongTensor` of shape :obj:`[B]`
    """
    ones = torch.ones_like(batch, dtype=torch.long)
    return batch.new_zeros(num_clouds, dtype=torch.long).scatter_add_(0, batch, ones)


def cloud_ptr(batch: Tensor, num_clouds: int) -> Tensor:
    r"""The CSR offsets of the clouds of a sorted batch vector.

    :rtype: :class:`torch.LongTensor` of shape :obj:`[B + 1]`
    """
    sizes = cloud_sizes(batch, num_clouds)
    return torch.cat([sizes.new_zeros(1), sizes.cumsum(0)])


def num_clouds(*batches: Tensor) -> int:
    r"""The largest last id of sorted batch vectors plus one (one host sync on CUDA)."""
    return max((int(b[-1]) + 1 if b.numel() > 0 else 0) for b in batches)


def rank_in_cloud(batch: Tensor, num_clouds: int) -> Tensor:
    r"""The position of each point within its cloud, for a sorted batch vector.

    :rtype: :class:`torch.LongTensor` of shape :obj:`[N]`
    """
    ptr = cloud_ptr(batch, num_clouds)
    return torch.arange(batch.numel(), device=batch.device) - ptr[batch]


def sample_counts(
    sizes: Tensor, num_samples: Optional[int] = None, ratio: Optional[float] = None
) -> Tensor:
    r"""The number of points to sample from each cloud: :math:`\lceil n_i \cdot r \rceil` in
    float32 as :func:`torch_geometric.nn.fps` computes it, else :math:`\min(m, n_i)`.

    Args:
        sizes (torch.Tensor): Points per cloud :obj:`[B]`.
        num_samples (int, optional): The requested count :math:`m \geq 1`.
            (default: :obj:`None`)
        ratio (float, optional): The sampling ratio in :math:`(0, 1]`, which wins over
            :obj:`num_samples`. (default: :obj:`None`)

    :rtype: :class:`torch.LongTensor` of shape :obj:`[B]`
    """
    sizes = check_index_vector(sizes, "sizes")
    if readable(sizes) and bool((sizes < 0).any()):
        raise InputError("sizes", "sizes contains negative cloud sizes")
    if ratio is not None:
        ratio = check_ratio(ratio)
        return torch.ceil(sizes.to(torch.float32) * ratio).long().clamp(max=sizes)
    if num_samples is None:
        raise InputError("num_samples", "sample_counts needs num_samples or ratio")
    return sizes.clamp(max=check_positive_int(num_samples, "num_samples"))
