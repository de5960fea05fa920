r"""The same seed on the same machine and thread count gives the same result: a sampler
trained twice from one seed has the same weights bit for bit and samples the same points,
and the example's smoke run repeats its table exactly. A different seed changes the weights,
so the comparison can fail."""

from __future__ import annotations

import torch
from torch_geometric.data import Data
from torch_geometric.loader import DataLoader

from tg_samplenet.nn import SampleNet
from tg_samplenet.training import fit_sampler


def train(seed: int) -> tuple[SampleNet, list[float]]:
    torch.manual_seed(0)  # the same data for every seed
    clouds = [Data(pos=torch.randn(96, 3), y=torch.tensor([i % 3])) for i in range(12)]
    head = torch.nn.Linear(3, 3)
    head.requires_grad_(False)

    def task_loss(out, data):
        pooled = torch.zeros(data.num_graphs, 3).index_add_(0, out.batch, out.pos)
        return torch.nn.functional.cross_entropy(head(pooled), data.y)

    torch.manual_seed(seed)
    sampler = SampleNet(16, point_channels=(16, 32), head_channels=(32,))
    loader = DataLoader(clouds, batch_size=4, shuffle=True)
    losses = fit_sampler(sampler, task_loss, loader, epochs=2, lr=1e-2, progress=False)
    return sampler, losses


def test_same_seed_trains_the_same_sampler_and_samples_the_same_points():
    (first, first_losses), (second, second_losses) = train(7), train(7)
    assert first_losses == second_losses
    for (name, a), b in zip(first.state_dict().items(), second.state_dict().values()):
        assert torch.equal(a, b), name
    pos = torch.randn(3 * 200, 3)
    batch = torch.arange(3).repeat_interleave(200)
    assert torch.equal(first.sample(pos, batch), second.sample(pos, batch))


def test_another_seed_trains_another_sampler():
    first, _ = train(7)
    other, _ = train(8)
    assert not all(
        torch.equal(a, b) for a, b in zip(first.state_dict().values(), other.state_dict().values())
    )
