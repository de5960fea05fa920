r"""What the task networks share: how the points of a PyG mini-batch split into clouds, the
per-cloud operations on them (max-pooling, applying one matrix per cloud) and the check of
configurable layer widths.

Equal-size clouds are the common case (every data set of the paper has fixed-size clouds,
and so has every sampled batch), so both operations take a reshape fast path there and fall
back to :func:`~torch_geometric.nn.global_max_pool` /
:func:`~torch_geometric.utils.to_dense_batch` for clouds of different sizes.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple, Optional

import torch
from torch import Tensor
from torch_geometric.nn import global_max_pool
from torch_geometric.utils import to_dense_batch

from tg_samplenet.ops.checks import check_batch, check_points


def check_widths(channels: Sequence[int], name: str, min_len: int = 1) -> tuple[int, ...]:
    r"""Checks a sequence of layer widths and returns it as a tuple."""
    if isinstance(channels, int) or not all(
        isinstance(c, int) and not isinstance(c, bool) for c in channels
    ):
        raise TypeError(f"{name} must be a sequence of ints (got {channels!r})")
    channels = tuple(channels)
    if len(channels) < min_len or any(c < 1 for c in channels):
        raise ValueError(
            f"{name} must hold at least {min_len} positive width(s) (got {list(channels)})"
        )
    return channels


class CloudLayout(NamedTuple):
    r"""The batch vector of a validated input and the shape of its clouds.

    Attributes:
        batch (LongTensor): :obj:`[N]` sorted batch vector (all zeros for one cloud).
        num_clouds (int): the number of clouds :math:`B`.
        cloud_size (int or None): the common number of points per cloud, or :obj:`None`
            when the clouds differ in size.
    """

    batch: Tensor
    num_clouds: int
    cloud_size: Optional[int]


def cloud_layout(
    pos: Tensor,
    batch: Optional[Tensor],
    name: str = "pos",
    batch_name: str = "batch",
    dim: int = 3,
) -> CloudLayout:
    r"""Validates :obj:`pos` ([N, dim]) and :obj:`batch` and describes the clouds;
    :obj:`name` and :obj:`batch_name` are the argument names error messages quote.

    Every cloud between :obj:`0` and :obj:`batch.max()` must hold at least one point: an
    empty cloud has no global feature.
    """
    check_points(pos, name=name, allow_empty=False, dim=dim)
    if batch is None:
        batch = check_batch(None, pos, name=batch_name)
        return CloudLayout(batch, 1, pos.size(0))
    batch = check_batch(batch, pos, name=batch_name)
    num_clouds = int(batch[-1]) + 1
    sizes = torch.bincount(batch, minlength=num_clouds)
    smallest, largest = sizes.aminmax()
    smallest, largest = int(smallest), int(largest)
    if smallest == 0:
        empty = int((sizes == 0).nonzero()[0])
        raise ValueError(f"{batch_name} skips cloud {empty}: every cloud needs at least one point")
    return CloudLayout(batch, num_clouds, largest if smallest == largest else None)


def max_pool(x: Tensor, layout: CloudLayout) -> Tensor:
    r"""Per-cloud maximum of the point features :obj:`x` ([N, C]) -> :obj:`[B, C]`."""
    if layout.cloud_size is not None:
        return x.view(layout.num_clouds, layout.cloud_size, x.size(-1)).amax(dim=1)
    return global_max_pool(x, layout.batch, size=layout.num_clouds)


def transform_per_cloud(x: Tensor, matrix: Tensor, layout: CloudLayout) -> Tensor:
    r"""Multiplies each point's row :obj:`x[i]` ([N, C]) by its cloud's matrix
    (:obj:`matrix` [B, C, D]) -> :obj:`[N, D]`, without a per-point copy of the matrices."""
    if layout.cloud_size is not None:
        dense = x.view(layout.num_clouds, layout.cloud_size, x.size(-1))
        return torch.bmm(dense, matrix).reshape(-1, matrix.size(-1))
    dense, mask = to_dense_batch(x, layout.batch, batch_size=layout.num_clouds)
    return torch.bmm(dense, matrix)[mask]
