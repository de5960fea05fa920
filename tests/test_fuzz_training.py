r"""Property-based fuzz of what a user meets past the first call: every sampling module in eval
mode with and without :func:`torch.no_grad` on clouds on both sides of every size threshold,
farthest point sampling on its chunked path, :func:`fit_sampler`'s arguments, loaders and
losses, save/load round trips of every dtype and device, and training steps on degenerate
clouds. Each call returns a correct result, raises an InputError that names the bad
argument, or (training on a non-finite loss or gradient) stops with a FloatingPointError
that says where."""

import math

import numpy as np
import pytest
import torch
from fuzz_support import outcome, promise, squared_distances, write_counts
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from torch_geometric.data import Data
from torch_geometric.loader import DataLoader

from tg_samplenet import (
    SampleNet,
    SampleNetFPS,
    SampleNetSampling,
    SampleNetSelect,
    fit_sampler,
    progressive_loss,
    samplenet_loss,
)
from tg_samplenet.ops import fps

pytestmark = pytest.mark.filterwarnings("ignore::RuntimeWarning")

FUZZ = settings(
    max_examples=40,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
# Each threshold of the inference path, and one point on either side: the point MLP's
# chunks (2048), the kd-tree's Z-order (16384), chunked FPS and Z-ordered search (32768).
THRESHOLDS = [2048, 16384, 32768]
SIZES = sorted({t + d for t in THRESHOLDS for d in (-1, 0, 1)} | {5, 100})
SHAPES = ("uniform", "identical", "duplicates", "collinear", "grid")


@pytest.fixture(scope="module", autouse=True)
def counts():
    yield
    write_counts("training")


def _cloud(kind: str, n: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    if kind == "identical":
        return torch.rand(1, 3, generator=g).expand(n, 3).clone()
    if kind == "duplicates":
        base = torch.rand(max(1, n // 8), 3, generator=g)
        return base[torch.randint(0, base.size(0), (n,), generator=g)]
    if kind == "collinear":
        return torch.rand(n, 1, generator=g) * torch.rand(1, 3, generator=g)
    if kind == "grid":
        return torch.randint(-3, 4, (n, 3), generator=g).float()
    return torch.rand(n, 3, generator=g)


_SAMPLER = {}


def _trained_like_sampler(m: int) -> SampleNet:
    # One eval-mode sampler per size, with running statistics of real clouds.
    if m not in _SAMPLER:
        torch.manual_seed(m)
        sampler = SampleNet(m)
        with torch.no_grad():
            sampler(torch.rand(256, 3), torch.arange(4).repeat_interleave(64))
        _SAMPLER[m] = sampler.eval()
    return _SAMPLER[m]


@settings(FUZZ, max_examples=24)
@given(
    n=st.sampled_from(SIZES),
    kind=st.sampled_from(SHAPES),
    module=st.sampled_from(["SampleNet", "SampleNetFPS", "SampleNetSelect", "SampleNetSampling"]),
    ratio=st.sampled_from([None, 0.002, 0.01]),
    seed=st.integers(0, 2**16),
)
def test_eval_with_and_without_no_grad(n, kind, module, ratio, seed):
    sampler = _trained_like_sampler(32)
    pos = _cloud(kind, n, seed)
    if module == "SampleNetFPS" and ratio is None:  # fps's signature always has a ratio
        ratio = 0.002
    with torch.no_grad():
        want = sampler(pos, ratio=ratio).index
    if module == "SampleNet":
        out, error = promise(module, sampler, pos, ratio=ratio)
        got = out.index
        assert out.simplified.grad_fn is None and out.pos.grad_fn is None
    elif module == "SampleNetFPS":
        got, error = promise(module, SampleNetFPS(sampler), pos, ratio=ratio)
    elif module == "SampleNetSelect":
        out, error = promise(module, SampleNetSelect(sampler, ratio=ratio), pos)
        got = out.node_index
    else:
        transform = SampleNetSampling(sampler, ratio=ratio)
        data, error = promise(module, transform, Data(pos=pos.clone()))
        assert error is None, error
        assert torch.equal(data.pos, pos[want])
        got = want
    assert error is None, error
    assert got.requires_grad is False
    assert torch.equal(got, want)
    count = math.ceil(np.float32(n) * np.float32(ratio)) if ratio is not None else min(32, n)
    assert want.numel() == count and want.unique().numel() == count


@settings(FUZZ, max_examples=30)
@given(
    n=st.sampled_from([32767, 32768, 32769, 40000]),
    kind=st.sampled_from(SHAPES),
    num_clouds=st.sampled_from([1, 2]),
    random_start=st.booleans(),
    seed=st.integers(0, 2**16),
)
def test_fps_on_the_chunked_path_is_a_farthest_point_run(n, kind, num_clouds, random_start, seed):
    pos = torch.cat([_cloud(kind, n, seed + i) for i in range(num_clouds)])
    batch = torch.arange(num_clouds).repeat_interleave(n)
    index, error = promise("fps", fps, pos, batch, ratio=0.001, random_start=random_start)
    assert error is None, error
    per_cloud = math.ceil(np.float32(n) * np.float32(0.001))
    assert index.numel() == per_cloud * num_clouds
    for b in range(num_clouds):
        local = (index[batch[index] == b] - b * n).tolist()
        assert len(set(local)) == len(local), "repeated index"
        values = pos[b * n : (b + 1) * n].double().numpy()
        if not random_start:
            assert local[0] == 0
        # Each pick is at the largest distance from the points picked before it.
        d = squared_distances(values, values[local[:1]])[:, 0]
        for p in local[1:]:
            best = d.copy()
            best[local[: local.index(p)]] = -1
            assert d[p] >= best.max() * (1 - 1e-5) - 1e-12
            d = np.minimum(d, squared_distances(values, values[[p]])[:, 0])


def _loader(kind: str, seed: int):
    g = torch.Generator().manual_seed(seed)
    clouds = [Data(pos=torch.rand(24, 3, generator=g), y=torch.tensor([i % 2])) for i in range(6)]
    if kind == "pyg":
        return DataLoader(clouds, batch_size=3)
    if kind == "list_of_batches":
        return list(DataLoader(clouds, batch_size=2))
    if kind == "empty":
        return DataLoader([], batch_size=3)
    if kind == "tensors":
        return [torch.rand(3, 24, 3)]
    return [{"pos": torch.rand(24, 3)}]  # dicts


@settings(FUZZ, max_examples=60)
@given(
    epochs=st.sampled_from([1, 2, 0, -1, 1.5, True, "2", None]),
    lr=st.sampled_from([1e-3, 1e-2, 0.0, -1e-3, float("inf"), float("nan"), "1e-3"]),
    loader=st.sampled_from(["pyg", "pyg", "list_of_batches", "empty", "tensors", "dicts"]),
    loss=st.sampled_from(["finite", "finite", "nan_at", "inf_at", "nan_gradient"]),
    at=st.integers(1, 4),
    progressive=st.booleans(),
    seed=st.integers(0, 2**16),
)
def test_fit_sampler(epochs, lr, loader, loss, at, progressive, seed):
    torch.manual_seed(seed)
    sampler = SampleNet(24 if progressive else 4, progressive=progressive)
    calls = []

    def task_loss(out, data):
        calls.append(1)
        value = out.pos.pow(2).sum() / data.num_graphs
        if loss == "nan_gradient":
            return value + (out.pos - out.pos.detach()).pow(2).sum().sqrt()
        if loss in ("nan_at", "inf_at") and len(calls) == at:
            return value * (float("nan") if loss == "nan_at" else float("inf"))
        return value

    control = (8, 24) if progressive else None
    batches = _loader(loader, seed)
    args = dict(epochs=epochs, lr=lr, control_sizes=control, progress=False)
    try:
        history, error = promise("fit_sampler", fit_sampler, sampler, task_loss, batches, **args)
    except FloatingPointError as stop:
        outcome("fit_sampler", "FloatingPointError", counted=True)
        assert loss != "finite"
        assert "epoch" in str(stop) and "batch" in str(stop)
        assert ("loss" in str(stop)) or ("gradient of" in str(stop))
        assert all(torch.isfinite(p).all() for p in sampler.parameters())
        return
    valid_epochs = isinstance(epochs, int) and not isinstance(epochs, bool) and epochs >= 1
    valid_lr = isinstance(lr, float) and math.isfinite(lr) and lr > 0
    valid_loader = loader in ("pyg", "list_of_batches")
    if not (valid_epochs and valid_lr and valid_loader):
        assert error is not None
        return
    assert error is None, error
    # A progressive loss calls task_loss once per control size: a bad value there can come
    # after the run ends, in which case training was finite throughout.
    assert loss == "finite" or len(calls) < at
    assert len(history) == epochs and all(math.isfinite(h) for h in history)
    assert all(torch.isfinite(p).all() for p in sampler.parameters())
    assert not sampler.training


@settings(FUZZ, max_examples=30)
@given(
    dtype=st.sampled_from([torch.float32, torch.float64, torch.bfloat16, torch.float16]),
    map_location=st.sampled_from(["cpu", "meta", None, torch.device("cpu")]),
    learn=st.booleans(),
    progressive=st.booleans(),
    trained=st.booleans(),
)
def test_save_load_round_trip(tmp_path_factory, dtype, map_location, learn, progressive, trained):
    path = tmp_path_factory.mktemp("s") / "sampler.pt"
    torch.manual_seed(0)
    sampler = SampleNet(8, k=3, learn_temperature=learn, progressive=progressive)
    if trained:
        with torch.no_grad():
            sampler.projection.temperature.fill_(0.3)
            sampler(torch.rand(64, 3), torch.arange(2).repeat_interleave(32))
    sampler = sampler.to(dtype)
    sampler.save(path)
    kwargs = {} if map_location is None else {"map_location": map_location}
    loaded, error = promise("SampleNet.load", SampleNet.load, path, **kwargs)
    assert error is None, error
    assert loaded.config == sampler.config and not loaded.training
    want, got = sampler.state_dict(), loaded.state_dict()
    assert want.keys() == got.keys()
    for name in want:
        assert got[name].dtype == want[name].dtype, name
        if map_location == "meta":
            assert got[name].device.type == "meta"
        else:
            assert torch.equal(got[name], want[name]), name


@settings(FUZZ, max_examples=60)
@given(
    kind=st.sampled_from(SHAPES),
    scale=st.sampled_from([1e-20, 1e-3, 1.0, 1e8, 1e12]),
    k=st.sampled_from([1, 3, 7]),
    t0=st.sampled_from([0.0, 1e-3, 1.0]),
    min_sigma=st.sampled_from([1e-12, 1e-4]),
    progressive=st.booleans(),
    residual=st.booleans(),
    seed=st.integers(0, 2**16),
)
def test_training_step_on_degenerate_clouds(
    kind, scale, k, t0, min_sigma, progressive, residual, seed
):
    torch.manual_seed(seed)
    n = 27
    m = n if progressive else 6
    sampler = SampleNet(
        m,
        k=k,
        initial_temperature=t0,
        min_sigma=min_sigma,
        progressive=progressive,
        residual_gradient=residual,
    )
    pos = torch.cat([_cloud(kind, n, seed), _cloud(kind, n, seed + 1)]) * scale
    batch = torch.arange(2).repeat_interleave(n)
    out, error = promise("SampleNet.train", sampler, pos, batch)
    assert error is None, error

    def task(part):  # scale-free, so that its gradient is O(1) at every scale
        return part.pos.sum() / scale

    if progressive:
        loss = progressive_loss(task, out, pos, batch, control_sizes=(4, n))
    else:
        loss = samplenet_loss(task(out), out, pos, batch)
    loss.backward()
    for name, p in sampler.named_parameters():
        assert torch.isfinite(p.grad).all(), name
    if t0 == 0.0:  # 2t * dL/dsigma at t = 0
        assert float(sampler.projection.temperature.grad) == 0.0
