r"""PyG's own PointNet++ (``pyg_pointnet2_model``, written as PyG's example) on this library:
swapping its module's ``fps`` and ``radius`` for :mod:`tg_samplenet.ops`' is all it takes to
run it on a pip install of PyG 2.8 (no pyg-lib, no compiled extension), and
:func:`~tg_samplenet.training.upgrade_fps` swaps learned samplers into its layers."""

import importlib

import pytest
import torch
import torch.nn.functional as F
from torch_geometric.data import Data
from torch_geometric.loader import DataLoader

import tg_samplenet.ops
from tg_samplenet import SampleNet, SampleNetFPS
from tg_samplenet.training import upgrade_fps


@pytest.fixture
def pointnet2(monkeypatch):
    module = importlib.import_module("pyg_pointnet2_model")
    monkeypatch.setattr(module, "fps", tg_samplenet.ops.fps)
    monkeypatch.setattr(module, "radius", tg_samplenet.ops.radius)
    return module


def shapes(num_clouds=24, num_points=128, seed=0):
    # Two classes: points on a sphere, points in a flat box.
    g = torch.Generator().manual_seed(seed)
    clouds = []
    for i in range(num_clouds):
        pos = torch.randn(num_points, 3, generator=g)
        if i % 2:
            pos = pos * torch.tensor([1.0, 1.0, 0.05])
        pos = pos / pos.norm(dim=1).max()
        clouds.append(Data(pos=pos, y=torch.tensor([i % 2])))
    return clouds


