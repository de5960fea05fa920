r"""The library's extension calls as :obj:`torch.library` operators, so that
:func:`torch.compile` traces *around* them instead of failing.

:obj:`torch_cluster` and :obj:`pyg-lib` register no fake (meta) kernels for :obj:`knn` or
:obj:`fps`, so Dynamo cannot trace a call to them: :func:`torch.compile` raises
:obj:`TorchRuntimeError ... making fake tensor call`, even with :obj:`fullgraph=False`. The
plain-PyTorch search traces, but its Python loop over query blocks unrolls into the graph
and its shapes guard on every cloud size. Each operator below is opaque to the compiler:
it runs the eager code (whatever back-end :func:`~tg_samplenet.ops.neighbors.get_backend`
picks) and tells the compiler only the shape of its result:

- :obj:`tg_samplenet::padded_knn(x, y, k, batch_x, batch_y, num_clouds)` returns the fixed
  :obj:`[M, k]` neighbour table and mask of
  :func:`~tg_samplenet.ops.neighbors.padded_knn` (:math:`M` the number of queries), so the
  graph continues without a break and with :math:`M` symbolic;
- :obj:`tg_samplenet::farthest_point_sampling(pos, batch, counts, selected, random_start)`
  returns the :obj:`counts.sum()` new indices of
  :func:`~tg_samplenet.ops.farthest_point.farthest_point_sampling`, a size that depends on
  the values of :obj:`counts` (an unbacked symbol for the compiler): the step loop of farthest
  point sampling runs :obj:`counts.max()` times, a count no graph can hold.

This module only *defines* the operators and their fake kernels; the modules that own the
eager code register it as the operators' implementation (so that imports flow one way), and
call the operators only while :func:`torch.compiler.is_compiling`: eager results are the
eager code's, bit for bit. The kernels are wrapped in :func:`torch.compiler.disable`: where a
graph breaks at an operator, Dynamo would otherwise trace the kernel's Python as a new frame
and meet the extension call again. The operators carry no gradient (their outputs are indices), and
their inputs are passed detached.
"""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["PADDED_KNN", "FARTHEST_POINT_SAMPLING", "is_compiling"]

_LIBRARY = torch.library.Library("tg_samplenet", "FRAGMENT")

PADDED_KNN = "tg_samplenet::padded_knn"
_LIBRARY.define(
    "padded_knn(Tensor x, Tensor y, int k, Tensor batch_x, Tensor batch_y, SymInt num_clouds)"
    " -> (Tensor, Tensor)"
)

FARTHEST_POINT_SAMPLING = "tg_samplenet::farthest_point_sampling"
_LIBRARY.define(
    "farthest_point_sampling(Tensor pos, Tensor batch, Tensor counts, Tensor? selected, "
    "bool random_start) -> Tensor"
)


@torch.library.register_fake(PADDED_KNN, lib=_LIBRARY)
def _padded_knn_fake(
    x: Tensor, y: Tensor, k: int, batch_x: Tensor, batch_y: Tensor, num_clouds: int
) -> tuple[Tensor, Tensor]:
    shape = (y.size(0), k)
    return (
        y.new_empty(shape, dtype=torch.long),
        y.new_empty(shape, dtype=torch.bool),
    )


@torch.library.register_fake(FARTHEST_POINT_SAMPLING, lib=_LIBRARY)
def _farthest_point_sampling_fake(
    pos: Tensor, batch: Tensor, counts: Tensor, selected: Tensor | None, random_start: bool
) -> Tensor:
    # counts.sum() new indices: a size only the values of counts decide.
    size = torch.library.get_ctx().new_dynamic_size(max=pos.size(0))
    return pos.new_empty((size,), dtype=torch.long)


def is_compiling() -> bool:
    r"""Whether Dynamo is tracing the caller (then the operators above replace the eager
    calls, and checks that read tensor values are skipped)."""
    return torch.compiler.is_compiling()
