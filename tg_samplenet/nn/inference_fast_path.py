r"""SampleNet's inference-only fast path: eval-mode BatchNorm folded into the preceding
:class:`~torch.nn.Linear`, and the per-point MLP max-pooled chunk by chunk. Equal to the
eval-mode modules on the same input (``tests/test_sampler.py`` checks it); never used in
training."""

from __future__ import annotations

from typing import Optional

import torch
from torch import Tensor
from torch_geometric.nn import MLP, global_max_pool

__all__ = ["chunk_bounds", "folded_layers", "folded_mlp", "chunked_max_pool"]

# Points per chunk of the inference-time point MLP: a chunk's widest features (2048 x 128
# float32, 1 MiB) stay in a core's L2 cache between the layers (one thread, 32 x 1024 and 1M
# points: 1.4x faster than chunks of 16384 points).
POOL_CHUNK = 1 << 11
# The chunks of earlier versions, whose borders the chunks keep, and the fewest rows of a
# chunk cut from one of them. A matrix product computes each row with the same bits whatever
# the other rows, except in the kernels for a few rows (MKL: 1 to 3): so no chunk is cut
# shorter than _MIN_ROWS, and every point gets the bits it got in 16384-point chunks.
_BLOCK = 1 << 14
_MIN_ROWS = 16


def chunk_bounds(num_points: int) -> list[tuple[int, int]]:
    r"""The :obj:`(start, end)` rows of the chunks of :func:`chunked_max_pool`:
    :obj:`POOL_CHUNK` rows cut from blocks of 16384, a block's last chunk of fewer than 16
    rows joined to the one before it (at least one chunk, empty for no points)."""
    bounds = []
    for block in range(0, max(num_points, 1), _BLOCK):
        end = min(block + _BLOCK, num_points)
        cut = [(start, min(start + POOL_CHUNK, end)) for start in range(block, end, POOL_CHUNK)]
        if len(cut) > 1 and cut[-1][1] - cut[-1][0] < _MIN_ROWS:
            cut[-2:] = [(cut[-2][0], cut[-1][1])]
        bounds += cut
    return bounds or [(0, 0)]


def folded_layers(mlp: MLP) -> tuple[list[tuple[Tensor, Tensor]], Optional[torch.nn.Module]]:
    r"""The hidden layers of an eval-mode :class:`torch_geometric.nn.MLP` (BatchNorm, ReLU)
    with each BatchNorm folded into its Linear layer, :obj:`(weight_t, bias)` for
    :obj:`addmm(bias, x, weight_t).relu_()`, and its plain last layer (:obj:`None` without
    one). Folded once per call, not once per chunk: the same bits."""
    num_hidden = len(mlp.lins) - (1 if mlp.plain_last else 0)
    hidden = []
    for lin, norm in zip(mlp.lins[:num_hidden], mlp.norms):
        bn = norm.module
        scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
        bias = (lin.bias - bn.running_mean) * scale + bn.bias
        hidden.append(((lin.weight * scale.unsqueeze(1)).t(), bias))
    return hidden, (mlp.lins[num_hidden] if num_hidden < len(mlp.lins) else None)


def _run_layers(
    layers: tuple[list[tuple[Tensor, Tensor]], Optional[torch.nn.Module]], x: Tensor
) -> Tensor:
    hidden, last = layers
    for weight_t, bias in hidden:
        x = torch.addmm(bias, x, weight_t).relu_()
    return x if last is None else last(x)


def folded_mlp(mlp: MLP, x: Tensor) -> Tensor:
    r"""Runs an eval-mode :class:`torch_geometric.nn.MLP` (BatchNorm, ReLU) with each
    BatchNorm folded into its Linear layer: one fused :obj:`addmm` and an in-place ReLU per
    layer instead of three passes over the :obj:`[N, C]` activations."""
    return _run_layers(folded_layers(mlp), x)


def chunked_max_pool(mlp: MLP, pos: Tensor, batch: Tensor, num_clouds: int) -> Tensor:
    r""":obj:`global_max_pool(folded_mlp(mlp, pos), batch, size=num_clouds)`, computed
    :obj:`POOL_CHUNK` points at a time.

    The per-point features of a million points take 1.8 GB over the layers, memory the
    allocator would map and fault in afresh on every call; small chunks keep them in cache.
    The features are ReLU outputs (:math:`\geq 0`), so the 0 that a chunk without points of
    a cloud pools for it never wins the maximum.

    :rtype: :class:`torch.Tensor` of shape :obj:`[num_clouds, C]`
    """
    layers = folded_layers(mlp)
    h = None
    for start, end in chunk_bounds(pos.size(0)):
        part = _run_layers(layers, pos[start:end])
        part = global_max_pool(part, batch[start:end], size=num_clouds)
        h = part if h is None else torch.maximum(h, part, out=h)
    return h
