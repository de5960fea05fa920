r"""SampleNet's inference-only fast path: eval-mode BatchNorm folded into the preceding
:class:`~torch.nn.Linear`, and the per-point MLP max-pooled chunk by chunk. Equal to the
eval-mode modules on the same input (``tests/test_sampler.py`` checks it); never used in
training."""

from __future__ import annotations

import torch
from torch import Tensor
from torch_geometric.nn import MLP, global_max_pool

__all__ = ["folded_mlp", "chunked_max_pool"]

# Points per chunk of the inference-time point MLP (a few MiB of features per layer).
POOL_CHUNK = 1 << 14


def folded_mlp(mlp: MLP, x: Tensor) -> Tensor:
    r"""Runs an eval-mode :class:`torch_geometric.nn.MLP` (BatchNorm, ReLU) with each
    BatchNorm folded into its Linear layer: one fused :obj:`addmm` and an in-place ReLU per
    layer instead of three passes over the :obj:`[N, C]` activations."""
    num_hidden = len(mlp.lins) - (1 if mlp.plain_last else 0)
    for i, lin in enumerate(mlp.lins):
        if i == num_hidden:
            return lin(x)
        bn = mlp.norms[i].module
        scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
        bias = (lin.bias - bn.running_mean) * scale + bn.bias
        x = torch.addmm(bias, x, (lin.weight * scale.unsqueeze(1)).t()).relu_()
    return x


def chunked_max_pool(mlp: MLP, pos: Tensor, batch: Tensor, num_clouds: int) -> Tensor:
    r""":obj:`global_max_pool(folded_mlp(mlp, pos), batch, size=num_clouds)`, computed
    :obj:`POOL_CHUNK` points at a time.

    The per-point features of a million points take 1.8 GB over the layers, memory the
    allocator would map and fault in afresh on every call. The features are ReLU outputs
    (:math:`\geq 0`), so the 0 that a chunk without points of a cloud pools for it never
    wins the maximum.

    :rtype: :class:`torch.Tensor` of shape :obj:`[num_clouds, C]`
    """
    h = None
    for start in range(0, max(pos.size(0), 1), POOL_CHUNK):
        part = folded_mlp(mlp, pos[start : start + POOL_CHUNK])
        part = global_max_pool(part, batch[start : start + POOL_CHUNK], size=num_clouds)
        h = part if h is None else torch.maximum(h, part)
    return h
