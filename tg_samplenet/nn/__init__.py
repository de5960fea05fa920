r"""The modules: :class:`SoftProjection`, :class:`SampleNet`, and the adapters of a trained
sampler to PyG's :obj:`fps` and :class:`~torch_geometric.nn.pool.select.Select`."""

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
