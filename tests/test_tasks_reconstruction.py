r"""The reconstruction task of :mod:`reproduction.tasks.reconstruction`: the NRE summary and
the evaluation's reconstruction error against brute-force references."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch_geometric.data import Data
from torch_geometric.loader import DataLoader

from reproduction.tasks.reconstruction import (
    ReconstructionOutput,
    evaluate_reconstruction,
    nre_summary,
)
from reproduction.testing import brute_chamfer


def random_clouds(num_clouds: int, num_points: int, seed: int = 0) -> list[Data]:
    generator = torch.Generator().manual_seed(seed)
    return [
        Data(pos=torch.rand(num_points, 3, generator=generator) - 0.5, y=torch.tensor([i % 2]))
        for i in range(num_clouds)
    ]


def test_nre_is_the_mean_of_per_cloud_ratios_overall_and_per_class():
    cd_sampled = torch.tensor([2.0, 3.0, 1.0, 8.0, 5.0])
    cd_complete = torch.tensor([1.0, 1.5, 0.5, 2.0, 5.0])
    labels = torch.tensor([0, 1, 0, 1, 1])
    overall, by_class = nre_summary(cd_sampled, cd_complete, labels, ["a", "b"])
    ratios = [s / c for s, c in zip(cd_sampled.tolist(), cd_complete.tolist(), strict=True)]
    assert overall == pytest.approx(sum(ratios) / 5)
    assert overall != pytest.approx(float(cd_sampled.mean() / cd_complete.mean()))
    assert by_class["a"] == pytest.approx((ratios[0] + ratios[2]) / 2)
    assert by_class["b"] == pytest.approx((ratios[1] + ratios[3] + ratios[4]) / 3)


def test_reconstruction_error_is_chamfer_to_the_complete_cloud():
    class Shift(torch.nn.Module):
        r"""Stands in for the autoencoder: 'reconstructs' 6 points, the first 6 of the input
        shifted by 0.1 along x (fine for equal-size clouds)."""

        def forward(self, pos, batch):
            rank = torch.arange(pos.size(0)) - torch.searchsorted(batch, batch)
            keep = rank < 6
            out = pos[keep] + torch.tensor([0.1, 0.0, 0.0])
            return ReconstructionOutput(out, batch[keep], None)

    clouds = random_clouds(3, 10, seed=4)
    loader = DataLoader(clouds, batch_size=2)
    errors, labels = evaluate_reconstruction(Shift(), loader, "cpu")
    expected = [
        brute_chamfer(
            (c.pos[:6].double() + torch.tensor([0.1, 0, 0])).tolist(), c.pos.double().tolist()
        )
        for c in clouds
    ]
    np.testing.assert_allclose(errors.double().numpy(), expected, rtol=1e-4)
    assert labels.tolist() == [c.y.item() for c in clouds]
