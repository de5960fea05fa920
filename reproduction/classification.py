r"""The classification example's task networks, trained the one way the example and the
real-data study share: PointNet with and without its transform nets, on complete clouds."""

from __future__ import annotations

from pathlib import Path
from typing import Union

import torch
from torch_geometric.loader import DataLoader

from reproduction.config import ClassificationProfile
from reproduction.tasks.classification import PointNet, classification_loss
from tg_samplenet.training.fit import freeze
from tg_samplenet.training.loop import fit_model

__all__ = ["train_pointnets"]


def train_pointnets(
    profile: ClassificationProfile,
    num_classes: int,
    loader: DataLoader,
    checkpoint_dir: Path,
    device: Union[str, torch.device] = "cpu",
    progress: bool = True,
) -> tuple[PointNet, PointNet]:
    r"""Trains PointNet (with its transform nets) and vanilla PointNet on complete clouds
    with :obj:`profile`'s widths, epochs and learning rate, resuming from
    :obj:`checkpoint_dir/pointnet.pt` and :obj:`pointnet_vanilla.pt`, and returns both
    frozen (eval mode, no gradients). Both are built before either trains, so that their
    initial weights depend only on the seed.

    :rtype: :obj:`(pointnet, vanilla)`
    """
    widths = dict(
        point_channels=profile.point_channels,
        global_channels=profile.task_width,
        head_channels=profile.head_channels,
        tnet_point_channels=profile.tnet_point_channels,
        tnet_head_channels=profile.tnet_head_channels,
    )
    pointnet = PointNet(num_classes, True, True, **widths).to(device)
    vanilla = PointNet(num_classes, False, False, **widths).to(device)
    for name, model in (("pointnet", pointnet), ("pointnet_vanilla", vanilla)):
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
    return pointnet, vanilla
