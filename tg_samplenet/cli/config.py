r"""The settings of ``tg-samplenet train``: one :class:`TrainConfig` per task and profile, with
the values of the paper's examples (:obj:`"paper"`: the authors'; :obj:`"cpu"`: minutes on a
few cores; :obj:`"smoke"`: the whole pipeline on tiny clouds)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from tg_samplenet.training.fit import LossWeights


@dataclass(frozen=True)
class TrainConfig:
    r"""What ``train`` needs: the points per cloud :obj:`num_points`, the sample sizes of the
    held-out report :obj:`sizes`, the progressive sampler's :obj:`control_sizes`, epochs,
    batch size and Adam learning rates of both networks, the task network's per-point widths
    :obj:`task_channels` (PointNet's last is its global feature, the autoencoder's its
    bottleneck) and :obj:`head_channels` (PointNet's classifier, the autoencoder's decoder),
    the soft projection's :obj:`k`, the sampler's :obj:`loss` weights and their
    :obj:`reduction` over control sizes, the learning-rate schedule of both networks and
    further arguments of :class:`~tg_samplenet.SampleNet` (:obj:`sampler`)."""

    num_points: int
    sizes: tuple[int, ...]
    control_sizes: tuple[int, ...]
    task_epochs: int
    sampler_epochs: int
    batch_size: int
    task_lr: float
    sampler_lr: float
    task_channels: tuple[int, ...]
    head_channels: tuple[int, ...]
    k: int
    loss: LossWeights
    reduction: str = "sum"
    lr_schedule: str = "constant"
    sampler: dict[str, Any] = field(default_factory=dict)


def _powers(low: int, high: int) -> tuple[int, ...]:
    return tuple(2**i for i in range(low, high + 1))


_SMOKE = dict(num_points=128, sizes=(32, 16, 8), control_sizes=_powers(3, 7), task_epochs=2)
_SMOKE.update(sampler_epochs=2, batch_size=8)
_CLASSIFICATION = dict(k=7, loss=LossWeights(alpha=30.0, lmbda=1.0, gamma=0.5, delta=1 / 30))
_RECONSTRUCTION = dict(k=16, loss=LossWeights(alpha=0.01, lmbda=1e-4, gamma=0.0, delta=1 / 64))
_RECONSTRUCTION.update(reduction="mean")

PROFILES: dict[str, dict[str, TrainConfig]] = {
    "classification": {
        "smoke": TrainConfig(
            **_SMOKE, **_CLASSIFICATION, task_lr=1e-3, sampler_lr=1e-3, lr_schedule="cosine",
            task_channels=(16, 16, 16, 32, 32), head_channels=(32, 16),
        ),
        # A narrower PointNet than the paper's; the sampler with the residual gradient.
        "cpu": TrainConfig(
            num_points=1024, sizes=_powers(3, 9)[::-1], control_sizes=_powers(3, 9),
            task_epochs=20, sampler_epochs=40, batch_size=16, task_lr=1e-3, sampler_lr=1e-2,
            task_channels=(32, 32, 32, 64, 128), head_channels=(128, 64), **_CLASSIFICATION,
            lr_schedule="cosine", sampler=dict(residual_gradient=True),
        ),
        "paper": TrainConfig(
            num_points=1024, sizes=_powers(3, 9)[::-1], control_sizes=_powers(1, 10),
            task_epochs=250, sampler_epochs=500, batch_size=32, task_lr=1e-3, sampler_lr=1e-2,
            task_channels=(64, 64, 64, 128, 1024), head_channels=(512, 256), **_CLASSIFICATION,
            lr_schedule="staircase",
        ),
    },
    "reconstruction": {
        "smoke": TrainConfig(
            **_SMOKE, **_RECONSTRUCTION, task_lr=5e-4, sampler_lr=5e-4,
            task_channels=(16, 32, 32), head_channels=(64,),
            sampler=dict(point_channels=(16, 32), head_channels=(64,), initial_temperature=1.0),
        ),
        # The sampler starts at t = 0.1: a few hundred steps would not bring t = 1 down.
        "cpu": TrainConfig(
            num_points=512, sizes=_powers(3, 8)[::-1], control_sizes=_powers(3, 9),
            task_epochs=25, sampler_epochs=20, batch_size=25, task_lr=1e-3, sampler_lr=1e-3,
            task_channels=(64, 128, 128, 128), head_channels=(256, 256), **_RECONSTRUCTION,
            sampler=dict(
                point_channels=(64, 64, 128), head_channels=(256, 256), initial_temperature=0.1
            ),
        ),
        "paper": TrainConfig(
            num_points=2048, sizes=_powers(4, 10)[::-1], control_sizes=_powers(4, 11),
            task_epochs=500, sampler_epochs=400, batch_size=50, task_lr=5e-4, sampler_lr=5e-4,
            task_channels=(64, 128, 128, 256, 128), head_channels=(256, 256), **_RECONSTRUCTION,
            sampler=dict(
                point_channels=(64, 128, 128, 256, 128), head_channels=(256, 256),
                initial_temperature=1.0,
            ),
        ),
    },
}  # fmt: skip
