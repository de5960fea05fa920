import importlib.util
import json
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_quality_benchmark_smoke(tmp_path):
    path = ROOT / "benchmarks" / "quality.py"
    spec = importlib.util.spec_from_file_location("bench_quality", path)
    quality = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = quality
    spec.loader.exec_module(quality)

    runs = tmp_path / "runs"
    summary = quality.main(
        ["--smoke", "--out", str(tmp_path), "--runs", str(runs), "--no-progress"]
    )
    on_disk = json.loads((tmp_path / "quality.json").read_text())
    assert set(on_disk["tasks"]) == set(quality.TASKS) == set(summary["tasks"])
    assert on_disk["meta"]["command"].startswith("python benchmarks/quality.py --smoke")
    for task, data in on_disk["tasks"].items():
        # Every sampler the issue names is measured at every evaluated size.
        sizes = set(data["results"]["fps"])
        for name in ("random", "voxel"):
            assert set(data["results"][name]) == sizes, (task, name)
        assert set(data["results"]["samplenet_progressive"]) == sizes, task
        assert data["results"]["snet"], task
        for name in ("samplenet",):
            assert set(data["results"][name]) <= sizes and data["results"][name], (task, name)
        assert (runs / f"{task}-smoke" / "results.json").exists()
    table = (tmp_path / "quality.md").read_text()
    assert table.count("### ") == 3 and "| voxel |" in table
    assert (tmp_path / "quality.png").read_bytes()[:4] == b"\x89PNG"
