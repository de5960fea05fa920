r"""The learned sampler's modules: :class:`SoftProjection`, :class:`SampleNet` and its output,
the adapters of a trained sampler (:class:`SampleNetFPS` with
:func:`torch_geometric.nn.fps`'s signature, :class:`FPSPerLayer` for one per layer of a model,
:class:`SampleNetSelect` as a PyG :class:`~torch_geometric.nn.pool.select.Select`) and the
:func:`weighted_gather` that carries per-point tensors through a sampler's choice."""

from tg_samplenet.nn.fps_drop_in import SampleNetFPS
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
    "weighted_gather",
]
