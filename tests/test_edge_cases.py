r"""Inputs that once hung, answered silently with a wrong result, or failed without saying what
was wrong: one test per finding, each against an independent expectation (a brute-force
reference, a closed form or a property)."""

import math
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch
from torch_geometric.data import Data

from tg_samplenet import (
    FPSPerLayer,
    SampleNet,
    SampleNetFPS,
    SampleNetSampling,
    SampleNetSelect,
    fit_sampler,
    samplenet_loss,
)
from tg_samplenet.datasets import normalize_unit_sphere
from tg_samplenet.nn import weighted_gather
from tg_samplenet.ops import InputError, available_backends, distinct_sample, fps, use_backend

# Clouds on both sides of every size threshold of the inference path: the point MLP's
# chunks (2048 points), the kd-tree's Z-order (16384) and the chunked farthest point
# sampling and Z-ordered neighbour search (32768).
SIZES = [100, 2049, 16385, 40000]


def _eval_sampler(m=16, seed=0):
    torch.manual_seed(seed)
    return SampleNet(m).eval()


@pytest.mark.parametrize("n", SIZES)
def test_eval_without_no_grad_equals_eval_under_no_grad(n):
    sampler = _eval_sampler()
    pos = torch.rand(n, 3, generator=torch.Generator().manual_seed(n))
    out = sampler(pos)  # no torch.no_grad(): what a new user writes
    with torch.no_grad():
        expected = sampler(pos)
    assert torch.equal(out.index, expected.index)
    assert torch.equal(out.pos, pos[expected.index])
    # The network's output only picks indices: no autograd history is recorded for it.
    assert out.simplified.grad_fn is None and not out.simplified.requires_grad
    assert out.pos.grad_fn is None


def test_eval_keeps_the_gradient_to_the_input_points():
    sampler = _eval_sampler()
    pos = torch.rand(3000, 3, requires_grad=True)
    out = sampler(pos)
    out.pos.sum().backward()  # pos[index]: each selected point gets gradient 1
    expected = torch.zeros(3000)
    expected[out.index] = 1.0
    assert torch.equal(pos.grad[:, 0], expected)


