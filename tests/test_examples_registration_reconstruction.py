r"""examples/registration.py and examples/reconstruction.py run as a user runs them
(subprocesses on the smoke profile): the outputs of their contract, a second run that
resumes from the checkpoints with the same results, and the real loaders (the paper's HDF5
layout, ShapeNet PLY folders) written small into tmp_path."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from reproduction.config import RECONSTRUCTION, REGISTRATION

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
PROFILES = {"registration": REGISTRATION["smoke"], "reconstruction": RECONSTRUCTION["smoke"]}


def run_example(task: str, out: Path, *flags: str) -> dict:
    command = [sys.executable, str(EXAMPLES / f"{task}.py"), "--smoke", "--no-progress"]
    subprocess.run([*command, "--out", str(out), *flags], check=True, capture_output=True)
    return json.loads((out / "results.json").read_text())


def run_twice(task: str, out: Path, extra: list[str]) -> tuple[dict, dict, dict]:
    first = run_example(task, out, *extra)
    checkpoints = {p.name: p.stat().st_mtime_ns for p in (out / "checkpoints").iterdir()}
    second = run_example(task, out, *extra)
    after = {p.name: p.stat().st_mtime_ns for p in (out / "checkpoints").iterdir()}
    assert after == checkpoints, "the second run retrained instead of resuming"
    return first, second, checkpoints


@pytest.fixture(scope="module")
def registration_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("registration")
    return out, *run_twice("registration", out, [])


@pytest.fixture(scope="module")
def reconstruction_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("reconstruction")
    return out, *run_twice("reconstruction", out, ["--categories", "chair", "airplane"])


def check_common(
    out: Path, data: dict, checkpoints, task: str, metric: str, plot: str, task_network: str
) -> dict:
    saved = json.loads((out / "results.json").read_text())
    assert saved == data
    assert saved["command"].startswith(f"python examples/{task}.py --smoke")
    assert saved["task"] == task and saved["metric"] == metric
    assert saved["higher_is_better"] is False
    assert isinstance(saved["complete"], float) and math.isfinite(saved["complete"])
    profile = PROFILES[task]
    sizes = {str(m) for m in profile.sizes}
    for name in ("fps", "random"):
        assert set(saved["results"][name]) == sizes
    trained = {str(m) for m in profile.train_sizes}
    assert set(saved["results"]["samplenet"]) == set(saved["results"]["snet"]) == trained
    assert set(saved["results"]["samplenet_progressive"]) == sizes
    m = profile.train_sizes[0]
    assert {
        f"{task_network}.pt",
        f"samplenet_{m}.pt",
        f"snet_{m}.pt",
        "samplenet_progressive.pt",
        f"samplenet_{m}.sampler.pt",
        "samplenet_progressive.sampler.pt",
    } <= set(checkpoints)
    for row in saved["results"].values():
        assert all(isinstance(v, float) and math.isfinite(v) and v >= 0 for v in row.values())
    table = (out / "results.md").read_text()
    assert metric in table and "| fps |" in table and "| samplenet |" in table
    for name in (plot, "samples.png"):
        png = (out / name).read_bytes()
        assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 1000
    return saved


@pytest.mark.slow
def test_registration_example_outputs(registration_run):
    out, first, second, checkpoints = registration_run
    saved = check_common(
        out, second, checkpoints, "registration", "mre_deg", "rotation_error.png", "pcrnet"
    )
    assert 0 <= saved["complete"] <= 180
    for row in saved["results"].values():
        assert all(v <= 180 for v in row.values())
    assert set(saved["consistency"]) == set(saved["results"])
    for name, row in saved["consistency"].items():
        assert set(row) == set(saved["results"][name])
        assert all(isinstance(v, float) and v >= 0 for v in row.values())
    assert saved["category"] == "car"
    assert saved["num_test_pairs"] == 4 * 2 and saved["num_train_pairs"] == 6 * 3


@pytest.mark.slow
def test_registration_example_resumes_with_the_same_results(registration_run):
    _, first, second, _ = registration_run
    assert second["results"] == first["results"]
    assert second["consistency"] == first["consistency"]
    assert second["complete"] == first["complete"]


@pytest.mark.slow
def test_reconstruction_example_outputs(reconstruction_run):
    out, first, second, checkpoints = reconstruction_run
    saved = check_common(
        out, second, checkpoints, "reconstruction", "nre", "nre.png", "autoencoder"
    )
    assert saved["complete"] == 1.0 and saved["complete_cd"] > 0
    assert saved["categories"] == ["chair", "airplane"]
    assert set(saved["per_class"]) == set(saved["results"])
    for name, row in saved["per_class"].items():
        assert set(row) == set(saved["results"][name])
        for m, by_class in row.items():
            assert set(by_class) == {"chair", "airplane"}
            # Equal numbers of test clouds per class: the overall NRE is the class mean.
            assert np.mean(list(by_class.values())) == pytest.approx(saved["results"][name][m])


@pytest.mark.slow
def test_reconstruction_example_resumes_with_the_same_results(reconstruction_run):
    _, first, second, _ = reconstruction_run
    assert second["results"] == first["results"]
    assert second["per_class"] == first["per_class"]


# The real loaders: the paper's HDF5 layout for registration, ShapeNet PLY folders for
# reconstruction, written small into tmp_path ----------------------------------------------


@pytest.mark.slow
def test_registration_example_on_hdf5_files(tmp_path, write_hdf5_dataset):
    write_hdf5_dataset(tmp_path, ["airplane", "car"], {"train": 8, "test": 6}, 160)
    data = run_example(
        "registration", tmp_path / "out", "--dataset", "h5", "--data-root", str(tmp_path)
    )
    # 4 training and 3 test clouds of class "car", rotated 3 and 2 times.
    assert data["dataset"] == "h5" and data["category"] == "car"
    assert data["num_train_pairs"] == 4 * 3 and data["num_test_pairs"] == 3 * 2
    assert set(data["results"]["samplenet"]) == {"16"}


@pytest.mark.slow
def test_reconstruction_example_on_shapenet_ply_folders(tmp_path):
    import plyfile

    generator = np.random.default_rng(0)
    for synset in ("03001627", "02691156"):  # chair, airplane
        (tmp_path / synset).mkdir()
        for model in range(10):
            points = generator.uniform(-1, 1, (160, 3)).astype(np.float32)
            vertex = np.array([tuple(p) for p in points], [("x", "f4"), ("y", "f4"), ("z", "f4")])
            element = plyfile.PlyElement.describe(vertex, "vertex")
            plyfile.PlyData([element]).write(str(tmp_path / synset / f"model{model}.ply"))
    data = run_example(
        "reconstruction",
        tmp_path / "out",
        *("--dataset", "shapenet", "--data-root", str(tmp_path)),
        *("--categories", "chair", "airplane"),
    )
    assert data["dataset"] == "shapenet" and data["categories"] == ["chair", "airplane"]
    assert set(data["per_class"]["fps"]["16"]) == {"chair", "airplane"}
    assert all(math.isfinite(v) for row in data["results"].values() for v in row.values())
