r"""Parameter-free functions on PyG's :obj:`(pos, batch)` layout: neighbour search, farthest
point sampling and SampleNet's inference matching. :func:`fps`, :func:`knn` and :func:`radius`
keep PyG's contracts without needing :obj:`pyg-lib`; bad input raises :class:`InputError`."""

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
