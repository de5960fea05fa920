import json
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "compile.py"


@pytest.mark.slow
def test_smoke_run_writes_its_tables(tmp_path):
    run = subprocess.run(
        [sys.executable, str(SCRIPT), "--smoke", "--out", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert run.returncode == 0, run.stderr[-2000:]
    report = json.loads((tmp_path / "compile.json").read_text())
    assert set(report["results"]) == {
        "eval forward",
        "eval forward, sizes captured",
        "training step",
    }
    assert report["results"]["eval forward, sizes captured"]["graphs"] == 1
    for row in report["results"].values():
        assert row["eager_s"] > 0 and row["compiled_s"] > 0
        assert row["speed_up"] == pytest.approx(row["eager_s"] / row["compiled_s"])
        # Clouds of new sizes reuse the compiled graphs.
        assert row["graphs"] > 0
        assert row["graphs_after_new_sizes"] == row["graphs"]
    assert "--smoke" in report["metadata"]["command"]
    assert "| eval forward |" in (tmp_path / "compile.md").read_text()
