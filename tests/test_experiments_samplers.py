r"""The samplers the examples train and evaluate (:mod:`reproduction.samplers`):
what each evaluation mode hands the task network, against the sampler's own output and the
brute-force soft projection, and the set of samplers :func:`train_samplers` trains."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch
from torch_geometric.data import Data
from torch_geometric.loader import DataLoader

from reproduction.config import CLASSIFICATION, REGISTRATION
from reproduction.progress import Stages
from reproduction.samplers import (
    TEMPERATURE_SCHEDULES,
    gather_sample,
    learned_samplers,
    loss_weights,
    make_sampler,
    num_sampler_stages,
    progressive_points,
    samplenet_indices,
    temperature_study,
    train_sampler,
    train_samplers,
)
from reproduction.testing import brute_distinct_sample, brute_soft_projection, random_clouds
from tg_samplenet import SampleNet

SMALL = dict(point_channels=(8, 16), head_channels=(16,))


@pytest.fixture
def progressive():
    torch.manual_seed(0)
    return SampleNet(20, k=3, progressive=True, initial_temperature=0.3, **SMALL).eval()


def test_progressive_points_in_every_mode(progressive):
    pos, batch = random_clouds([20, 20, 20], seed=1)
    m = 5
    with torch.no_grad():
        out = progressive(pos, batch)
        q = out.simplified.view(3, 20, 3)[:, :m].reshape(-1, 3)
        q_batch = torch.arange(3).repeat_interleave(m)

        sampled, sampled_batch = progressive_points(progressive, m)(pos, batch)
        index = out.index.view(3, 20)[:, :m].reshape(-1)
        assert torch.equal(sampled, pos[index]) and torch.equal(sampled_batch, q_batch)

        simplified, simplified_batch = progressive_points(progressive, m, "simplified")(pos, batch)
        assert torch.equal(simplified, q) and torch.equal(simplified_batch, q_batch)

        projected, _ = progressive_points(progressive, m, "projected")(pos, batch)
        sigma = float(progressive.projection.sigma)
        expected = brute_soft_projection(pos, q, batch, q_batch, 3, sigma)
        torch.testing.assert_close(projected, torch.tensor(expected), atol=1e-5, rtol=1e-4)

        # The learned prefix: the first min(m, prefix) simplified points matched to distinct
        # input points, then farthest points continued from them.
        for size, prefix in ((m, 3), (m, 32), (20, 0)):
            picked, picked_batch = progressive_points(progressive, size, "prefix", prefix)(
                pos, batch
            )
            index = brute_distinct_sample(
                pos, batch, out.simplified, out.simplified_batch, [size] * 3, prefix
            )
            assert torch.equal(picked, pos[index]) and torch.equal(picked_batch, batch[index])
    with pytest.raises(ValueError, match="mode must be"):
        progressive_points(progressive, m, "soft")


def test_index_samplers_gather_the_points_they_pick(progressive):
    pos, batch = random_clouds([20, 20], seed=2)
    with torch.no_grad():
        index = samplenet_indices(progressive)(pos, batch, 4)
        points, points_batch = gather_sample(samplenet_indices(progressive), 4)(pos, batch)
    assert index.numel() == 8 and torch.equal(points, pos[index])
    assert torch.equal(points_batch, torch.tensor([0] * 4 + [1] * 4))
    fixed = {("samplenet", 4): progressive, ("snet", 8): progressive}
    assert list(learned_samplers(fixed, 4)) == ["samplenet"]
    assert list(learned_samplers(fixed, 8, progressive)) == ["snet", "samplenet_progressive"]


def test_train_samplers_trains_each_kind_once_and_resumes(tmp_path):
    profile = replace(REGISTRATION["smoke"], num_points=24, train_sizes=(8, 4), sampler_epochs=1)
    profile = replace(profile, control_sizes=(4, 8, 24))
    generator = torch.Generator().manual_seed(0)
    clouds = [Data(pos=torch.rand(24, 3, generator=generator)) for _ in range(8)]
    loader = DataLoader(clouds, batch_size=4)
    seen: dict[str, list[int]] = {"fixed": [], "progressive": []}

    def loss(kind):
        def task_loss(out, data):
            seen[kind].append(int(out.counts.max()))
            return out.pos.pow(2).mean()

        return task_loss

    stages = Stages(num_sampler_stages(profile), bars=False)
    fixed, progressive = train_samplers(
        profile,
        loss("fixed"),
        loader,
        tmp_path,
        "cpu",
        progress=False,
        progressive_task_loss=loss("progressive"),
        stages=stages,
    )
    assert stages.count == stages.total == 5  # SampleNet and S-NET at 8 and 4, progressive
    assert sorted(fixed) == [("samplenet", 4), ("samplenet", 8), ("snet", 4), ("snet", 8)]
    assert all(not s.training for s in [*fixed.values(), progressive])
    assert fixed["snet", 4].skip_projection and not fixed["samplenet", 4].skip_projection
    assert progressive.progressive and progressive.num_out_points == 24
    # Two steps per sampler; the progressive one sees every control size in each step.
    assert seen["fixed"] == [8, 8, 8, 8, 4, 4, 4, 4]
    assert seen["progressive"] == [4, 8, 24] * 2
    names = {p.name for p in tmp_path.iterdir()}
    assert {"samplenet_8.pt", "snet_4.sampler.pt", "samplenet_progressive.sampler.pt"} <= names
    # A second call finds every checkpoint complete and trains nothing.
    for calls in seen.values():
        calls.clear()
    train_samplers(profile, loss("fixed"), loader, tmp_path, "cpu", progress=False)
    assert seen == {"fixed": [], "progressive": []}


def test_residual_gradient_goes_to_the_samplers_that_project(tmp_path):
    profile = replace(REGISTRATION["smoke"], num_points=16, train_sizes=(4,), sampler_epochs=1)
    profile = replace(profile, control_sizes=(4, 16), residual_gradient=True)
    generator = torch.Generator().manual_seed(0)
    loader = DataLoader([Data(pos=torch.rand(16, 3, generator=generator)) for _ in range(4)], 2)
    fixed, progressive = train_samplers(
        profile, lambda out, data: out.pos.pow(2).mean(), loader, tmp_path, "cpu", progress=False
    )
    assert fixed["samplenet", 4].residual_gradient and progressive.residual_gradient
    assert not fixed["snet", 4].residual_gradient
    # Off in the profile: every sampler takes the paper's gradient.
    fixed, progressive = train_samplers(
        replace(profile, residual_gradient=False),
        lambda out, data: out.pos.pow(2).mean(),
        loader,
        tmp_path / "paper",
        "cpu",
        progress=False,
    )
    assert not any(s.residual_gradient for s in [*fixed.values(), progressive])
    # make_sampler is where the choice is made (the real-data study builds its samplers there).
    assert make_sampler(profile, 4).residual_gradient
    assert not make_sampler(profile, 4, skip_projection=True).residual_gradient
    assert not make_sampler(profile, 4, residual_gradient=False).residual_gradient


def test_each_kind_of_sampler_trains_with_its_own_loss_weights(tmp_path, monkeypatch):
    from reproduction import samplers as module
    from tg_samplenet import LossWeights

    projected = LossWeights(alpha=3.0, lmbda=1.0, gamma=1.0, delta=0.0)
    profile = replace(CLASSIFICATION["smoke"], projected_loss=projected)
    kinds = {
        "samplenet": SampleNet(8, **SMALL),
        "snet": SampleNet(8, skip_projection=True, **SMALL),
        "progressive": SampleNet(16, progressive=True, **SMALL),
    }
    expected = {
        "samplenet": projected,
        "snet": profile.fixed_loss,
        "progressive": profile.progressive_loss,
    }
    used = []
    monkeypatch.setattr(module, "fit_sampler", lambda *a, **kw: used.append(kw["loss_weights"]))
    for name, sampler in kinds.items():
        assert loss_weights(profile, sampler) == expected[name]
        train_sampler(sampler, profile, None, [], tmp_path / f"{name}.pt", "cpu", False)
    assert used == list(expected.values())
    # Without projected_loss SampleNet shares S-NET's weights, as in the paper.
    plain = replace(profile, projected_loss=None)
    assert loss_weights(plain, kinds["samplenet"]) == plain.fixed_loss
    # progressive_alpha changes the progressive sampler's alpha alone.
    smaller = loss_weights(replace(profile, progressive_alpha=3.0), kinds["progressive"])
    assert smaller == replace(profile.progressive_loss, alpha=3.0)
    assert CLASSIFICATION["cpu"].projected_loss.alpha < CLASSIFICATION["cpu"].fixed_loss.alpha


def test_temperature_study_trains_one_progressive_sampler_per_schedule(tmp_path):
    profile = replace(CLASSIFICATION["smoke"], num_points=16, sizes=(8, 4), sampler_epochs=1)
    profile = replace(profile, control_sizes=(4, 8, 16))
    generator = torch.Generator().manual_seed(0)
    loader = DataLoader([Data(pos=torch.rand(16, 3, generator=generator)) for _ in range(4)], 2)
    pos, batch = random_clouds([16, 16], seed=3)

    def evaluate(points):  # the number of points each sample keeps
        return float(points(pos, batch)[0].size(0))

    stages = Stages(len(TEMPERATURE_SCHEDULES), bars=False)
    table = temperature_study(
        profile, lambda out, data: out.pos.pow(2).mean(), loader, evaluate, tmp_path, "cpu",
        progress=False, stages=stages,
    )  # fmt: skip
    assert list(table) == ["learned", "linear", "exponential", "constant"]
    assert all(row == {"8": 16.0, "4": 8.0} for row in table.values())  # m points per cloud
    assert stages.count == 4
    for kind in TEMPERATURE_SCHEDULES:
        sampler = SampleNet.load(tmp_path / f"progressive_temperature_{kind}.sampler.pt")
        assert sampler.progressive and sampler.num_out_points == 16
        # Only the learned schedule leaves t to the optimiser.
        assert sampler.config["learn_temperature"] == (kind == "learned")

    # Every sampler resumes: a second study trains nothing and scores the same.
    def no_training(out, data):
        raise AssertionError("a finished study trained again")

    again = temperature_study(profile, no_training, loader, evaluate, tmp_path, "cpu", False)
    assert again == table


def test_stages_number_their_lines(capsys):
    stages = Stages(3, bars=False)
    stages("train a")
    stages("train b")
    lines = capsys.readouterr().out.splitlines()
    assert [line.split(" - ")[0] for line in lines] == ["[1/3] train a", "[2/3] train b"]
    assert all(line.endswith(" so far") for line in lines)
    assert list(stages.bar(range(4), "evaluate")) == [0, 1, 2, 3]
    assert repr(stages) == "Stages(2/3)"


def test_progressive_points_sizes_the_progressive_sampler(tmp_path):
    profile = replace(REGISTRATION["smoke"], num_points=24, train_sizes=(), sampler_epochs=1)
    profile = replace(profile, control_sizes=(4, 8), progressive_points=8)
    generator = torch.Generator().manual_seed(0)
    loader = DataLoader([Data(pos=torch.rand(24, 3, generator=generator)) for _ in range(4)], 2)
    stages = Stages(num_sampler_stages(profile), bars=False)
    fixed, progressive = train_samplers(
        profile, lambda out, data: out.pos.pow(2).mean(), loader, tmp_path, "cpu", False,
        stages=stages,
    )  # fmt: skip
    assert fixed == {} and stages.count == stages.total == 1
    assert progressive.progressive and progressive.num_out_points == 8
    pos, batch = random_clouds([24, 24], seed=1)
    with torch.no_grad():
        assert progressive(pos, batch).index.numel() == 16  # 8 of each cloud
