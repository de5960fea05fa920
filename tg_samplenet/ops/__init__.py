r"""Parameter-free functions on PyG's :obj:`(pos, batch)` layout: batch-vector helpers, the
neighbour search with its one back-end choice, farthest point sampling, and the matching of
SampleNet's inference step.

Names that PyG also has keep PyG's contract (:func:`fps`, :func:`knn`, :func:`radius`), and
run on a pip install of PyG without :obj:`pyg-lib`; the others say how they differ
(:func:`padded_knn` returns a fixed :obj:`[M, k]` table, not PyG's :obj:`[2, E]` edges).
Every public function checks its arguments once (:mod:`~tg_samplenet.ops.checks`) and raises
:class:`InputError`, naming the argument, for input it cannot take; the kernels behind them
are :mod:`torch.library` operators (:mod:`~tg_samplenet.ops.kernels`)."""

from tg_samplenet.ops import kernels  # noqa: F401  (registers the tg_samplenet:: operators)
from tg_samplenet.ops.batch import sample_counts
from tg_samplenet.ops.checks import InputError, InputTypeError
from tg_samplenet.ops.farthest_point import farthest_point_sampling, fps
from tg_samplenet.ops.matching import distinct_sample, first_occurrence, hard_sample
from tg_samplenet.ops.neighbors import (
    KNNResult,
    available_backends,
    get_backend,
    knn,
    nearest_index,
    padded_knn,
    radius,
    use_backend,
)

__all__ = [
    "InputError",
    "InputTypeError",
    "KNNResult",
    "available_backends",
    "distinct_sample",
    "farthest_point_sampling",
    "first_occurrence",
    "fps",
    "get_backend",
    "hard_sample",
    "knn",
    "nearest_index",
    "padded_knn",
    "radius",
    "sample_counts",
    "use_backend",
]
