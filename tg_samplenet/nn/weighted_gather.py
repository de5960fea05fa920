r"""The weighted gather that takes per-point tensors through a sampler's choice."""

from __future__ import annotations

import math
from typing import Optional

import torch
from torch import Tensor

from tg_samplenet.ops.checks import InputError, InputTypeError

__all__ = ["gather_rows", "weighted_gather"]


def gather_rows(src: Tensor, index: Tensor) -> Tensor:
    r""":obj:`src[index]` for an integer :obj:`index` of any shape, through
    :func:`torch.index_select`, whose backward pass sums repeated indices in a fixed order."""
    return src.index_select(0, index.reshape(-1)).view(*index.shape, *src.shape[1:])


def weighted_gather(src: Tensor, index: Tensor, weight: Optional[Tensor] = None) -> Tensor:
    r"""Gathers the rows of :obj:`src` at :obj:`index` and, given :obj:`weight`, mixes the
    :math:`k` rows of each output with its weights, as the soft projection mixes positions:

    .. math::
        \mathbf{s}^{\prime}_m = \sum_{j=1}^{k} w_{m,j} \, \mathbf{s}_{\mathrm{index}_{m,j}}

    Integer and boolean tensors take the row of the highest-weight neighbour instead.

    .. code-block:: python

        src = torch.tensor([[1.0], [2.0], [4.0]])
        index = torch.tensor([[0, 1], [2, 2]])
        weight = torch.tensor([[0.5, 0.5], [1.0, 0.0]])
        weighted_gather(src, index, weight)  # [[1.5], [4.0]]
        weighted_gather(src, index[:, 0])    # [[1.0], [4.0]]

    Args:
        src (torch.Tensor): A per-point tensor :obj:`[N, *]`.
        index (torch.LongTensor): Indices into :obj:`src`: :obj:`[M]` for a plain gather, or
            :obj:`[M, k]` neighbour tables with :obj:`weight`.
        weight (torch.Tensor, optional): :obj:`[M, k]` weights of the neighbours.
            (default: :obj:`None`)

    :rtype: :class:`torch.Tensor` of shape :obj:`[M, *]`, in :obj:`src`'s dtype
    """
    if not isinstance(src, Tensor) or src.dim() < 1:
        raise InputTypeError("src", f"src must be a per-point tensor [N, *] (got {_describe(src)})")
    if not isinstance(index, Tensor) or index.dtype not in (torch.int32, torch.int64):
        raise InputTypeError("index", f"index must be an integer tensor (got {_describe(index)})")
    if index.numel() > 0 and index.device.type != "meta":
        low, high = (int(v) for v in torch.stack([index.min(), index.max()]).tolist())
        if low < 0 or high >= src.size(0):
            raise InputError(
                "index",
                f"index holds {low if low < 0 else high}, outside the {src.size(0)} rows of src "
                f"([0, {src.size(0)}))",
            )
    if weight is None:
        if index.dim() != 1:
            raise InputError("index", f"index must be [M] without weight (got {list(index.shape)})")
        return gather_rows(src, index)
    if index.dim() != 2 or weight.shape != index.shape:
        raise InputError(
            "weight",
            f"index and weight must both be [M, k] (got {list(index.shape)} and "
            f"{list(weight.shape)})",
        )
    if not torch.is_floating_point(src):
        return src[index.gather(1, weight.argmax(1, keepdim=True)).view(-1)]
    rows = gather_rows(src, index).reshape(*index.shape, math.prod(src.shape[1:]))  # [M, k, C]
    mixed = torch.bmm(weight.to(src.dtype).unsqueeze(1), rows)
    return mixed.view(index.size(0), *src.shape[1:])


def _describe(value) -> str:
    if isinstance(value, Tensor):
        return f"a tensor of shape {list(value.shape)}"
    return type(value).__name__
