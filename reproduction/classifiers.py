r"""The classifiers the classification example's samplers serve, trained the one way the
example and the real-data study share: PointNet with and without its transform nets, on
complete clouds."""

from __future__ import annotations

from pathlib import Path
from typing import Optional, Union

import torch
from torch_geometric.loader import DataLoader

from reproduction.config import ClassificationProfile
from reproduction.progress import Stages
from reproduction.tasks import PointNet
from reproduction.tasks.classification import classification_loss
from tg_samplenet import freeze
from tg_samplenet.training import fit_model

__all__ = ["num_classifier_stages", "train_classifiers"]


def num_classifier_stages(profile: ClassificationProfile) -> int:
    r"""How many networks :func:`train_classifiers` trains (1 or 2)."""
    return 2 if profile.transform_nets else 1


def train_classifiers(
    profile: ClassificationProfile,
    num_classes: int,
    loader: DataLoader,
    checkpoint_dir: Path,
    device: Union[str, torch.device] = "cpu",
    progress: bool = True,
    stages: Optional[Stages] = None,
) -> tuple[PointNet, PointNet]:
    r"""Trains PointNet (with its transform nets) and vanilla PointNet on complete clouds
    with :obj:`profile`'s widths, epochs and learning rate, resuming from
    :obj:`checkpoint_dir/pointnet.pt` and :obj:`pointnet_vanilla.pt`, and returns both
    frozen (eval mode, no gradients), each one of the run's :obj:`stages`. Both are built
    before either trains, so that their initial weights depend only on the seed. With
    :obj:`profile.transform_nets=False` only vanilla PointNet is trained, and it is returned
    twice.

    :rtype: :obj:`(pointnet, vanilla)`
    """
    widths = dict(
        point_channels=profile.point_channels,
        global_channels=profile.task_width,
        head_channels=profile.head_channels,
        tnet_point_channels=profile.tnet_point_channels,
        tnet_head_channels=profile.tnet_head_channels,
    )
    networks = {}
    if profile.transform_nets:
        networks["pointnet"] = PointNet(num_classes, True, True, **widths).to(device)
    networks["pointnet_vanilla"] = PointNet(num_classes, False, False, **widths).to(device)
    for name, model in networks.items():
        if stages is not None:
            label = "PointNet" if name == "pointnet" else "vanilla PointNet"
            stages(f"train {label} on complete clouds ({profile.task_epochs} epochs)")
        fit_model(
            model,
            lambda data, model=model: classification_loss(model, data.pos, data.batch, data.y),
            loader,
            epochs=profile.task_epochs,
            lr=profile.task_lr,
            checkpoint=Path(checkpoint_dir) / f"{name}.pt",
            lr_schedule=profile.lr_schedule,
            decay_samples=profile.task_decay_samples,
            device=device,
            progress=progress,
            desc=f"train {name}",
        )
        freeze(model)
    vanilla = networks["pointnet_vanilla"]
    return networks.get("pointnet", vanilla), vanilla
