r"""examples/pointnet2_samplenet.py run as a user runs it (a subprocess): on the built-in
shapes and on a small HDF5 folder with a validation hold-out, every row for two seeds; a
second run resumes from the checkpoints instead of training."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from reproduction.config import POINTNET2

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "pointnet2_samplenet.py"
ROWS = {"fps", "joint", "upgraded", "fps fine-tuned"}


def run_example(out: Path, *extra: str) -> dict:
    command = [sys.executable, str(EXAMPLE), "--smoke", "--no-progress", "--out", str(out)]
    done = subprocess.run(
        [*command, *extra], capture_output=True, text=True, timeout=900, cwd=EXAMPLE.parents[1]
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return json.loads((out / "results.json").read_text())


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("pointnet2")
    first = run_example(out)
    mtimes = {p.name: p.stat().st_mtime_ns for p in (out / "checkpoints").iterdir()}
    second = run_example(out)
    return out, first, second, mtimes


def check_results(out: Path, data: dict, seeds: list[int]):
    profile = POINTNET2["smoke"]
    assert set(data["rows"]) == ROWS and data["seeds"] == seeds
    for row, by_ratio in data["rows"].items():
        assert set(by_ratio) == {str(r) for r in profile.first_ratios}, row
        for cell in by_ratio.values():
            accuracy, ms = cell["accuracy"], cell["ms_per_batch"]
            assert 0.0 <= accuracy["min"] <= accuracy["mean"] <= accuracy["max"] <= 1.0
            assert accuracy["std"] >= 0.0 and ms["mean"] > 0.0
    for seed in map(str, seeds):  # the summary is the mean of the seeds' values
        assert set(data["per_seed"][seed]) == ROWS
    values = [data["per_seed"][str(s)]["fps"]["0.5"]["accuracy"] for s in seeds]
    assert abs(data["rows"]["fps"]["0.5"]["accuracy"]["mean"] - sum(values) / len(values)) < 1e-12
    assert data["timing_fps"] in ("torch_quickfps", "tg_samplenet.ops.fps")
    markdown = (out / "results.md").read_text()
    assert all(f"| {row} |" in markdown for row in ROWS) and "speed-up" in markdown
    assert (out / "accuracy.png").stat().st_size > 0


@pytest.mark.slow
def test_smoke_writes_every_row_for_every_seed(smoke_run):
    out, data, _, _ = smoke_run
    check_results(out, data, list(POINTNET2["smoke"].seeds))
    assert data["command"].endswith("--smoke --no-progress --out " + str(out))


@pytest.mark.slow
def test_second_run_resumes_instead_of_training(smoke_run):
    out, first, second, mtimes = smoke_run
    assert {p.name: p.stat().st_mtime_ns for p in (out / "checkpoints").iterdir()} == mtimes
    for row in ROWS:
        for ratio in first["rows"][row]:
            want, got = first["rows"][row][ratio], second["rows"][row][ratio]
            assert got["accuracy"] == want["accuracy"]


@pytest.mark.slow
def test_smoke_on_an_hdf5_folder_with_a_hold_out(tmp_path, write_hdf5_dataset):
    root = tmp_path / "h5"
    root.mkdir()
    write_hdf5_dataset(root, ["a", "b", "c"], {"train": 30}, num_points=64)
    out = tmp_path / "run"
    data = run_example(
        out, "--dataset", "h5", "--data-root", str(root), "--val-fraction", "0.2", "--seeds", "3"
    )
    check_results(out, data, [3])
    assert data["dataset"] == "h5" and data["evaluated_on"] == "val"
