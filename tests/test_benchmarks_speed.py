r"""The speed benchmark: its smoke run writes complete results whose targets and slopes follow
from its own measurements, and the helpers it measures with (:mod:`reproduction.benchmarking`,
:mod:`reproduction.peers`, the stand-in sampler of :mod:`reproduction.testing`, the number
formats of :mod:`reproduction.reporting`) do what they claim."""

from __future__ import annotations

import json
import os
import runpy
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

import reproduction.benchmarking as bench
from reproduction.environment import run_metadata
from reproduction.peers import PEERS, peer_fps, ratio_for_count
from reproduction.reporting import (
    format_bytes,
    format_seconds,
    metadata_markdown,
    write_json,
)
from reproduction.testing import near_surface_queries, sphere_clouds, surface_sampler
from tg_samplenet.ops import sample_counts

ROOT = Path(__file__).resolve().parents[1]
SPEED = runpy.run_path(str(ROOT / "benchmarks" / "speed.py"))  # its functions, not its main
TARGET_IDS = ["1", "2", "3a", "3b", "4", "R2.1", "R2.2", "R2.3a", "R2.3b", "R2.3c", "R2.3d"]
TARGET_IDS += ["R2.4a", "R2.4b", "R2.4c", "R2.5"]


def allocate_and_touch(num_bytes: int):
    r"""A memory-measurement builder: the call allocates and writes :obj:`num_bytes`."""
    return lambda: torch.ones(num_bytes // 4, dtype=torch.float32)


def unavailable():
    raise bench.Unavailable("not here")


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("speed")
    cmd = [sys.executable, "benchmarks/speed.py", "--smoke", "--out", str(out)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=900, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return out, proc.stdout, json.loads((out / "speed.json").read_text())


def measured(report, method, backend, **spec):
    for r in report["results"]:
        if r["method"] == method and r["backend"] == backend and r["status"] == "ok":
            if all(r[k] == v for k, v in spec.items()):
                return r
    return None


@pytest.mark.slow  # about a minute on a busy 2-core machine
def test_smoke_run_writes_its_files_with_the_run_description(smoke_run):
    out, stdout, report = smoke_run
    assert (out / "speed.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert {"metadata", "settings", "results", "targets", "slopes"} <= report.keys()
    meta = report["metadata"]
    assert meta["command"] == f"python benchmarks/speed.py --smoke --out {out}"
    assert {"cpu_model", "logical_cores", "ram_bytes", "load_average"} <= meta["machine"].keys()
    assert meta["versions"]["torch"] == torch.__version__
    markdown = (out / "speed.md").read_text()
    assert markdown.startswith("# Speed") and "## Targets" in stdout
    assert all(f"| {tid} |" in markdown for tid in TARGET_IDS)


@pytest.mark.slow
def test_smoke_run_measures_every_case_or_says_why_not(smoke_run):
    _, _, report = smoke_run
    default = report["settings"]["backend"]
    for r in report["results"]:
        assert r["status"] in ("ok", "skipped", "error")
        if r["status"] == "ok":
            assert r["time_s"] > 0 and all(t > 0 for t in r["times_s"])
        else:
            assert r["note"]
        if r["method"] in PEERS:
            assert r["backend"] is None
    library = [r for r in report["results"] if r["method"] not in PEERS]
    assert all(r["status"] == "ok" for r in library), [r for r in library if r["note"]]
    with_memory = ("samplenet_eval", "samplenet_train", "soft_projection", "dense_projection")
    memory = [r for r in library if r["method"] in with_memory]
    assert all(r["peak_memory_bytes"] >= 0 for r in memory if r["backend"] == default)
    assert {r["backend"] for r in library} == set(report["settings"]["backends"])


@pytest.mark.slow
def test_smoke_targets_follow_from_the_measurements(smoke_run):
    _, _, report = smoke_run
    settings, default = report["settings"], report["settings"]["backend"]
    targets = {t["id"]: t for t in report["targets"]}
    assert list(targets) == TARGET_IDS
    for t in targets.values():
        assert (t["measured"] is None) == (t["met"] is None)
        if t["met"] is not None:
            below = t["measured"] <= t["threshold"]
            assert t["met"] == (below if t["op"] == "<=" else t["measured"] >= t["threshold"])
    hard = settings["scenarios"]["hard"]
    spec = {k: hard[k] for k in ("num_points", "batch_size", "num_samples")}
    soft = measured(report, "soft_projection", default, **spec)
    dense = measured(report, "dense_projection", default, **spec)
    assert targets["3b"]["measured"] == pytest.approx(dense["time_s"] / soft["time_s"])
    memory = dense["peak_memory_bytes"] / soft["peak_memory_bytes"]
    assert targets["3a"]["measured"] == pytest.approx(memory)
    big = dict(num_points=settings["sizes"][-1], batch_size=1, ratio=1 / 32)
    infer = measured(report, "samplenet_eval", default, **big)
    train = measured(report, "samplenet_train", default, **big)
    assert targets["R2.5"]["measured"] == pytest.approx(infer["time_s"])
    assert targets["R2.4b"]["measured"] == pytest.approx(train["time_s"] / infer["time_s"])
    assert targets["R2.4a"]["measured"] == pytest.approx(train["peak_memory_bytes"] / 2**30)
    # Least-squares slope of log time on log N, recomputed here with numpy.
    sizes = settings["sizes"]
    grid = [measured(report, "samplenet_eval", default, num_points=n, ratio=1 / 32) for n in sizes]
    times = [r["time_s"] for r in grid]
    expected = np.polyfit(np.log(sizes), np.log(times), 1)[0]
    assert targets["4"]["measured"] == pytest.approx(expected)
    assert report["slopes"]["samplenet_eval"][0] == pytest.approx(expected)


def test_peer_fps_keeps_the_count_of_every_cloud():
    pos, batch = sphere_clouds(300, 3, seed=1)
    ran = 0
    for name in PEERS:
        try:
            fn = peer_fps(name, pos, batch, 3, 17)
        except bench.Unavailable:
            continue
        ran += 1
        index = torch.as_tensor(np.asarray(fn(), dtype=np.int64)).view(-1)
        assert torch.bincount(batch[index], minlength=3).tolist() == [17, 17, 17], name
        assert index.unique().numel() == index.numel(), name
    if ran == 0:
        pytest.skip("no peer is installed here")


def test_peer_fps_rejects_an_unknown_name():
    pos, batch = sphere_clouds(10, 1)
    with pytest.raises(ValueError, match="unknown peer"):
        peer_fps("quickest", pos, batch, 1, 2)


@pytest.mark.parametrize("num_points", [25, 50, 999, 100_000])
def test_ratio_for_count_gives_the_exact_fps_count(num_points):
    # 25 * (15 / 25) rounds up to 16 in float32: the ratio needs a nudge.
    for count in [1, 2, num_points // 3, num_points // 8] + [15] * (num_points == 25):
        ratio = ratio_for_count(num_points, count)
        assert int(sample_counts(torch.tensor([num_points]), ratio=ratio)) == count


def test_surface_sampler_and_queries_lie_near_the_sphere():
    pos, batch = sphere_clouds(500, 2, seed=3)
    sampler = surface_sampler(20, noise=0.01).eval()
    with torch.no_grad():
        simplified = sampler.simplify(pos, batch, 2).reshape(-1, 3)
    assert (simplified.norm(dim=1) - 1).abs().max() < 0.06  # 6 sigma of N(0, 0.01^2)^3
    query, query_batch = near_surface_queries(pos, batch, 30, noise=0.01)
    assert torch.bincount(query_batch).tolist() == [30, 30]
    nearest = torch.cdist(query, pos).min(1).values
    assert nearest.max() < 0.06


def test_time_call_returns_the_median_of_its_blocks():
    timing = bench.time_call(lambda: time.sleep(0.002), min_run_time=0.05)
    assert timing.median == pytest.approx(float(np.median(timing.times)))
    assert all(t >= 0.002 for t in timing.times) and timing.note == ""


def test_time_call_times_a_long_first_call_once():
    calls = []
    timing = bench.time_call(lambda: calls.append(time.sleep(0.001)), single_run_above_s=0.0)
    assert len(calls) == 1 and timing.times == [timing.median] and "timed once" in timing.note


@pytest.mark.skipif(not os.path.exists("/proc/self/clear_refs"), reason="Linux only")
def test_cpu_peak_memory_sees_an_allocation_of_known_size():
    size = 64 << 20
    peak = bench.cpu_peak_memory(allocate_and_touch, {"num_bytes": size})
    assert size <= peak < size + (8 << 20)


def test_cpu_peak_memory_reports_a_failing_builder():
    with pytest.raises(RuntimeError, match="TypeError"):
        bench.cpu_peak_memory(allocate_and_touch, {"num_bytes": "x"})


def test_measure_reports_skips_and_errors_without_raising():
    assert bench.measure(unavailable, {}) == {"status": "skipped", "note": "not here"}
    row = bench.measure(allocate_and_touch, {"num_bytes": "x"})
    assert row["status"] == "error" and row["note"].startswith("TypeError")
    row = bench.measure(allocate_and_touch, {"num_bytes": 4096}, min_run_time=0.01)
    assert row["status"] == "ok" and row["time_s"] > 0


def test_loglog_slope_and_predicted_time():
    xs = [1e3, 4e3, 1.6e4, 1e5]
    assert bench.loglog_slope(xs, [3 * x**1.5 for x in xs]) == pytest.approx(1.5)
    with pytest.raises(ValueError):
        bench.loglog_slope([10, 10], [1, 2])
    assert bench.predicted_time([], 100) is None
    assert bench.predicted_time([(10, 1.0)], 100, default_slope=2.0) == pytest.approx(100.0)
    # Slope 3 between the last two sizes is clipped to 2; larger sizes in the history are ignored.
    history = [(10, 1.0), (20, 8.0), (1000, 1.0)]
    assert bench.predicted_time(history, 40) == pytest.approx(32.0)


def test_evaluate_targets_and_their_table():
    specs = [("a", "x", "<=", 1.0, "c"), ("b", "y", ">=", 2.0, "d"), ("c", "z", "<=", 1.0, "")]
    rows = SPEED["evaluate_targets"](specs, {"a": 0.5, "b": 1.5, "c": None}, " [note]")
    assert [r["met"] for r in rows] == [True, False, None]
    assert rows[0]["conditions"] == "c [note]"
    table = SPEED["targets_table"](rows).splitlines()
    assert table[2] == "| a | x | 0.5 | <= 1 | met | c [note] |"
    assert "NOT MET" in table[3] and "not run" in table[4]


def test_formats_and_metadata():
    assert format_seconds(0.00123) == "1.23 ms" and format_seconds(None) == "–"
    assert format_seconds(2e-6) == "2 µs" and format_seconds(12.0) == "12 s"
    assert format_bytes(3 << 20) == "3 MiB" and format_bytes(512) == "512 B"
    assert format_bytes(5 << 30) == "5 GiB" and format_bytes(None) == "–"
    meta = run_metadata("benchmarks/x.py", ["--smoke"])
    assert meta["command"] == "python benchmarks/x.py --smoke"
    assert meta["versions"]["torch"] == torch.__version__
    text = metadata_markdown(meta)
    assert text.splitlines()[0] == "- Command: `python benchmarks/x.py --smoke`"
    assert "torch " + torch.__version__ in text


def test_write_json_replaces_non_finite_numbers(tmp_path):
    write_json(tmp_path / "a" / "r.json", {"x": float("nan"), "y": [1.0, float("inf")]})
    assert json.loads((tmp_path / "a" / "r.json").read_text()) == {"x": None, "y": [1.0, None]}


def test_passes_keep_each_cases_median_pass():
    rows = [dict(time_s=t, name=f"pass {i}") for i, t in enumerate([3.0, 1.0, 2.0, 5.0, 4.0])]
    assert SPEED["median_pass"](rows)["time_s"] == 3.0  # the median of five
    assert SPEED["median_pass"](rows[:4])["time_s"] == 2.0  # the lower middle of four
    skipped = [dict(status="skipped", note="too slow"), dict(time_s=2.0)]
    assert SPEED["median_pass"](skipped)["time_s"] == 2.0  # skipped passes do not count
    assert SPEED["median_pass"](skipped[:1]) == skipped[0]
