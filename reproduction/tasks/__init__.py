r"""The paper's three tasks, one module each, in PyG's :obj:`(pos, batch)` layout: the task
network, its loss, its metric and its evaluation on the points a sampler keeps.

- :mod:`~reproduction.tasks.classification`: PointNet, accuracy.
- :mod:`~reproduction.tasks.registration`: PCRNet, template/source pairs, rotation errors,
  sampling consistency.
- :mod:`~reproduction.tasks.reconstruction`: the point-cloud autoencoder, NRE.
- :mod:`~reproduction.tasks.pointnet2`: PointNet++ whose set abstractions sample with fps or
  with a SampleNet trained jointly with it.

:mod:`~reproduction.tasks.layout` (per-cloud pooling), :mod:`~reproduction.tasks.rotations`
and :mod:`~reproduction.tasks.metrics` hold what the tasks share."""

from reproduction.tasks.classification import (
    PointNet,
    TNet,
    accuracy,
    classification_loss,
    evaluate_accuracy,
    orthogonality_regularizer,
    per_class_accuracy,
)
from reproduction.tasks.metrics import per_class_mean
from reproduction.tasks.reconstruction import (
    PointCloudAE,
    ReconstructionOutput,
    evaluate_reconstruction,
    normalized_reconstruction_error,
    nre_summary,
    reconstruction_errors,
)
from reproduction.tasks.registration import (
    PCRNet,
    PCRNetOutput,
    evaluate_registration,
    make_pairs,
    random_start_fps,
    registration_loss,
    rotation_errors,
    sampling_consistency,
)

__all__ = [
    "PointNet",
    "TNet",
    "orthogonality_regularizer",
    "classification_loss",
    "accuracy",
    "per_class_accuracy",
    "evaluate_accuracy",
    "PCRNet",
    "PCRNetOutput",
    "make_pairs",
    "registration_loss",
    "rotation_errors",
    "sampling_consistency",
    "random_start_fps",
    "evaluate_registration",
    "PointCloudAE",
    "ReconstructionOutput",
    "reconstruction_errors",
    "normalized_reconstruction_error",
    "nre_summary",
    "evaluate_reconstruction",
    "per_class_mean",
]
