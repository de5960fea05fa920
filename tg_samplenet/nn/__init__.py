r"""The learned sampler's modules: :class:`SoftProjection`, :class:`SampleNet` and its output,
:class:`SampleNetFPS` (a module with :func:`torch_geometric.nn.fps`'s signature) and
:class:`FPSPerLayer` (one such callable per layer of a model),
:class:`SampleNetSelect` (a PyG :class:`~torch_geometric.nn.pool.select.Select`) and the
:func:`weighted_gather` they all carry per-point tensors with."""

from tg_samplenet.nn.fps_drop_in import SampleNetFPS, hard_sample_indices
from tg_samplenet.nn.fps_per_layer import FPSPerLayer
from tg_samplenet.nn.output import SampleNetOutput
from tg_samplenet.nn.sampler import SampleNet
from tg_samplenet.nn.select import SampleNetSelect, SampleNetSelectOutput
from tg_samplenet.nn.soft_projection import SoftProjection, SoftProjectionOutput
from tg_samplenet.nn.weighted_gather import weighted_gather

__all__ = [
    "FPSPerLayer",
    "SampleNet",
    "SampleNetFPS",
    "SampleNetOutput",
    "SampleNetSelect",
    "SampleNetSelectOutput",
    "SoftProjection",
    "SoftProjectionOutput",
    "hard_sample_indices",
    "weighted_gather",
]
