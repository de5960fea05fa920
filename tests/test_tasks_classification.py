r"""The classification task of :mod:`reproduction.tasks.classification`: its training loss and
the accuracy of its evaluation loop, against direct computations."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch_geometric.data import Data
from torch_geometric.loader import DataLoader

from reproduction.tasks.classification import PointNet, classification_loss, evaluate_accuracy
from reproduction.testing import random_clouds

SMALL = dict(
    point_channels=(8, 8, 8, 16),
    global_channels=16,
    head_channels=(16,),
    tnet_point_channels=(8, 16),
    tnet_head_channels=(8,),
)


def test_classification_loss_is_cross_entropy_plus_weighted_regularizer():
    torch.manual_seed(0)
    model = PointNet(4, **SMALL).eval()
    torch.nn.init.normal_(model.feature_tnet.lin.weight, std=0.1)  # a non-orthogonal transform
    pos, batch = random_clouds([9, 9, 9])
    y = torch.tensor([0, 3, 1])
    logits, reg = model(pos, batch, return_regularizer=True)
    assert reg > 0
    expected = F.cross_entropy(logits, y) + 0.001 * reg
    torch.testing.assert_close(classification_loss(model, pos, batch, y), expected)
    weighted = classification_loss(model, pos, batch, y, regularizer_weight=2.0)
    torch.testing.assert_close(weighted, F.cross_entropy(logits, y) + 2.0 * reg)


class FirstCoordinate(torch.nn.Module):
    r"""Stands in for PointNet: predicts class 1 when a cloud's first point has x > 0.5."""

    def forward(self, pos, batch):
        first = torch.searchsorted(batch, torch.arange(int(batch[-1]) + 1))
        return F.one_hot((pos[first, 0] > 0.5).long(), 2).float()


def test_evaluate_accuracy_counts_correct_clouds_on_the_sampled_points():
    generator = torch.Generator().manual_seed(3)
    clouds = [
        Data(pos=torch.rand(6, 3, generator=generator), y=torch.tensor([i % 2])) for i in range(11)
    ]
    loader = DataLoader(clouds, batch_size=4)  # batches of 4, 4 and 3
    expected = sum(int((c.pos[0, 0] > 0.5) == bool(c.y)) for c in clouds) / 11
    assert evaluate_accuracy(FirstCoordinate(), loader, "cpu") == expected

    def last_point(pos, batch):  # keeps each cloud's last point only
        last = torch.searchsorted(batch, torch.arange(int(batch[-1]) + 1), right=True) - 1
        return pos[last], batch[last]

    expected = sum(int((c.pos[-1, 0] > 0.5) == bool(c.y)) for c in clouds) / 11
    assert evaluate_accuracy(FirstCoordinate(), loader, "cpu", last_point) == expected
