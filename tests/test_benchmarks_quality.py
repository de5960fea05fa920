r"""benchmarks/quality.py on the smoke profiles, run as a user runs it: it runs the three
examples and combines their results into one JSON, one Markdown table and one figure."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
TASKS = ("classification", "registration", "reconstruction")


@pytest.mark.slow
def test_quality_benchmark_smoke(tmp_path):
    runs = tmp_path / "runs"
    command = [sys.executable, str(ROOT / "benchmarks" / "quality.py"), "--smoke"]
    command += ["--out", str(tmp_path), "--runs", str(runs), "--no-progress"]
    subprocess.run(command, check=True, capture_output=True, timeout=900)
    on_disk = json.loads((tmp_path / "quality.json").read_text())
    assert set(on_disk["tasks"]) == set(TASKS) and on_disk["profile"] == "smoke"
    assert on_disk["meta"]["command"].startswith("python benchmarks/quality.py --smoke")
    for task, data in on_disk["tasks"].items():
        # The combined file holds each example's own results.json.
        assert data == json.loads((runs / f"{task}-smoke" / "results.json").read_text())
        # Every sampler the issue names is measured at every evaluated size.
        sizes = set(data["results"]["fps"])
        for name in ("random", "voxel", "samplenet_progressive"):
            assert set(data["results"][name]) == sizes, (task, name)
        for name in ("snet", "samplenet"):
            assert data["results"][name] and set(data["results"][name]) <= sizes, (task, name)
    table = (tmp_path / "quality.md").read_text()
    assert table.count("### ") == 3 and "| voxel |" in table and "- Command:" in table
    assert (tmp_path / "quality.png").read_bytes()[:4] == b"\x89PNG"
