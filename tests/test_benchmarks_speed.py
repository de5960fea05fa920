r"""The speed benchmark: its smoke run writes complete results, and the helpers it measures
with (batched random sampling, the dense soft-projection reference, the count-exact fps ratio,
the voxel-size calibration, timing, peak memory, slopes) do what they claim."""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

import common  # noqa: E402
import speed  # noqa: E402

from tg_samplenet import SoftProjection  # noqa: E402
from tg_samplenet.ops.batch import sample_counts  # noqa: E402


def allocate_and_touch(num_bytes: int):
    r"""A memory-measurement builder: the call allocates and writes :obj:`num_bytes`."""
    return lambda: torch.ones(num_bytes // 4, dtype=torch.float32)


@pytest.mark.slow  # about 20 s on a quiet 2-core machine, a minute on a busy one
def test_smoke_run_writes_results(tmp_path):
    out = tmp_path / "results"
    cmd = [sys.executable, str(ROOT / "benchmarks" / "speed.py"), "--smoke", "--out", str(out)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr[-3000:]
    for name in ("speed.json", "speed.md", "speed.png"):
        assert (out / name).stat().st_size > 0
    assert (out / "speed.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    report = json.loads((out / "speed.json").read_text())
    assert {"metadata", "settings", "results", "targets", "slopes"} <= report.keys()
    meta = report["metadata"]
    assert meta["command"] == f"python benchmarks/speed.py --smoke --out {out}"
    assert {"cpu_model", "logical_cores", "ram_bytes"} <= meta["machine"].keys()
    versions = ("python", "torch", "torch_geometric", "torch_cluster", "torch_scatter")
    assert set(versions) | {"tg_samplenet"} <= meta["versions"].keys()
    assert meta["versions"]["torch"] == torch.__version__

    results = report["results"]
    methods = {r["method"] for r in results}
    assert methods == set(speed.SAMPLERS) | set(speed.PROJECTIONS)
    measured = [r for r in results if r["status"] == "ok"]
    assert len(measured) >= 2 * (len(methods) - 1)  # voxel grid may need torch_cluster
    for r in measured:
        assert r["num_points"] == 1000 and r["batch_size"] == 1
        assert r["time_s"] > 0 and all(t > 0 for t in r["times_s"])
        assert r["peak_memory_bytes"] >= 0
    for r in results:
        if r["method"] != "voxel_grid":
            assert r["samples_per_cloud"] == int(
                sample_counts(torch.tensor([1000]), ratio=r["ratio"])
            )

    assert [t["id"] for t in report["targets"]] == ["1", "2", "3a", "3b", "4"]
    for target in report["targets"][:4]:
        assert target["measured"] > 0 and isinstance(target["met"], bool)
    assert report["targets"][4]["measured"] is None  # one size: no slope

    markdown = (out / "speed.md").read_text()
    assert "## Targets" in markdown and "## Sampling: median time" in markdown
    assert "## Targets" in proc.stdout


def test_random_sample_takes_counts_distinct_points_per_cloud():
    batch = torch.tensor([0] * 5 + [1] * 1 + [2] * 9)
    counts = torch.tensor([3, 1, 9])
    index = speed.random_sample(batch, counts, torch.Generator().manual_seed(0))
    assert index.unique().numel() == index.numel()
    assert torch.equal(torch.bincount(batch[index], minlength=3), counts)
    assert torch.equal(batch[index], batch[index].sort().values)  # grouped by cloud


def test_random_sample_is_uniform_within_a_cloud():
    batch = torch.zeros(10, dtype=torch.long)
    generator = torch.Generator().manual_seed(1)
    hits = torch.zeros(10)
    for _ in range(2000):
        hits[speed.random_sample(batch, torch.tensor([3]), generator)] += 1
    # Each point is taken with probability 3/10: 600 expected, sd ~20.5.
    assert (hits - 600).abs().max() < 100


def test_dense_reference_matches_soft_projection_and_its_gradients():
    generator = torch.Generator().manual_seed(0)
    pos = torch.rand(40, 3, generator=generator)
    batch = torch.tensor([0] * 25 + [1] * 15)
    query = torch.rand(10, 3, generator=generator, requires_grad=True)
    query_batch = torch.tensor([0] * 6 + [1] * 4)
    projection = SoftProjection(k=4, initial_temperature=0.3)

    sparse = projection(pos, query, batch, query_batch).pos
    grads_sparse = torch.autograd.grad(sparse.sum(), [query, projection.temperature])
    dense = speed.dense_soft_projection(pos, query, batch, query_batch, 4, projection.sigma)
    grads_dense = torch.autograd.grad(dense.sum(), [query, projection.temperature])

    torch.testing.assert_close(dense, sparse, atol=1e-5, rtol=1e-4)
    for a, b in zip(grads_dense, grads_sparse, strict=True):
        torch.testing.assert_close(a, b, atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("num_points", [25, 50, 999, 100_000])
def test_ratio_for_count_gives_the_exact_fps_count(num_points):
    # 25 * (15 / 25) rounds up to 16 in float32: the ratio needs a nudge.
    for count in [1, 2, num_points // 3, num_points // 8] + [15] * (num_points == 25):
        ratio = speed.ratio_for_count(num_points, count)
        assert int(sample_counts(torch.tensor([num_points]), ratio=ratio)) == count


@pytest.mark.skipif(not speed.has_torch_cluster(), reason="voxel_grid needs torch_cluster")
def test_voxel_calibration_reaches_the_count_grid_sampling_keeps():
    from torch_geometric.data import Data
    from torch_geometric.transforms import GridSampling

    size, count = speed.calibrate_voxel_size(4000, 1 / 8)
    assert abs(count - 500) <= 10
    pos, batch = speed.sphere_clouds(4000, 1)
    assert GridSampling(size)(Data(pos=pos, batch=batch)).pos.size(0) == count


def test_sphere_clouds_layout():
    pos, batch = speed.sphere_clouds(7, 3)
    assert pos.shape == (21, 3)
    torch.testing.assert_close(pos.norm(dim=1), torch.ones(21))
    assert torch.equal(batch, torch.arange(3).repeat_interleave(7))


def test_time_call_runs_warmup_then_repeats():
    calls = []
    timing = common.time_call(lambda: calls.append(1), warmup=2, repeats=4, budget_s=1e9)
    assert len(calls) == 6 and len(timing.times) == 4 and timing.warmup == 2
    assert timing.median == statistics.median(timing.times)


def test_time_call_budget_stops_after_one_repeat():
    calls = []
    timing = common.time_call(lambda: calls.append(1), warmup=0, repeats=5, budget_s=0.0)
    assert len(calls) == 1 and timing.times == [timing.median]
    assert "1 of 5" in timing.note


@pytest.mark.skipif(not os.path.exists("/proc/self/clear_refs"), reason="Linux only")
def test_cpu_peak_memory_sees_an_allocation_of_known_size():
    size = 64 << 20
    peak = common.cpu_peak_memory(allocate_and_touch, {"num_bytes": size})
    assert size <= peak < size + (8 << 20)


def test_cpu_peak_memory_reports_a_failing_builder():
    with pytest.raises(RuntimeError, match="TypeError"):
        common.cpu_peak_memory(allocate_and_touch, {"num_bytes": "x"})


def test_loglog_slope_recovers_the_exponent():
    xs = [1e3, 4e3, 1.6e4, 1e5]
    assert common.loglog_slope(xs, [3 * x**1.5 for x in xs]) == pytest.approx(1.5)
    with pytest.raises(ValueError):
        common.loglog_slope([10, 10], [1, 2])


def test_markdown_table_and_formats():
    table = common.markdown_table(["a", "b"], [[1, "x"]])
    assert table.splitlines() == ["| a | b |", "|---|---|", "| 1 | x |"]
    assert common.format_seconds(0.00123) == "1.23 ms"
    assert common.format_bytes(3 << 20) == "3 MiB"
