r"""The scaling profile of SampleNet inference: its smoke run writes complete results whose
slopes are those of its own times."""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

import scaling_profile  # noqa: E402


@pytest.mark.slow
def test_smoke_run_writes_every_stage(tmp_path):
    report = scaling_profile.main(["--smoke", "--out", str(tmp_path)])
    on_disk = json.loads((tmp_path / "scaling_profile.json").read_text())
    assert on_disk == json.loads(json.dumps(report))
    sizes = on_disk["settings"]["sizes"]
    assert sizes == sorted(scaling_profile.SMOKE_SIZES)
    for n, counts in zip(sizes, on_disk["counts"]):
        assert counts["samples"] == math.ceil(n / 32)
        assert 1 <= counts["unique_matches"] <= counts["samples"]
    assert set(on_disk["times_s"]) == set(scaling_profile.STAGES)
    for stage, times in on_disk["times_s"].items():
        assert set(times) == {str(n) for n in sizes}
        assert all(t > 0 for t in times.values())
        # Least-squares slope of log time on log N, recomputed here with numpy.
        expected = np.polyfit(np.log(sizes), np.log([times[str(n)] for n in sizes]), 1)[0]
        assert on_disk["slopes"][stage] == pytest.approx(expected)
    table = (tmp_path / "scaling_profile.md").read_text()
    assert all(f"| {stage} |" in table for stage in scaling_profile.STAGES)
    assert (tmp_path / "scaling_profile.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_rejects_a_single_size(tmp_path):
    with pytest.raises(SystemExit):
        scaling_profile.main(["--sizes", "1000", "--out", str(tmp_path)])
