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
  point sampling runs :obj:`counts.max()` times, a count no graph can hold;
- :obj:`tg_samplenet::match_sample(pos, batch, simplified, simplified_batch, counts,
  matching, max_matched, complete)` is SampleNet's whole inference step
  (:func:`~tg_samplenet.ops.hard_sample` or :func:`~tg_samplenet.ops.distinct_sample`): its
  de-duplication and completion are a chain of value-dependent sizes that would each break
  the graph, and whose resumed frames would guard on every size between them. Its
  :obj:`counts.sum()`-long result is an unbacked size;
- :obj:`tg_samplenet::mask_index(mask)` is :obj:`mask.nonzero().view(-1)`, an unbacked size
  instead of the graph break a boolean mask makes (:func:`select_index`).

Dynamo still breaks the graph at an operator whose output size is unbacked, unless
:obj:`torch._dynamo.config.capture_dynamic_output_shape_ops` is set, but the frame that
resumes after it takes every size as a symbol: no recompilation for new cloud sizes.

This module defines the operators and their fake kernels; the modules that own the eager
code register it as the operators' implementation (so that imports flow one way:
:mod:`~tg_samplenet.ops.neighbors`, :mod:`~tg_samplenet.ops.farthest_point`, and
:class:`~tg_samplenet.SampleNet` for its inference step; :obj:`mask_index` is here). The
operators are called only while :func:`torch.compiler.is_compiling`: eager results are the
eager code's, bit for bit. The kernels are wrapped in :func:`torch.compiler.disable`: where a
graph breaks at an operator, Dynamo would otherwise trace the kernel's Python as a new frame
and meet the extension call again. The operators carry no gradient (their outputs are indices), and
their inputs are passed detached.
"""

from __future__ import annotations

from typing import Optional

import torch
from torch import Tensor

__all__ = [
    "PADDED_KNN",
    "FARTHEST_POINT_SAMPLING",
    "MATCH_SAMPLE",
    "MASK_INDEX",
    "is_compiling",
    "select_index",
]

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

MATCH_SAMPLE = "tg_samplenet::match_sample"
_LIBRARY.define(
    "match_sample(Tensor pos, Tensor batch, Tensor simplified, Tensor simplified_batch, "
    "Tensor counts, str matching, int? max_matched, bool complete) -> Tensor"
)

MASK_INDEX = "tg_samplenet::mask_index"
_LIBRARY.define("mask_index(Tensor mask) -> Tensor")


def _dynamic_size(most: int | torch.SymInt) -> torch.SymInt:
    # A new unbacked size in [0, most]; an upper bound that is itself symbolic (an unbacked
    # size from an earlier operator) cannot be given.
    bound = {"max": most} if isinstance(most, int) else {}
    return torch.library.get_ctx().new_dynamic_size(**bound)


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
    pos: Tensor, batch: Tensor, counts: Tensor, selected: Optional[Tensor], random_start: bool
) -> Tensor:
    # counts.sum() new indices: a size only the values of counts decide.
    return pos.new_empty((_dynamic_size(pos.size(0)),), dtype=torch.long)


@torch.library.register_fake(MATCH_SAMPLE, lib=_LIBRARY)
def _match_sample_fake(
    pos: Tensor,
    batch: Tensor,
    simplified: Tensor,
    simplified_batch: Tensor,
    counts: Tensor,
    matching: str,
    max_matched: Optional[int],
    complete: bool,
) -> Tensor:
    return pos.new_empty((_dynamic_size(pos.size(0)),), dtype=torch.long)


@torch.library.register_fake(MASK_INDEX, lib=_LIBRARY)
def _mask_index_fake(mask: Tensor) -> Tensor:
    return mask.new_empty((_dynamic_size(mask.numel()),), dtype=torch.long)


@torch.library.impl(MASK_INDEX, ("CPU", "CUDA"), lib=_LIBRARY)
@torch.compiler.disable
def _mask_index_kernel(mask: Tensor) -> Tensor:
    return mask.nonzero().view(-1)


def select_index(mask: Tensor) -> Tensor:
    r"""What to index with to keep the entries of a 1-D boolean :obj:`mask`: the mask
    itself in eager code, its indices (:obj:`tg_samplenet::mask_index`) while compiling.
    Both select the same entries, and their gradients are the same."""
    return torch.ops.tg_samplenet.mask_index(mask) if is_compiling() else mask


def is_compiling() -> bool:
    r"""Whether Dynamo is tracing the caller (then the operators above replace the eager
    calls, and checks that read tensor values are skipped)."""
    return torch.compiler.is_compiling()
