r"""examples/classification.py run as a user runs it (a subprocess on the smoke profile): every
output of its contract, the numbered stage lines it prints, and a second run that resumes
from the checkpoints instead of training again."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Optional

import pytest

from reproduction.config import CLASSIFICATION

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "classification.py"
SMOKE = CLASSIFICATION["smoke"]


def run_classification(out: Path, *flags: str, stdout: Optional[list] = None) -> dict:
    command = [sys.executable, str(EXAMPLE), "--smoke", "--no-progress", "--out", str(out)]
    done = subprocess.run(
        [*command, *flags], check=True, capture_output=True, text=True, timeout=600
    )
    if stdout is not None:
        stdout.append(done.stdout)
    return json.loads((out / "results.json").read_text())


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("classification")
    printed: list[str] = []
    first = run_classification(out, stdout=printed)
    mtimes = {p.name: p.stat().st_mtime_ns for p in (out / "checkpoints").iterdir()}
    second = run_classification(out)
    return out, first, second, mtimes, printed[0]


@pytest.mark.slow
def test_smoke_writes_every_output(smoke_run):
    out, data, _, mtimes, _ = smoke_run
    assert data["task"] == "classification" and data["metric"] == "accuracy"
    assert data["higher_is_better"] is True and 0.0 <= data["complete"] <= 1.0
    assert 0.0 <= data["complete_vanilla"] <= 1.0
    assert data["command"].startswith("python examples/classification.py --smoke")
    assert data["settings"]["num_points"] == SMOKE.num_points
    assert data["settings"]["fixed_loss"]["alpha"] == SMOKE.fixed_loss.alpha
    sizes = {str(m) for m in SMOKE.sizes}
    progressive = [
        f"samplenet_progressive{s}" for s in ("", "_simplified", "_projected", "_prefix")
    ]
    for sampler in ("fps", "random", "voxel", "fps_vanilla", *progressive):
        assert set(data["results"][sampler]) == sizes, sampler
    trained = {str(m) for m in SMOKE.train_sizes}
    for sampler in ("samplenet", "snet"):
        assert set(data["results"][sampler]) == trained
    for row in data["results"].values():
        assert all(0.0 <= v <= 1.0 for v in row.values())

    table = (out / "results.md").read_text()
    assert "| samplenet |" in table and "| fps |" in table and "| fps_vanilla |" in table
    for name in ("accuracy.png", "samples.png"):
        assert (out / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    m = SMOKE.train_sizes[0]
    expected = {"pointnet.pt", "pointnet_vanilla.pt", "samplenet_progressive.pt"}
    expected |= {f"samplenet_{m}.pt", f"snet_{m}.pt", f"samplenet_{m}.sampler.pt"}
    expected |= {"samplenet_progressive.sampler.pt"}
    assert expected <= set(mtimes)


@pytest.mark.slow
def test_rerun_resumes_from_checkpoints(smoke_run):
    out, first, second, mtimes, _ = smoke_run
    # Every stage was complete: nothing is retrained and the evaluation repeats exactly.
    assert {p.name: p.stat().st_mtime_ns for p in (out / "checkpoints").iterdir()} == mtimes
    assert second["results"] == first["results"]
    assert second["complete"] == first["complete"]


@pytest.mark.slow
def test_a_fresh_run_with_the_same_seed_repeats_the_table(smoke_run, tmp_path):
    # Same seed, machine and thread count: every stage trains again and gives the same table.
    _, first, *_ = smoke_run
    again = run_classification(tmp_path / "again")
    assert again["results"] == first["results"]
    assert again["complete"] == first["complete"]


@pytest.mark.slow
def test_smoke_prints_each_stage_with_its_number(smoke_run):
    *_, stdout = smoke_run
    # Two PointNets, SampleNet and S-NET at the one trained size, the progressive sampler,
    # the evaluation.
    stages = [line.split(" - ")[0] for line in stdout.splitlines() if line.startswith("[")]
    assert [s.split("]")[0] for s in stages] == [f"[{i}/6" for i in range(1, 7)]
    assert "train PointNet" in stages[0] and "SampleNet-Progressive" in stages[4]
    assert stages[5].startswith("[6/6] evaluate")


@pytest.mark.slow
def test_hdf5_data_set_trains_and_evaluates_with_flags_only(tmp_path, write_hdf5_dataset):
    classes = ["airplane", "bed", "car"]
    write_hdf5_dataset(tmp_path, classes, {"train": 12, "test": 6}, 200)
    data = run_classification(tmp_path / "out", "--dataset", "h5", "--data-root", str(tmp_path))
    assert data["dataset"] == "h5"
    # Six test clouds: every accuracy is a multiple of 1/6.
    for row in data["results"].values():
        assert all(abs(6 * v - round(6 * v)) < 1e-9 for v in row.values())
    assert set(data["results"]["samplenet"]) == {str(m) for m in SMOKE.train_sizes}


@pytest.mark.slow
def test_val_fraction_evaluates_on_a_held_out_share_of_the_training_split(
    tmp_path, write_hdf5_dataset
):
    # The real ModelNet10 data here has a training split only: --val-fraction holds out a
    # class-stratified share of it and evaluates there.
    classes = ["bathtub", "bed", "chair"]
    write_hdf5_dataset(tmp_path, classes, {"train": 24}, 200)
    flags = ("--dataset", "h5", "--data-root", str(tmp_path), "--val-fraction", "0.25")
    data = run_classification(tmp_path / "out", *flags)
    assert data["evaluated_on"] == "val" and data["val_fraction"] == 0.25
    # 25 % of 8 clouds per class: 6 validation clouds, so every accuracy is a multiple of 1/6.
    for row in data["results"].values():
        assert all(abs(6 * v - round(6 * v)) < 1e-9 for v in row.values())
