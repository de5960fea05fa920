r"""PointNet++ with learned sampling (reproduction.tasks.pointnet2): the radius search and the
learned set abstraction against independent expectations; examples/pointnet2_samplenet.py
run as a user runs it (a subprocess), whose second run resumes from its checkpoints."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from dataclasses import asdict, replace
from pathlib import Path

import pytest
import torch

from reproduction.config import POINTNET2
from reproduction.pointnet2 import build_pointnet2
from reproduction.tasks.pointnet2 import joint_loss, radius

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "pointnet2_samplenet.py"


def test_radius_is_the_nearest_points_within_r(make_clouds):
    pos, batch = make_clouds([60, 1, 45], seed=0)
    centres = torch.tensor([0, 10, 60, 61, 100])
    row, col = radius(pos, pos[centres], 0.3, batch, batch[centres], max_neighbors=8)
    for query, point in enumerate(centres.tolist()):
        dist = (pos - pos[point]).pow(2).sum(-1)
        dist[batch != batch[point]] = float("inf")
        within = dist <= 0.09
        expected = set(torch.argsort(dist)[: min(8, int(within.sum()))].tolist())
        assert set(col[row == query].tolist()) == expected
        assert point in expected  # a centre is its own neighbour


def test_learned_layer_trains_on_hard_centres_with_soft_gradients(make_clouds):
    profile = POINTNET2["smoke"]
    pos, batch = make_clouds([64, 64], seed=1)
    torch.manual_seed(0)
    model = build_pointnet2(3, profile, learned=True)
    model.train()
    log_probs, samples = model(pos, batch)
    assert log_probs.shape == (2, 3) and len(samples) == 2
    (out1, pos1, _), (out2, pos2, _) = samples
    assert torch.equal(pos1, pos) and out1.pos.shape == (64, 3)  # ceil(64 * 0.5) per cloud
    assert out2.pos.shape == (2 * math.ceil(32 * 0.25), 3)
    assert out1.weights is not None and not torch.equal(out1.pos, pos[out1.index])
    data = _Batch(pos, batch, torch.tensor([0, 2]))
    loss = joint_loss(model, data, **asdict(profile.fixed_loss))
    loss.backward()
    first = model.sa1_module.sampler
    assert first.projection.temperature.grad is not None
    assert all(p.grad is not None for p in first.head.parameters())
    model.eval()
    _, samples = model(pos, batch)
    assert samples[0][0].weights is None  # eval: hard-sampled input points
    assert torch.equal(samples[0][0].pos, pos[samples[0][0].index])


def test_training_centres_are_the_hard_sample_with_the_projection_gradient(make_clouds):
    pos, batch = make_clouds([40, 30], seed=2)
    torch.manual_seed(0)
    layer = build_pointnet2(3, POINTNET2["smoke"], learned=True).sa1_module.train()
    centres, centres_batch, _, (out, _, _) = layer.centres(None, pos, batch)
    counts = [math.ceil(40 * 0.5), math.ceil(30 * 0.5)]
    assert centres_batch.tolist() == [0] * counts[0] + [1] * counts[1]
    # Brute force, per cloud: the nearest input points of the simplified points (first
    # occurrence kept, at most the cloud's count) open its centres, the rest are other,
    # distinct input points. The gradient is that of the soft projection of the simplified
    # point that found the centre, where that one was projected (the first `count`).
    grad = torch.randn_like(centres)
    expected_loss = torch.zeros(())
    for cloud, first in ((0, 0), (1, 40)):
        rows = (out.batch == cloud).nonzero().view(-1)
        mine = (centres_batch == cloud).nonzero().view(-1)
        dist = torch.cdist(out.simplified[out.simplified_batch == cloud], pos[batch == cloud])
        owners: dict[int, int] = {}
        for j, point in enumerate(dist.argmin(1).tolist()):
            owners.setdefault(first + point, j)
        matched = list(owners)[: counts[cloud]]
        got = [int(i) for i in (centres[mine].unsqueeze(1) == pos).all(-1).nonzero()[:, 1]]
        assert got[: len(matched)] == matched and len(set(got)) == counts[cloud]
        assert all(batch[i] == cloud for i in got)
        for c, point in zip(mine.tolist(), matched):
            if owners[point] < counts[cloud]:
                expected_loss = expected_loss + (out.pos[rows[owners[point]]] * grad[c]).sum()
    t = layer.sampler.projection.temperature
    (straight,) = torch.autograd.grad((centres * grad).sum(), t, retain_graph=True)
    (soft,) = torch.autograd.grad(expected_loss, t)
    torch.testing.assert_close(straight, soft)
    assert straight.abs() > 0


def test_soft_centres_without_straight_through(make_clouds):
    pos, batch = make_clouds([40], seed=3)
    torch.manual_seed(0)
    profile = replace(POINTNET2["smoke"], straight_through=False)
    layer = build_pointnet2(3, profile, learned=True).sa1_module.train()
    assert repr(layer) == "LearnedSAModule(ratio=0.5, r=0.2, straight_through=False)"
    centres, _, _, (out, _, _) = layer.centres(None, pos, batch)
    assert torch.equal(centres, out.pos)  # the soft projections themselves


class _Batch:
    def __init__(self, pos, batch, y):
        self.pos, self.batch, self.y = pos, batch, y


def run_example(out: Path) -> dict:
    command = [sys.executable, str(EXAMPLE), "--smoke", "--no-progress", "--out", str(out)]
    subprocess.run(command, check=True, capture_output=True, timeout=600)
    return json.loads((out / "results.json").read_text())


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("pointnet2")
    first = run_example(out)
    mtimes = {p.name: p.stat().st_mtime_ns for p in (out / "checkpoints").iterdir()}
    second = run_example(out)
    return out, first, second, mtimes


@pytest.mark.slow
def test_smoke_writes_every_output(smoke_run):
    out, data, _, _ = smoke_run
    n = POINTNET2["smoke"].num_points
    assert data["task"] == "pointnet2" and data["metric"] == "accuracy"
    results = data["results"]
    assert set(results) == {
        "pointnet2_fps",
        "pointnet2_samplenet",
        "dropin_fps",
        "dropin_samplenet",
        "input_fps",
        "input_progressive",
    }
    assert set(results["dropin_samplenet"]) == {
        str(math.ceil(n * r)) for r in (1 / 2, 1 / 8, 1 / 32)
    }
    assert set(results["input_progressive"]) == {"8", "2"}
    assert all(0.0 <= v <= 1.0 for row in results.values() for v in row.values())
    for name in ("pointnet2_fps", "pointnet2_samplenet"):
        assert data["timing"][name]["seconds_per_train_epoch"] > 0
        assert data["timing"][name]["ms_per_inference_batch"] > 0
        assert len(data["loss_history"][name]) == POINTNET2["smoke"].task_epochs
    assert data["command"].endswith("--smoke --no-progress --out " + str(out))
    markdown = (out / "results.md").read_text()
    assert "| pointnet2_samplenet |" in markdown and "SampleNetFPS" in markdown
    assert (out / "accuracy.png").stat().st_size > 0
    assert (out / "checkpoints" / "samplenet_progressive.sampler.pt").exists()


@pytest.mark.slow
def test_second_run_resumes_instead_of_training(smoke_run):
    out, first, second, mtimes = smoke_run
    assert {p.name: p.stat().st_mtime_ns for p in (out / "checkpoints").iterdir()} == mtimes
    assert second["results"] == first["results"]
    assert second["loss_history"] == first["loss_history"]