def train(model, loader, steps):
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    model.train()
    for _, data in zip(range(steps), loader):
        loss = F.nll_loss(model(data), data.y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    # A few fast steps leave BatchNorm's running statistics behind the weights: average them
    # over one pass at the final weights.
    with torch.no_grad():
        for norm in model.modules():
            if isinstance(norm, torch.nn.modules.batchnorm._BatchNorm):
                norm.reset_running_stats()
                norm.momentum = None
        for data in loader:
            model(data)
    return float(loss.detach())


def accuracy(model, loader):
    model.eval()
    with torch.no_grad():
        right = sum(int((model(d).argmax(-1) == d.y).sum()) for d in loader)
    return right / len(loader.dataset)


def test_pygs_pointnet2_runs_and_learns_on_the_librarys_fps_and_radius(pointnet2):
    torch.manual_seed(0)
    model = pointnet2.Net(num_classes=2)
    loader = DataLoader(shapes(), batch_size=8, shuffle=True)
    first = F.nll_loss(model(next(iter(loader))), next(iter(loader)).y)
    for _ in range(6):
        last = train(model, loader, 3)
    assert last < float(first)
    assert accuracy(model, DataLoader(shapes(seed=1), batch_size=8)) > 0.9


def test_upgrade_swaps_learned_samplers_into_the_layers_and_trains_them(pointnet2, tmp_path):
    torch.manual_seed(0)
    model = pointnet2.Net(num_classes=2)
    loader = DataLoader(shapes(), batch_size=8, shuffle=True)
    for _ in range(6):
        train(model, loader, 3)
    model.sa1_module.ratio = 1 / 8  # 16 centres of 128
    sampler = SampleNet(8, k=4)  # 8 learned, 8 completed by farthest points
    before = {k: v.clone() for k, v in sampler.state_dict().items()}

    def task_loss(data):
        return F.nll_loss(model(data), data.y)

    result = upgrade_fps(
        model,
        {model.sa1_module: sampler},
        task_loss,
        loader,
        epochs=3,
        imitate_epochs=1,
        module=pointnet2,
        train_model=True,
        checkpoint=tmp_path / "upgrade.pt",
        progress=False,
    )
    fps = result[model.sa1_module]
    assert isinstance(fps, SampleNetFPS) and fps.sampler is sampler and not sampler.training
    assert not sampler.straight_through
    moved = [k for k, v in sampler.state_dict().items() if not torch.equal(v, before[k])]
    assert any("head" in k for k in moved) and any("point_mlp" in k for k in moved)
    # The module's fps now routes sa1's calls to the sampler and the others to fps.
    data = next(iter(DataLoader(shapes(seed=2), batch_size=8)))
    with torch.no_grad():
        model.eval()
        centres = sampler.sample(data.pos, data.batch, ratio=1 / 8)
        seen = {}

        def spy(layer, args, output):
            seen[layer] = output

        hook = model.sa1_module.register_forward_hook(spy)
        model(data)
        hook.remove()
    assert torch.equal(seen[model.sa1_module][1], data.pos[centres])
    assert seen[model.sa1_module][1].size(0) == 8 * 16


class Interrupted(Exception):
    pass


def test_an_interrupted_upgrade_resumes_to_the_same_weights(pointnet2, tmp_path):
    def run(checkpoint, stop_after=None):
        torch.manual_seed(0)
        model = pointnet2.Net(num_classes=2)
        sampler = SampleNet(8, k=4)
        loader = DataLoader(shapes(), batch_size=8, shuffle=True)
        calls = []

        def task_loss(data):
            if stop_after is not None and len(calls) == stop_after:
                raise Interrupted  # as a killed run stops
            calls.append(1)
            return F.nll_loss(model(data), data.y)

        try:
            upgrade_fps(
                model,
                {model.sa1_module: sampler},
                task_loss,
                loader,
                epochs=3,
                module=pointnet2,
                train_model=True,
                checkpoint=checkpoint,
                progress=False,
            )
        finally:
            pointnet2.fps = tg_samplenet.ops.fps  # each run starts from plain fps
        return sampler.state_dict(), model.state_dict()

    straight = run(tmp_path / "a.pt")
    with pytest.raises(Interrupted):
        run(tmp_path / "b.pt", stop_after=4)  # in the second epoch of three batches
    resumed = run(tmp_path / "b.pt")
    for want, got in zip(straight, resumed):
        for name in want:
            assert torch.equal(want[name], got[name]), name


def test_imitating_fps_brings_the_simplified_points_to_the_farthest_points(pointnet2):
    # Samplers trained only to imitate fps (every epoch but the last, which the test stops
    # before) cover the cloud: their points lie closer to the cloud's farthest points than an
    # untrained sampler's.
    from tg_samplenet import chamfer_distance
    from tg_samplenet.ops import farthest_point_sampling

    torch.manual_seed(0)
    model = pointnet2.Net(num_classes=2)
    loader = DataLoader(shapes(), batch_size=8, shuffle=True)
    sampler = SampleNet(16, k=4, head_norm=False)  # eval mode as training: no head BatchNorm
    data = next(iter(DataLoader(shapes(seed=3), batch_size=8)))
    counts = torch.full((8,), 16)

    def distance():
        sampler.eval()
        with torch.no_grad():
            q = sampler.simplify(data.pos, data.batch, 8).reshape(-1, 3)
            target = farthest_point_sampling(data.pos, data.batch, counts)
            q_batch = torch.arange(8).repeat_interleave(16)
            return float(chamfer_distance(q, data.pos[target], q_batch, data.batch[target]))

    before = distance()
    calls = []

    def task_loss(data):
        if len(calls) == 3 * 6:  # six epochs of imitation, then stop
            raise Interrupted
        calls.append(1)
        return F.nll_loss(model(data), data.y)

    with pytest.raises(Interrupted):
        upgrade_fps(
            model, {model.sa1_module: sampler}, task_loss, loader, epochs=7, imitate_epochs=6,
            lr=1e-2, module=pointnet2, progress=False,
        )  # fmt: skip
    pointnet2.fps = tg_samplenet.ops.fps
    assert distance() < 0.7 * before


def test_fine_tuning_after_imitation_starts_at_the_full_learning_rates(pointnet2):
    # Imitation leaves the model untouched; the model's first step after it is Adam's first
    # step, which moves every weight with a gradient by the learning rate in use (its update
    # is lr * g / (|g| + eps)): that rate must be the full model_lr, not a decayed one.
    torch.manual_seed(0)
    model = pointnet2.Net(num_classes=2)
    loader = DataLoader(shapes(num_clouds=8), batch_size=8)  # one step per epoch
    before = {name: p.detach().clone() for name, p in model.named_parameters()}
    seen = []

    def task_loss(data):
        seen.append({name: p.detach().clone() for name, p in model.named_parameters()})
        return F.nll_loss(model(data), data.y)

    upgrade_fps(
        model, {model.sa1_module: SampleNet(8, k=4)}, task_loss, loader, epochs=3,
        imitate_epochs=1, module=pointnet2, train_model=True, model_lr=1e-3, progress=False,
    )  # fmt: skip
    pointnet2.fps = tg_samplenet.ops.fps
    # Unchanged by the imitation step, then moved by 1e-3 at most in the first step after it.
    assert all(torch.equal(before[name], seen[1][name]) for name in before)
    step = max(float((seen[2][n] - seen[1][n]).abs().max()) for n in before)
    assert step == pytest.approx(1e-3, rel=1e-3)


def test_imitation_runs_the_model_only_until_every_given_layer_has_sampled(pointnet2):
    # Imitation's loss needs nothing but the sampled layers' inputs: in its epochs neither a
    # given layer nor any later one runs (the loss is still what the samplers learn from),
    # and after them every layer runs once per batch.
    torch.manual_seed(0)
    model = pointnet2.Net(num_classes=2)
    loader = DataLoader(shapes(num_clouds=16), batch_size=8)  # two steps per epoch
    runs = {"sa1": [], "sa2": [], "sa3": []}
    for name, calls in runs.items():
        getattr(model, f"{name}_module").register_forward_hook(lambda *_, c=calls: c.append(1))
    sampler = SampleNet(8, k=4)
    before = [p.detach().clone() for p in sampler.parameters()]
    upgrade_fps(
        model, {model.sa1_module: sampler, model.sa2_module: SampleNet(4, k=4)},
        lambda data: F.nll_loss(model(data), data.y), loader, epochs=3, imitate_epochs=2,
        module=pointnet2, progress=False,
    )  # fmt: skip
    pointnet2.fps = tg_samplenet.ops.fps
    # sa2's sampler needs sa1's output: sa1 runs in imitation, sa2 and sa3 do not.
    assert (len(runs["sa1"]), len(runs["sa2"]), len(runs["sa3"])) == (6, 2, 2)
    assert any(not torch.equal(a, b) for a, b in zip(before, sampler.parameters()))
