r"""Helpers for PyG's batch vector (a sorted cloud id per point): sizes, CSR offsets, the
rank of each point in its cloud and the per-cloud sample counts that every sampler shares."""

from __future__ import annotations

from typing import Optional

import torch
from torch import Tensor

from tg_samplenet.ops.checks import (
    InputError,
    check_index_vector,
    check_int,
    check_positive_int,
    check_ratio,
    check_sorted,
)
from tg_samplenet.ops.custom_ops import is_compiling

__all__ = [
    "cloud_sizes",
    "cloud_ptr",
    "default_batch",
    "num_clouds",
    "rank_in_cloud",
    "sample_counts",
]


def cloud_sizes(batch: Tensor, num_clouds: int) -> Tensor:
    r"""Number of points of each cloud, :obj:`[num_clouds]` (in any order of the batch
    vector).

    Args:
        batch (torch.LongTensor): Cloud ids :math:`\mathbf{b} \in {\{ 0, \ldots, B-1\}}^N`.
        num_clouds (int): The number of clouds :math:`B`, at least the largest id plus one.

    :rtype: :class:`torch.LongTensor`
    """
    batch = check_index_vector(batch, "batch")
    num_clouds = check_int(num_clouds, "num_clouds", minimum=0)
    if is_compiling():  # bincount's size depends on the values; the same counts
        return batch.new_zeros(num_clouds).scatter_add_(0, batch, torch.ones_like(batch))
    try:
        sizes = torch.bincount(batch, minlength=num_clouds)
    except RuntimeError as error:  # bincount rejects negative values (its own host sync)
        raise InputError("batch", "batch contains negative cloud indices") from error
    if sizes.numel() > num_clouds:
        raise InputError(
            "num_clouds",
            f"num_clouds={num_clouds} is smaller than the batch vector implies "
            f"({sizes.numel()} clouds)",
        )
    return sizes


def cloud_ptr(batch: Tensor, num_clouds: int) -> Tensor:
    r"""CSR offsets :obj:`[num_clouds + 1]` of the clouds of a sorted batch vector (empty
    clouds allowed): cloud :math:`i` holds the points :obj:`ptr[i]` to :obj:`ptr[i + 1] - 1`.

    :rtype: :class:`torch.LongTensor`
    """
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
        sizes (torch.LongTensor): Points per cloud :obj:`[B]`, non-negative.
        num_samples (int, optional): The requested count :math:`m \geq 1`.
            (default: :obj:`None`)
        ratio (float, optional): The sampling ratio in :math:`(0, 1]`, which wins over
            :obj:`num_samples`. (default: :obj:`None`)

    :rtype: :class:`torch.LongTensor` of shape :obj:`[B]`
    """
    sizes = check_index_vector(sizes, "sizes")
    if sizes.numel() > 0 and sizes.device.type != "meta" and bool((sizes < 0).any()):
        raise InputError("sizes", "sizes contains negative cloud sizes")  # one host sync
    if ratio is not None:
        return _sample_counts(sizes, ratio=check_ratio(ratio))
    if num_samples is None:
        raise InputError("num_samples", "sample_counts needs num_samples or ratio")
    return _sample_counts(sizes, num_samples=check_positive_int(num_samples, "num_samples"))


def _sample_counts(
    sizes: Tensor,
    num_samples: Optional[int] = None,
    ratio: Optional[float] = None,
) -> Tensor:
    # sample_counts for checked arguments.
    if ratio is not None:
        return torch.ceil(sizes.to(torch.float32) * ratio).long().clamp(max=sizes)
    return sizes.clamp(max=num_samples)


def rank_in_cloud(batch: Tensor, num_clouds: int) -> Tensor:
    r"""Position of each element within its cloud (0 for the first), for a sorted batch
    vector.

    Args:
        batch (torch.LongTensor): Sorted cloud ids
            :math:`\mathbf{b} \in {\{ 0, \ldots, B-1\}}^N`.
        num_clouds (int): The number of clouds :math:`B`.

    :rtype: :class:`torch.LongTensor` of shape :obj:`[N]`
    """
    batch = check_index_vector(batch, "batch")
    check_sorted(batch, "batch")
    return _rank_in_cloud(batch, num_clouds)


def _rank_in_cloud(batch: Tensor, num_clouds: int) -> Tensor:
    # rank_in_cloud for a checked, sorted batch vector.
    ptr = cloud_ptr(batch, num_clouds)
    return torch.arange(batch.numel(), device=batch.device) - ptr[batch]
