import importlib.util
import json
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def load_example(name: str):
    path = ROOT / "examples" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(f"example_{name}", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("classification")
    example = load_example("classification")
    data = example.main(["--smoke", "--out", str(out), "--no-progress"])
    return example, out, data


def test_smoke_writes_every_output(smoke_run):
    example, out, data = smoke_run
    on_disk = json.loads((out / "results.json").read_text())
    assert on_disk == json.loads(json.dumps(data))
    assert on_disk["task"] == "classification"
    assert on_disk["metric"] == "accuracy"
    assert on_disk["higher_is_better"] is True
    assert 0.0 <= on_disk["complete"] <= 1.0
    sizes = {str(m) for m in example.PROFILES["smoke"].sizes}
    for sampler in ("fps", "random", "voxel", "samplenet_progressive"):
        assert set(on_disk["results"][sampler]) == sizes
    trained = {str(m) for m in example.PROFILES["smoke"].train_sizes}
    for sampler in ("samplenet", "snet"):
        assert set(on_disk["results"][sampler]) == trained
    for row in on_disk["results"].values():
        assert all(0.0 <= v <= 1.0 for v in row.values())

    table = (out / "results.md").read_text()
    assert "| samplenet |" in table and "| fps |" in table
    for name in ("accuracy.png", "samples.png"):
        assert (out / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    ckpt = out / "checkpoints"
    for name in ("pointnet.pt", "pointnet_vanilla.pt", "samplenet_progressive.pt"):
        assert (ckpt / name).stat().st_size > 0
    assert (ckpt / "samplenet_progressive.sampler.pt").stat().st_size > 0


def test_rerun_resumes_from_checkpoints(smoke_run):
    example, out, data = smoke_run
    mtime = (out / "checkpoints" / "pointnet.pt").stat().st_mtime_ns
    again = example.main(["--smoke", "--out", str(out), "--no-progress"])
    # Every stage was complete: nothing is retrained and the evaluation repeats exactly.
    assert (out / "checkpoints" / "pointnet.pt").stat().st_mtime_ns == mtime
    assert again["results"] == data["results"]
    assert again["complete"] == data["complete"]


@pytest.mark.parametrize("decay", ["cosine", "staircase"])
def test_learning_rate_schedules_follow_their_closed_forms(decay):
    import dataclasses
    import math

    import torch

    example = load_example("classification")
    profile = example.PROFILES["smoke"]
    profile = dataclasses.replace(profile, extra={**profile.extra, "lr_decay": decay})
    loader = torch.utils.data.DataLoader(range(40), batch_size=4)  # 10 steps per epoch
    optimizer = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=0.5)
    scheduler = example.decaying_lr(optimizer, profile, loader, 3, decay_samples=12)
    rates = []
    for _ in range(30):
        rates.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    if decay == "cosine":
        expected = [0.25 * (1 + math.cos(math.pi * s / 30)) for s in range(30)]
    else:  # x0.7 after every 12 samples = 3 steps of 4 clouds, never below 1e-5
        expected = [max(0.5 * 0.7 ** (s * 4 // 12), 1e-5) for s in range(30)]
    assert rates == pytest.approx(expected)


@pytest.mark.slow
def test_hdf5_data_set_trains_and_evaluates_with_flags_only(tmp_path, write_hdf5_dataset):
    classes = ["airplane", "bed", "car"]
    write_hdf5_dataset(tmp_path, classes, {"train": 12, "test": 6}, 200)
    example = load_example("classification")
    out = tmp_path / "out"
    argv = ["--smoke", "--no-progress", "--dataset", "h5", "--data-root", str(tmp_path)]
    data = example.main([*argv, "--out", str(out)])
    on_disk = json.loads((out / "results.json").read_text())
    assert on_disk["dataset"] == "h5" and on_disk == json.loads(json.dumps(data))
    # Six test clouds: every accuracy is a multiple of 1/6.
    for row in on_disk["results"].values():
        assert all(abs(6 * v - round(6 * v)) < 1e-9 for v in row.values())
    assert set(on_disk["results"]["samplenet"]) == {
        str(m) for m in example.PROFILES["smoke"].train_sizes
    }
