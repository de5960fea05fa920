r"""The kernels as :mod:`torch.library` operators (:obj:`tg_samplenet::knn`,
:obj:`farthest_point_steps`, :obj:`match_sample`, :obj:`select`, :obj:`max_pooled_mlp`): their
sizes depend on values, so :func:`torch.compile` sees each as an opaque operator whose fake
kernel gives only its result's shape. Eager and compiled code call the same operators, with
checked input; none carries a gradient.
"""

from __future__ import annotations

from typing import Optional

import torch
from torch import Tensor

from tg_samplenet.ops.farthest_point import farthest_point_steps
from tg_samplenet.ops.matching import match_sample
from tg_samplenet.ops.neighbors import knn_table

__all__ = ["dynamic_size"]


def dynamic_size(most) -> torch.SymInt:
    r"""A new unbacked size in :math:`[0, \text{most}]` for a fake kernel."""
    bound = {"max": most} if isinstance(most, int) else {}
    return torch.library.get_ctx().new_dynamic_size(**bound)


@torch.library.custom_op("tg_samplenet::knn", mutates_args=())
def _knn(
    x: Tensor,
    y: Tensor,
    k: int,
    batch_x: Tensor,
    batch_y: Tensor,
    num_clouds: int,
    max_distance: Optional[float] = None,
) -> tuple[Tensor, Tensor]:
    return knn_table(x, y, k, batch_x, batch_y, num_clouds, max_distance)


@_knn.register_fake
def _(x, y, k, batch_x, batch_y, num_clouds, max_distance=None):
    shape = (y.size(0), k)
    return y.new_empty(shape, dtype=torch.long), y.new_empty(shape, dtype=torch.bool)


@torch.library.custom_op("tg_samplenet::farthest_point_steps", mutates_args=())
def _farthest_point_steps(
    pos: Tensor, batch: Tensor, counts: Tensor, selected: Tensor, start: Tensor
) -> Tensor:
    return farthest_point_steps(pos, batch, counts, selected, start)


@_farthest_point_steps.register_fake
def _(pos, batch, counts, selected, start):
    return pos.new_empty((dynamic_size(pos.size(0)),), dtype=torch.long)


@torch.library.custom_op("tg_samplenet::match_sample", mutates_args=())
def _match_sample(
    pos: Tensor,
    batch: Tensor,
    simplified: Tensor,
    simplified_batch: Tensor,
    counts: Tensor,
    matching: str,
    max_matched: Optional[int],
    complete: bool,
) -> Tensor:
    return match_sample(
        pos, batch, simplified, simplified_batch, counts, matching, max_matched, complete
    )


@_match_sample.register_fake
def _(pos, batch, simplified, simplified_batch, counts, matching, max_matched, complete):
    return pos.new_empty((dynamic_size(pos.size(0)),), dtype=torch.long)


@torch.library.custom_op("tg_samplenet::select", mutates_args=())
def _select(mask: Tensor) -> Tensor:
    return mask.nonzero().view(-1)


@_select.register_fake
def _(mask):
    return mask.new_empty((dynamic_size(mask.numel()),), dtype=torch.long)


POOL_CHUNK = 1 << 11  # a chunk's widest features (2048 x 128 float32) stay in L2 cache


@torch.library.custom_op("tg_samplenet::max_pooled_mlp", mutates_args=())
def _max_pooled_mlp(
    pos: Tensor, batch: Tensor, num_clouds: int, weights: list[Tensor], biases: list[Tensor]
) -> Tensor:
    # The layers relu(x @ w + b) of an eval-mode point MLP, max-pooled per cloud in chunks
    # (bounded memory); ReLU outputs are >= 0, so the initial 0 never wins over a point.
    out = pos.new_zeros((num_clouds, weights[-1].size(1)))
    for start in range(0, pos.size(0), POOL_CHUNK):
        x = pos[start : start + POOL_CHUNK]
        for weight, bias in zip(weights, biases):
            x = torch.addmm(bias, x, weight).relu_()
        index = batch[start : start + POOL_CHUNK].unsqueeze(1).expand_as(x)
        out.scatter_reduce_(0, index, x, "amax")
    return out


@_max_pooled_mlp.register_fake
def _(pos, batch, num_clouds, weights, biases):
    return pos.new_empty((num_clouds, weights[-1].size(1)))
