r"""SampleNet (Lang, Manor, Avidan, CVPR 2020): learned, differentiable point-cloud sampling for
PyTorch Geometric.

The top level holds what a user of the sampler needs. The layers below it, each importing
only from those under it:

- :mod:`tg_samplenet.ops`: parameter-free functions on PyG's :obj:`(pos, batch)` layout
  (:func:`~tg_samplenet.ops.fps`, :func:`~tg_samplenet.ops.knn`,
  :func:`~tg_samplenet.ops.radius` with PyG's contracts, the matching of the inference step),
- :mod:`tg_samplenet.nn`: :class:`SoftProjection`, :class:`SampleNet` and its adapters,
- :mod:`tg_samplenet.losses`, :mod:`tg_samplenet.temperature`, :mod:`tg_samplenet.io`,
  :mod:`tg_samplenet.transforms`,
- :mod:`tg_samplenet.training`: :func:`fit_sampler` for any frozen model, resumable and
  data-parallel, and :func:`upgrade_fps` for a trained model's own fps layers,
- :mod:`tg_samplenet.models`, :mod:`tg_samplenet.datasets`, :mod:`tg_samplenet.cli`: the task
  networks and data sets of the command line.

Bad input raises :class:`InputError` (a :class:`ValueError` that names the argument).
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
from tg_samplenet.ops.checks import InputError, InputTypeError
from tg_samplenet.temperature import TemperatureSchedule
from tg_samplenet.training import LossWeights, fit_sampler, freeze
from tg_samplenet.transforms import SampleNetSampling

__version__ = "0.3.0"

__all__ = [
    "FPSPerLayer",
    "InputError",
    "InputTypeError",
    "LossWeights",
    "SampleNet",
    "SampleNetFPS",
    "SampleNetOutput",
    "SampleNetSampling",
    "SampleNetSelect",
    "SoftProjection",
    "SoftProjectionOutput",
    "TemperatureSchedule",
    "average_nn_distance",
    "chamfer_distance",
    "fit_sampler",
    "freeze",
    "max_nn_distance",
    "progressive_loss",
    "samplenet_loss",
    "simplification_loss",
]
