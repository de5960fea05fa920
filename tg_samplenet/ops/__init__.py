r"""Parameter-free functions on PyG's :obj:`(pos, batch)` layout: batch-vector helpers, the
neighbour search (the one place that picks the back-end), farthest point sampling and the
hard sampling (matching) of SampleNet's inference step.

Names that PyG also has keep PyG's contract (:func:`fps`); the others say how they differ
(:func:`padded_knn` returns a fixed :obj:`[M, k]` table, not PyG's :obj:`[2, E]` edges).

Every public function here checks its arguments once (see :mod:`tg_samplenet.ops.checks`) and
raises :class:`InputError`, naming the argument, for input it cannot take."""

from tg_samplenet.ops.batch import cloud_ptr, cloud_sizes, rank_in_cloud, sample_counts
from tg_samplenet.ops.checks import InputError, InputTypeError
from tg_samplenet.ops.distinct_matching import distinct_sample
from tg_samplenet.ops.farthest_point import farthest_point_sampling, fps
from tg_samplenet.ops.matching import first_occurrence, hard_sample
from tg_samplenet.ops.neighbors import (
    KNNResult,
    available_backends,
    get_backend,
    nearest_index,
    padded_knn,
    use_backend,
    zorder,
)

__all__ = [
    "InputError",
    "InputTypeError",
    "KNNResult",
    "available_backends",
    "cloud_ptr",
    "cloud_sizes",
    "distinct_sample",
    "farthest_point_sampling",
    "first_occurrence",
    "fps",
    "get_backend",
    "hard_sample",
    "nearest_index",
    "padded_knn",
    "rank_in_cloud",
    "sample_counts",
    "use_backend",
    "zorder",
]
