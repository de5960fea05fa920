r"""SampleNet (Lang, Manor, Avidan, CVPR 2020): learned, differentiable point-cloud sampling for
PyTorch Geometric."""

from tg_samplenet.backend import fps, knn, nearest
from tg_samplenet.farthest_point import farthest_point_sampling, sample_counts
from tg_samplenet.fps_drop_in import SampleNetFPS
from tg_samplenet.losses import (
    average_nn_distance,
    chamfer_distance,
    max_nn_distance,
    progressive_loss,
    samplenet_loss,
    simplification_loss,
)
from tg_samplenet.matching import hard_sample
from tg_samplenet.sampler import SampleNet, SampleNetOutput
from tg_samplenet.soft_projection import SoftProjection, SoftProjectionOutput
from tg_samplenet.temperature import TemperatureProfile

__version__ = "0.1.0"

__all__ = [
    "SampleNet",
    "SampleNetOutput",
    "SampleNetFPS",
    "SoftProjection",
    "SoftProjectionOutput",
    "TemperatureProfile",
    "average_nn_distance",
    "chamfer_distance",
    "farthest_point_sampling",
    "fps",
    "hard_sample",
    "knn",
    "max_nn_distance",
    "nearest",
    "progressive_loss",
    "sample_counts",
    "samplenet_loss",
    "simplification_loss",
]
