r""":func:`tg_samplenet.fit_sampler` against a tiny frozen task network: the loss falls and the
learned samples serve the task better than random ones, an interrupted run resumes to the
very weights of an uninterrupted one, and the progressive, S-NET and scheduled-temperature
modes do what they say."""

from __future__ import annotations

import pytest
import torch
from torch_geometric.data import Data
from torch_geometric.loader import DataLoader

from reproduction.baselines import random_sample
from tg_samplenet import LossWeights, SampleNet, TemperatureSchedule, fit_sampler, freeze
from tg_samplenet.training.loop import seed_everything

SMALL = dict(point_channels=(16, 32), head_channels=(32,))
# A light simplification loss, so that a few steps move the samples towards the task.
WEIGHTS = LossWeights(alpha=0.1, lmbda=0.01, gamma=1.0, delta=0.0)
NUM_POINTS = 32


def clouds(num_clouds: int = 24, seed: int = 0) -> list[Data]:
    generator = torch.Generator().manual_seed(seed)
    return [
        Data(pos=torch.rand(NUM_POINTS, 3, generator=generator) * 2 - 1, y=torch.tensor([0]))
        for _ in range(num_clouds)
    ]


def frozen_task() -> torch.nn.Module:
    r"""A "task network" that scores points by their height: its loss is lowest for samples
    of the points with the smallest z."""
    model = torch.nn.Linear(3, 1)
    with torch.no_grad():
        model.weight.copy_(torch.tensor([[0.0, 0.0, 1.0]]))
        model.bias.zero_()
    return freeze(model)


def run(tmp_path=None, m: int = 4, epochs: int = 6, stop_after=None, seed=0, **kwargs):
    r"""Trains a small sampler from :obj:`seed`; :obj:`stop_after` task-loss calls, it raises
    :class:`Interrupted`, as a killed run stops."""
    seed_everything(seed)
    task = frozen_task()
    loader = DataLoader(clouds(), batch_size=6, shuffle=True)
    sampler = SampleNet(m, k=4, **SMALL, **kwargs.pop("sampler", {}))
    calls = []

    def task_loss(out, data):
        if stop_after is not None and len(calls) >= stop_after:
            raise Interrupted
        loss = task(out.pos).mean()
        calls.append((out, loss.item()))
        return loss

    checkpoint = tmp_path / "sampler.pt" if tmp_path is not None else None
    kwargs.setdefault("loss_weights", WEIGHTS)
    history = fit_sampler(
        sampler,
        task_loss,
        loader,
        epochs=epochs,
        lr=3e-2,
        checkpoint=checkpoint,
        progress=False,
        **kwargs,
    )
    return sampler, history, calls


class Interrupted(Exception):
    pass


def test_loss_falls_and_samples_serve_the_task_better_than_random():
    # The task prefers low points: over three seeds the learned samples sit clearly lower
    # than random ones (one seed's margin varies from 0.1 to 0.5).
    data = next(iter(DataLoader(clouds(seed=1), batch_size=24)))
    index = random_sample(data.pos, data.batch, 4, torch.Generator().manual_seed(0))
    random_height = float(data.pos[index][:, 2].mean())
    heights = []
    for seed in range(3):
        sampler, history, _ = run(epochs=8, seed=seed)
        assert len(history) == 8 and history[-1] < history[0]
        assert not sampler.training  # ready for inference
        heights.append(float(data.pos[sampler(data.pos, data.batch).index][:, 2].mean()))
    assert max(heights) < random_height and sum(heights) / 3 < random_height - 0.2


def test_interrupted_run_resumes_to_the_uninterrupted_weights(tmp_path):
    straight, history, _ = run(tmp_path / "a", epochs=4)
    steps_per_epoch = 4  # 24 clouds in batches of 6
    with pytest.raises(Interrupted):
        run(tmp_path / "b", epochs=4, stop_after=2 * steps_per_epoch + 1)
    resumed, resumed_history, calls = run(tmp_path / "b", epochs=4)
    assert len(calls) == 2 * steps_per_epoch  # only the two missing epochs ran
    assert resumed_history == history
    for (name, p), q in zip(straight.state_dict().items(), resumed.state_dict().values()):
        assert torch.equal(p, q), name


def test_trained_sampler_is_saved_with_its_configuration_once(tmp_path):
    sampler, _, _ = run(tmp_path, epochs=2)
    saved = tmp_path / "sampler.sampler.pt"
    loaded = SampleNet.load(saved)
    assert loaded.config == sampler.config
    for (name, p), q in zip(sampler.state_dict().items(), loaded.state_dict().values()):
        assert torch.equal(p, q), name
    written = saved.stat().st_mtime_ns
    _, _, calls = run(tmp_path, epochs=2)  # finished: nothing trains, nothing is rewritten
    assert calls == [] and saved.stat().st_mtime_ns == written


def test_progressive_mode_trains_every_control_size():
    control_sizes = (2, 4, 8)
    sampler, history, calls = run(
        m=NUM_POINTS, epochs=2, sampler={"progressive": True}, control_sizes=control_sizes
    )
    assert history[-1] < history[0]
    # Each step evaluates the task on the first c points of every cloud, c in C_s.
    sizes = [int(out.counts[0]) for out, _ in calls]
    assert sizes == list(control_sizes) * (len(calls) // len(control_sizes))
    assert all(out.pos.size(0) == 6 * int(out.counts[0]) for out, _ in calls)


def test_skip_projection_trains_on_the_simplified_points():
    sampler, history, calls = run(epochs=2, sampler={"skip_projection": True})
    assert all(out.sigma is None for out, _ in calls)
    assert all(torch.equal(out.pos, out.simplified) for out, _ in calls)
    assert history[-1] < history[0]


def test_scheduled_temperature_is_applied_and_drops_the_sigma_term():
    schedule = TemperatureSchedule("constant", start=0.05)
    weights = LossWeights(alpha=0.0, lmbda=1e6, gamma=1.0, delta=0.0)
    sampler, history, calls = run(
        epochs=2, sampler={"learn_temperature": False}, temperature=schedule, loss_weights=weights
    )
    assert float(sampler.projection.sigma) == pytest.approx(0.05, rel=1e-3)
    assert not sampler.projection.temperature.requires_grad
    # With alpha = 0 and the sigma term dropped (lambda = 1e6 would dominate otherwise), the
    # loss of each epoch is the mean task loss of its steps.
    task_losses = [value for _, value in calls]
    assert history == pytest.approx([sum(task_losses[:4]) / 4, sum(task_losses[4:]) / 4])


def test_bad_arguments_are_named():
    loader = DataLoader(clouds(4), batch_size=2)
    with pytest.raises(TypeError, match="sampler must be a SampleNet"):
        fit_sampler(torch.nn.Linear(3, 3), lambda out, data: 0, loader, epochs=1, lr=1e-3)
    with pytest.raises(TypeError, match="task_loss must be callable"):
        fit_sampler(SampleNet(4, **SMALL), None, loader, epochs=1, lr=1e-3)
    with pytest.raises(ValueError, match="reduction"):
        fit_sampler(
            SampleNet(4, **SMALL), lambda o, d: 0, loader, epochs=1, lr=1e-3, reduction="max"
        )
