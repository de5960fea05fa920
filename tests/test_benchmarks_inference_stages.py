r"""benchmarks/inference_stages.py, SampleNet inference timed stage by stage: its smoke run
writes complete results whose slopes are those of its own times."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]


def run(*args: str) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "benchmarks/inference_stages.py", *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=600, cwd=ROOT)


@pytest.mark.slow
def test_smoke_run_writes_every_stage(tmp_path):
    proc = run("--smoke", "--backend", "torch", "--out", str(tmp_path))
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads((tmp_path / "inference_stages.json").read_text())
    assert report["metadata"]["command"].endswith(f"--smoke --backend torch --out {tmp_path}")
    sizes = report["settings"]["sizes"]
    assert report["settings"]["backend"] == "torch" and len(sizes) >= 2
    for n, counts in zip(sizes, report["counts"]):
        assert counts["samples"] == math.ceil(n / 32)
        assert 1 <= counts["unique_matches"] <= counts["samples"]
    stages = list(report["times_s"])
    assert {"network", "matching", "completion: total", "SampleNet inference (all)"} <= set(stages)
    assert set(report["slopes"]) == set(stages)
    for stage, times in report["times_s"].items():
        assert set(times) == {str(n) for n in sizes}
        assert all(t > 0 for t in times.values())
        # Least-squares slope of log time on log N, recomputed here with numpy.
        expected = np.polyfit(np.log(sizes), np.log([times[str(n)] for n in sizes]), 1)[0]
        assert report["slopes"][stage] == pytest.approx(expected)
    table = (tmp_path / "inference_stages.md").read_text()
    assert all(f"| {stage} |" in table for stage in stages)
    assert "Neighbour back-end: torch." in table and "## Targets" not in table
    assert (tmp_path / "inference_stages.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_rejects_a_single_size(tmp_path):
    proc = run("--sizes", "1000", "--out", str(tmp_path))
    assert proc.returncode == 2 and "at least two distinct sizes" in proc.stderr
    assert not (tmp_path / "inference_stages.json").exists()
