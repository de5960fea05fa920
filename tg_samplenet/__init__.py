r"""SampleNet (Lang, Manor, Avidan, CVPR 2020): learned, differentiable point-cloud sampling for
PyTorch Geometric.

The top level holds the sampler's API. The layers below it, each importing only from those
under it:

- :mod:`tg_samplenet.ops`: parameter-free functions on PyG's :obj:`(pos, batch)` layout,
- :mod:`tg_samplenet.nn`: :class:`SoftProjection`, :class:`SampleNet`, the fps drop-in,
- :mod:`tg_samplenet.losses`, :mod:`tg_samplenet.temperature`, :mod:`tg_samplenet.io`,
- :mod:`reproduction.tasks`: the paper's task networks and metrics,
- :mod:`tg_samplenet.datasets`: the built-in shapes and the real data sets' loaders,
- :mod:`tg_samplenet.experiments`: configurations, training loops and reports of the
  examples and benchmarks.
"""

from tg_samplenet.losses import (
    average_nn_distance,
    chamfer_distance,
    max_nn_distance,
    progressive_loss,
    samplenet_loss,
    simplification_loss,
)
from tg_samplenet.nn import (
    FPSPerLayer,
    SampleNet,
    SampleNetFPS,
    SampleNetOutput,
    SampleNetSelect,
    SoftProjection,
    SoftProjectionOutput,
)
from tg_samplenet.temperature import TemperatureProfile
from tg_samplenet.training import LossWeights, fit_sampler, freeze
from tg_samplenet.transforms import SampleNetSampling

__version__ = "0.2.0"

__all__ = [
    "FPSPerLayer",
    "SampleNet",
    "SampleNetOutput",
    "SampleNetFPS",
    "SampleNetSampling",
    "SampleNetSelect",
    "SoftProjection",
    "SoftProjectionOutput",
    "TemperatureProfile",
    "average_nn_distance",
    "chamfer_distance",
    "fit_sampler",
    "max_nn_distance",
    "progressive_loss",
    "samplenet_loss",
    "simplification_loss",
]