@pytest.mark.parametrize("n", [100, 40000])
def test_every_sampling_module_works_in_eval_without_no_grad(n):
    sampler = _eval_sampler(m=64)
    pos = torch.rand(n, 3, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        expected = sampler(pos, ratio=0.01).index
    assert torch.equal(SampleNetFPS(sampler)(pos, ratio=0.01), expected)
    assert torch.equal(SampleNetSelect(sampler, ratio=0.01)(pos).node_index, expected)
    data = SampleNetSampling(sampler, ratio=0.01)(Data(pos=pos.clone()))
    assert torch.equal(data.pos, pos[expected])

    class Layer(torch.nn.Module):  # a layer that calls a module-level fps
        def forward(self, pos):
            return route(pos, ratio=0.01)

    layer = Layer()
    route = FPSPerLayer({layer: SampleNetFPS(sampler)})
    assert torch.equal(layer(pos), expected)
    route.remove()


@pytest.mark.parametrize("random_start", [False, True])
def test_fps_gives_unique_indices_on_identical_points_past_the_chunked_threshold(random_start):
    pos = torch.zeros(40000, 3)
    for backend in [b for b in available_backends() if b != "pyg_lib"]:
        with use_backend(backend):
            index = fps(pos, ratio=0.002, random_start=random_start)
        assert index.numel() == math.ceil(np.float32(40000) * np.float32(0.002))
        assert index.unique().numel() == index.numel(), backend


def test_fps_start_point_is_first_on_a_large_cloud():
    # The first index of each cloud is its start point (the first point without
    # random_start), also on clouds large enough for the chunked steps.
    pos = torch.rand(40000, 3, generator=torch.Generator().manual_seed(0))
    pos[0] = 0.5  # in the middle: never a farthest point
    index = fps(pos, ratio=0.001, random_start=False)
    assert int(index[0]) == 0 and int((index == 0).sum()) == 1


def test_distinct_sample_at_huge_coordinates_returns_what_it_returns_at_unit_scale():
    # Run in a subprocess with a time limit: a hang fails the test instead of the suite.
    code = """
        import torch
        from tg_samplenet.ops import distinct_sample
        g = torch.Generator().manual_seed(0)
        pos, q = torch.rand(200, 3, generator=g), torch.rand(20, 3, generator=g)
        zeros = torch.zeros(200, dtype=torch.long)
        counts = torch.tensor([20])
        unit = distinct_sample(pos, zeros, q, zeros[:20], counts)
        scale = 2.0 ** 70  # about 1e21: squared distances overflow float32
        huge = distinct_sample(pos * scale, zeros, q * scale, zeros[:20], counts)
        print(torch.equal(unit, huge), unit.unique().numel())
    """
    done = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split() == ["True", "20"]


def test_distinct_sample_is_invariant_to_power_of_two_scaling():
    g = torch.Generator().manual_seed(3)
    pos, q = torch.rand(64, 3, generator=g), torch.rand(10, 3, generator=g)
    zeros = torch.zeros(64, dtype=torch.long)
    counts = torch.tensor([10])
    unit = distinct_sample(pos, zeros, q, zeros[:10], counts)
    for scale in (2.0**-40, 2.0**40):
        assert torch.equal(distinct_sample(pos * scale, zeros, q * scale, zeros[:10], counts), unit)


# fit_sampler: arguments are checked before any training, and training stops at the first
# non-finite loss or gradient with an error that says where.


def _loader(num_batches=3, seed=0):
    from torch_geometric.loader import DataLoader

    g = torch.Generator().manual_seed(seed)
    clouds = [Data(pos=torch.rand(32, 3, generator=g), y=torch.tensor([i % 2])) for i in range(8)]
    return DataLoader(clouds[: 2 * num_batches], batch_size=2)


def _task_loss(out, data):
    return out.pos.pow(2).sum() / data.num_graphs


@pytest.mark.parametrize(
    "kwargs, argument",
    [
        (dict(epochs=-1), "epochs"),
        (dict(epochs=0), "epochs"),
        (dict(epochs=1.5), "epochs"),
        (dict(epochs=True), "epochs"),
        (dict(lr=0.0), "lr"),
        (dict(lr=-1e-3), "lr"),
        (dict(lr=float("inf")), "lr"),
        (dict(lr=float("nan")), "lr"),
        (dict(lr="1e-3"), "lr"),
    ],
)
def test_fit_sampler_checks_its_arguments_before_training(kwargs, argument):
    sampler = SampleNet(4)
    before = {name: p.clone() for name, p in sampler.state_dict().items()}
    args = dict(epochs=1, lr=1e-3, progress=False) | kwargs
    with pytest.raises(InputError) as error:
        fit_sampler(sampler, _task_loss, _loader(), **args)
    assert error.value.argument == argument and argument in str(error.value)
    after = sampler.state_dict()
    assert all(torch.equal(before[name], after[name]) for name in before)  # nothing trained


def test_fit_sampler_rejects_an_empty_loader():
    with pytest.raises(InputError, match="loader") as error:
        fit_sampler(SampleNet(4), _task_loss, [], epochs=1, lr=1e-3, progress=False)
    assert error.value.argument == "loader"


def test_fit_sampler_rejects_batches_without_points():
    loader = [torch.rand(4, 32, 3)]  # plain tensors, not PyG batches
    with pytest.raises(InputError, match="loader") as error:
        fit_sampler(SampleNet(4), _task_loss, loader, epochs=1, lr=1e-3, progress=False)
    assert error.value.argument == "loader"


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_fit_sampler_stops_at_a_non_finite_task_loss_on_the_last_batch(bad):
    sampler = SampleNet(4)
    calls = []

    def task_loss(out, data):
        calls.append(1)
        loss = _task_loss(out, data)
        return loss * bad if len(calls) == 3 else loss  # the third and last batch

    with pytest.raises(FloatingPointError) as error:
        fit_sampler(sampler, task_loss, _loader(3), epochs=2, lr=1e-3, progress=False)
    message = str(error.value)
    assert "loss" in message and "epoch 1" in message and "batch 3" in message
    assert all(torch.isfinite(p).all() for p in sampler.parameters())  # no step taken


def test_fit_sampler_names_the_parameter_with_a_non_finite_gradient():
    sampler = SampleNet(4)

    def task_loss(out, data):  # finite value 0, NaN gradient: sqrt's derivative at 0
        return (out.pos - out.pos.detach()).pow(2).sum().sqrt()

    with pytest.raises(FloatingPointError) as error:
        fit_sampler(sampler, task_loss, _loader(2), epochs=1, lr=1e-3, progress=False)
    message = str(error.value)
    names = [name for name, _ in sampler.named_parameters()]
    assert "gradient" in message and any(name in message for name in names)
    assert "epoch 1" in message and "batch 1" in message
    assert all(torch.isfinite(p).all() for p in sampler.parameters())


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_save_and_load_keep_the_dtype(tmp_path, dtype):
    sampler = SampleNet(8).to(dtype)
    sampler.save(tmp_path / "s.pt")
    loaded = SampleNet.load(tmp_path / "s.pt")
    assert all(p.dtype == dtype for p in loaded.parameters())
    for (name, a), (_, b) in zip(sampler.state_dict().items(), loaded.state_dict().items()):
        assert a.dtype == b.dtype and torch.equal(a, b), name


def test_load_onto_the_meta_device(tmp_path):
    SampleNet(8, k=5).save(tmp_path / "s.pt")
    loaded = SampleNet.load(tmp_path / "s.pt", map_location="meta")
    assert all(p.device.type == "meta" for p in loaded.parameters())
    assert loaded.num_out_points == 8 and loaded.k == 5


DEGENERATE = {
    "grid": torch.stack(torch.meshgrid(*[torch.arange(4.0)] * 3, indexing="ij"), -1).view(-1, 3),
    "identical": torch.ones(64, 3),
    "line": torch.arange(64.0).unsqueeze(1) * torch.tensor([[1.0, 0.0, 0.0]]),
}


@pytest.mark.parametrize("kind", sorted(DEGENERATE))
@pytest.mark.parametrize("scale", [1.0, 1e8, 1e12])
def test_training_on_degenerate_clouds_at_tiny_sigma_gives_finite_gradients(kind, scale):
    # sigma = t^2 + min_sigma = 1e-12 at t = 0: ties among neighbours made the temperature's
    # gradient 0 * inf.
    torch.manual_seed(0)
    sampler = SampleNet(8, k=3, initial_temperature=0.0, min_sigma=1e-12)
    pos = torch.cat([DEGENERATE[kind]] * 2) * scale
    batch = torch.arange(2).repeat_interleave(pos.size(0) // 2)
    out = sampler(pos, batch)
    samplenet_loss(out.pos.sum() / scale, out, pos, batch).backward()
    for name, p in sampler.named_parameters():
        assert torch.isfinite(p.grad).all(), name
    # At t = 0 the temperature's gradient 2t * dL/dsigma is exactly 0.
    assert float(sampler.projection.temperature.grad) == 0.0


@pytest.mark.parametrize("scale", [1e-30, 1e-20, 1.0, 1e20, 1e30])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_normalize_unit_sphere_at_any_scale(scale, dtype):
    cloud = torch.rand(100, 3, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    out = normalize_unit_sphere((cloud * scale).to(dtype))
    expected = normalize_unit_sphere(cloud)  # float64 at unit scale
    assert out.dtype == dtype
    assert torch.allclose(out.double(), expected, atol=1e-5)
    assert abs(float(out.double().norm(dim=-1).max()) - 1.0) < 1e-6


def test_hdf5_clouds_at_tiny_scale_are_scaled_into_the_unit_sphere(tmp_path):
    h5py = pytest.importorskip("h5py")
    from tg_samplenet.datasets import HDF5PointClouds

    cloud = np.random.default_rng(0).uniform(-1, 1, (2, 64, 3)) * 1e-30
    (tmp_path / "shape_names.txt").write_text("a\nb\n")
    (tmp_path / "train_files.txt").write_text("ply_data_train0.h5\n")
    with h5py.File(tmp_path / "ply_data_train0.h5", "w") as f:
        f["data"] = cloud.astype(np.float32)
        f["label"] = np.array([[0], [1]], dtype=np.uint8)
    ds = HDF5PointClouds(str(tmp_path), split="train", num_points=64)
    for data in ds:
        assert abs(float(data.pos.double().norm(dim=-1).max()) - 1.0) < 1e-5


def test_a_mesh_of_zero_area_is_named(tmp_path):
    from tg_samplenet.datasets import ModelNetPointClouds

    flat = "OFF\n3 1 0\n0 0 0\n1 0 0\n2 0 0\n3 0 1 2\n"  # collinear: zero area
    tetra = "OFF\n4 4 0\n0 0 0\n1 0 0\n0 1 0\n0 0 1\n3 0 2 1\n3 0 1 3\n3 0 3 2\n3 1 2 3\n"
    names = ["bathtub", "bed", "chair", "desk", "dresser"]
    names += ["monitor", "night_stand", "sofa", "table", "toilet"]
    for category in names:
        for split in ("train", "test"):
            folder = tmp_path / "raw" / category / split
            folder.mkdir(parents=True)
            (folder / f"{category}_0001.off").write_text(tetra)
    bad = tmp_path / "raw" / "chair" / "train" / "chair_0002.off"
    bad.write_text(flat)
    with pytest.raises(InputError, match="chair_0002.off") as error:
        ModelNetPointClouds(str(tmp_path), "10", "train", num_points=32)
    assert "area" in str(error.value)


@pytest.mark.parametrize("index", [[7], [-9], [0, 5]])
def test_weighted_gather_names_an_index_out_of_range(index):
    with pytest.raises(InputError, match="index") as error:
        weighted_gather(torch.randn(5, 2), torch.tensor(index))
    assert error.value.argument == "index"


def test_weighted_gather_names_a_neighbour_table_out_of_range():
    index, weight = torch.tensor([[0, 5]]), torch.tensor([[0.5, 0.5]])
    with pytest.raises(InputError, match="index"):
        weighted_gather(torch.randn(5, 2), index, weight)


def test_sampler_fps_blames_the_batch_vector_before_the_device():
    fps_module = SampleNetFPS(SampleNet(8))
    pos = torch.randn(10, 3, device="meta")
    batch = torch.zeros(7, dtype=torch.long, device="meta")
    with pytest.raises(InputError) as error:
        fps_module(pos, batch)
    assert error.value.argument == "batch"
