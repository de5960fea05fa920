r"""Speed and peak memory of SampleNet against PyG's samplers and the fastest samplers a user
can install, side by side in one process, on clouds uniform on the unit sphere:

- **grid** (one cloud of :math:`N` points, ratio 1/32): the baselines of
  :mod:`reproduction.baselines`, SampleNet inference and a training step, the
  soft projection and the dense reference of :mod:`reproduction.testing`;
- **peers** (three fixed cases): :data:`~reproduction.peers.PEERS` (skipped with a note
  where they do not import; none is a dependency of the library) beside SampleNet's hard
  sampling and inference on each back-end of :mod:`tg_samplenet.ops`;
- **back-ends**: SampleNet inference and training at the three largest :math:`N`;

and checks the performance targets. Writes :obj:`speed.json`, :obj:`speed.md` and
:obj:`speed.png` into :obj:`--out` and prints the Markdown.

.. code-block:: bash

    python benchmarks/speed.py                           # about 4 min on an idle core
    python benchmarks/speed.py --passes 3                # each case's median of 3 passes
    python benchmarks/speed.py --smoke --out /tmp/speed  # seconds

Cases timed at different moments see different loads on a shared machine (the same case
moved by 25 % from one pass to the next here): ``--passes`` times the whole plan several
times and keeps each case's median pass, which is what the targets compare.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # reproduction/ beside tg_samplenet/

import argparse
import os
from fractions import Fraction
from typing import Any, Mapping, Optional, Sequence

import torch
import torch_geometric

import reproduction.benchmarking as bench
import tg_samplenet.ops as ops
from reproduction.baselines import fps_sample, random_sample, voxel_sample
from reproduction.environment import run_metadata
from reproduction.peers import PEERS, peer_fps
from reproduction.plots import plot_loglog
from reproduction.reporting import (
    format_bytes,
    format_seconds,
    format_value,
    markdown_table,
    metadata_markdown,
    write_json,
)
from reproduction.tasks import PointNet
from reproduction.testing import (
    dense_soft_projection,
    near_surface_queries,
    sphere_clouds,
    surface_sampler,
)
from tg_samplenet import SoftProjection, samplenet_loss

SEED, K, NOISE, RATIO, MEM = 0, 7, 0.01, 1 / 32, "peak_memory_bytes"
SIZES, SMOKE_SIZES = (1000, 4000, 16_000, 100_000, 1_000_000), (500, 2000)
BASELINES = dict(fps=fps_sample, random=random_sample, voxel=voxel_sample)
GRID = (*BASELINES, "samplenet_eval", "samplenet_train", "soft_projection", "dense_projection")
MEMORY = GRID[3:]  # measured on the default back-end only
OURS = dict(hard=("hard_sample",), half=("progressive_eval",))  # on every back-end
OURS["few"] = ("samplenet_eval", "progressive_eval")
EXTRA = dict(hard=GRID[5:], half=(), few=("network", "pointnet_full", "samplenet_pointnet"))
FIELDS = ("method", "backend", "num_points", "batch_size", "ratio", "num_samples")
LABELS = dict(
    PEERS,
    fps="fps (tg_samplenet.ops.fps)",
    random="random",
    voxel="voxel grid (matched count)",
    samplenet_eval="SampleNet inference",
    samplenet_train="SampleNet train step",
    soft_projection="SoftProjection fwd+bwd",
    dense_projection="dense reference fwd+bwd",
    progressive_eval="progressive SampleNet inference",
    network="SampleNet network alone",
    hard_sample="hard_sample",
    pointnet_full="PointNet, all points",
    samplenet_pointnet="SampleNet + PointNet",
)
MAX_DENSE_BYTES = 2 << 30  # the dense reference's [B, M, N] float32 matrix (peak ~2x)
TARGET_CASE_S = 150.0  # limit of inference and training at the largest N (targets need them)
INPUTS = (
    "B clouds of N points uniform on the unit sphere, seed 0. SampleNet is untrained except "
    "for its last layer, which outputs m points near the sphere, as a trained sampler's lie "
    "near the surface (reproduction.testing.surface_sampler); hard_sample and soft-projection "
    f"queries are input points moved by N(0, {NOISE}^2)."
)
# id, what is measured, comparison, threshold, conditions (filled in by targets()).
TARGETS = (
    ("1", "SampleNet + PointNet / PointNet on all points (time)", "<=", 0.10, "{few}, eval"),
    ("2", "torch_geometric.nn.fps / hard_sample (time)", ">=", 10.0, "{hard}"),
    ("3a", "dense reference / SoftProjection (peak memory)", ">=", 10.0, "{hard}, fwd+bwd"),
    ("3b", "dense reference / SoftProjection (time)", ">=", 1.0, "{hard}, fwd+bwd"),
    ("4", "log-log slope of SampleNet inference time", "<=", 1.15, "{slope}"),
    ("R2.1", "fpsample bucket FPS / hard_sample (time)", ">=", 1.0, "{hard}"),
    ("R2.2", "default / torch_cluster back-end (time)", "<=", 1.2, "{worst}"),
    ("R2.3a", "torch_geometric.nn.fps / progressive inference", ">=", 1.0, "{half}"),
    ("R2.3b", "progressive inference / fpsample loop", "<=", 3.0, "{half}"),
    ("R2.3c", "SampleNet(m) inference / torch_geometric.nn.fps", "<=", 1.5, "{few}"),
    ("R2.3d", "progressive inference / torch_geometric.nn.fps", "<=", 1.5, "{few}"),
    ("R2.4a", "SampleNet train step, peak memory (GiB)", "<=", 1.0, "{big}"),
    ("R2.4b", "SampleNet train step / inference (time)", "<=", 3.0, "{big}"),
    ("R2.4c", "log-log slope of the train step time", "<=", 1.1, "{slope}"),
    ("R2.5", "SampleNet inference time (s)", "<=", 1.0, "{big}"),
)


def case(method, backend, num_points, batch_size, ratio=None, num_samples=None) -> dict:
    return dict(zip(FIELDS, (method, backend, num_points, batch_size, ratio, num_samples)))


def key(c: dict[str, Any]) -> tuple:
    return tuple(c[k] for k in FIELDS)


def scenarios(smoke: bool) -> dict[str, dict[str, Any]]:
    r"""The fixed cases (reduced with :obj:`smoke`): 4096 of 100k points, and 32 clouds of
    1024 points at ratio 1/2 and at 32 points per cloud."""
    n, b, m, (big, many) = (256, 4, 8, (4000, 256)) if smoke else (1024, 32, 32, (100_000, 4096))
    return dict(
        hard=case(None, None, big, 1, num_samples=many),
        half=case(None, None, n, b, ratio=0.5),
        few=case(None, None, n, b, num_samples=m),
    )


def count(num_points: int, ratio: Optional[float], num_samples: Optional[int]) -> int:
    return int(ops.sample_counts(torch.tensor([num_points]), num_samples, ratio))


def build_ours(method: str, pos, batch, B: int, m: int, ratio: Optional[float]):
    r"""The call of one of tg_samplenet's samplers or stages on :obj:`B` clouds."""
    device, n = pos.device, pos.size(0) // B
    if method in BASELINES:
        return lambda: BASELINES[method](pos, batch, m)
    torch.manual_seed(SEED)
    classifier = PointNet(40).to(device).eval()  # ModelNet40, with both T-Nets
    if method == "pointnet_full":
        return torch.no_grad()(lambda: classifier(pos, batch))
    if method in ("samplenet_eval", "progressive_eval", "network", "samplenet_pointnet"):
        progressive = method == "progressive_eval"  # a progressive sampler has m = n
        sampler = surface_sampler(n if progressive else m, K, NOISE, SEED, progressive)
        sampler = sampler.to(device).eval()

        @torch.no_grad()
        def infer():
            if method == "network":
                return sampler.simplify(pos, batch, B)
            out = sampler(pos, batch, ratio=ratio, num_samples=m)
            return classifier(out.pos, out.batch) if method == "samplenet_pointnet" else out.index

        return infer
    if method == "samplenet_train":
        sampler = surface_sampler(m, K, NOISE, SEED).to(device).train()

        def train_step():
            sampler.zero_grad(set_to_none=True)
            out = sampler(pos, batch, ratio=ratio)
            task_loss = out.pos.pow(2).sum(-1).mean()  # stands in for the task network
            samplenet_loss(task_loss, out, pos, batch).backward()

        return train_step
    query, query_batch = near_surface_queries(pos, batch, m, NOISE, SEED)
    if method == "hard_sample":
        counts = torch.full((B,), m, dtype=torch.long, device=device)
        return torch.no_grad()(lambda: ops.hard_sample(pos, batch, query, query_batch, counts))
    query.requires_grad_(True)
    projection = SoftProjection(k=K).to(device)
    grad = torch.randn(query.shape, generator=torch.Generator().manual_seed(SEED + 3)).to(device)

    def project():
        query.grad = None
        projection.zero_grad(set_to_none=True)
        if method == "soft_projection":
            out = projection(pos, query, batch, query_batch).pos
        else:
            out = dense_soft_projection(pos, query, batch, query_batch, K, projection.sigma)
        (out * grad).sum().backward()

    return project


def build_case(method, backend, num_points, batch_size, ratio, num_samples, device="cpu"):
    r"""Creates the inputs of one measurement and returns the call to time, run on
    :obj:`backend` when one is given: top-level with plain arguments, so that a fresh child
    process can rebuild it to measure memory."""
    pos, batch = sphere_clouds(num_points, batch_size, SEED, device)
    m = count(num_points, ratio, num_samples)
    if method in PEERS:
        return peer_fps(method, pos, batch, batch_size, m)
    fn = build_ours(method, pos, batch, batch_size, m, ratio)

    def on_backend():
        with ops.use_backend(backend):
            return fn()

    return on_backend


def plan(sizes: Sequence[int], smoke: bool, backends: Sequence[str]) -> list[dict[str, Any]]:
    r"""Every measurement in the order they run; a case planned twice runs once."""
    default, cases = ops.get_backend(), []
    cases += [case(m, default, n, 1, RATIO) for n in sizes for m in GRID]
    for name, spec in scenarios(smoke).items():
        cases += [dict(spec, method=m) for m in PEERS]
        cases += [dict(spec, method=m, backend=b) for m in OURS[name] for b in backends]
        cases += [dict(spec, method=m, backend=default) for m in EXTRA[name]]
    cases += [case(m, b, n, 1, RATIO) for b in backends for n in sizes[-3:] for m in MEMORY[:2]]
    return list({key(c): c for c in cases}.values())


def skip_reason(c: dict[str, Any], history: dict, limit: float) -> str:
    n, m = c["num_points"], count(c["num_points"], c["ratio"], c["num_samples"])
    size = 4 * c["batch_size"] * m * n
    if c["method"] == "dense_projection" and size > MAX_DENSE_BYTES:
        return f"dense [B, M, N] matrix {format_bytes(size)} > {format_bytes(MAX_DENSE_BYTES)}"
    quadratic = c["method"] == "fps" or c["backend"] == "torch"  # plain-torch brute force
    series = history.get(key(dict(c, num_points=0)), [])
    predicted = bench.predicted_time(series, n, 2.0 if quadratic else 1.0)
    if predicted is not None and predicted > limit:
        return f"predicted {predicted:.0f} s > {limit:g} s from smaller N"
    return ""


def lookup(index: dict, what: str = "time_s", **c) -> Optional[float]:
    r"""A measured value of the case :obj:`c`, or :obj:`None` if it did not run."""
    r = index.get(key(c))
    return r.get(what) if r is not None and r["status"] == "ok" else None


def ratio(a: Optional[float], b: Optional[float]) -> Optional[float]:
    return None if a is None or b is None or b <= 0 else a / b


def slope(index: dict, method: str, backend: str, sizes) -> tuple[Optional[float], list[int]]:
    r"""Log-log slope of time against N of a grid series (B=1, ratio 1/32) over N >= 16k
    (over all sizes if fewer than two reach 16k, as in a smoke run)."""
    sizes = [n for n in sizes if n >= 16_000] if sum(n >= 16_000 for n in sizes) > 1 else sizes
    times = {n: lookup(index, **case(method, backend, n, 1, RATIO)) for n in sizes}
    points = [(n, t) for n, t in times.items() if t]
    value = bench.loglog_slope(*zip(*points)) if len(points) >= 2 else None
    return value, [n for n, _ in points]


def describe(c: dict[str, Any]) -> str:
    fraction = Fraction(c["ratio"] or 0).limit_denominator(1000)
    per_cloud = f"ratio {fraction}" if c["ratio"] else f"{c['num_samples']} per cloud"
    return f"{c['batch_size']} x {c['num_points']:,} points, {per_cloud}"


def worst_backend_ratio(index: dict, default: str) -> tuple[Optional[float], str]:
    r"""The largest ratio of a case's time on the default back-end (no compiled extension) to
    its time on the torch_cluster one, and where it occurs."""
    worst, where = None, "not run: needs the torch_cluster back-end"
    for r in index.values():
        if r["backend"] == default and r["status"] == "ok":
            c = {k: r[k] for k in FIELDS}
            value = ratio(r["time_s"], lookup(index, **dict(c, backend="torch_cluster")))
            if value is not None and (worst is None or value > worst):
                worst, where = value, f"worst: {LABELS[r['method']]}, {describe(r)}"
    return worst, where


def evaluate_targets(
    specs: Sequence[tuple[str, str, str, float, str]],
    values: Mapping[str, Optional[float]],
    note: str = "",
) -> list[dict[str, Any]]:
    r"""Checks measured values against targets.

    Args:
        specs (Sequence): :obj:`(id, what is measured, "<=" or ">=", threshold,
            conditions)` per target.
        values (Mapping): The measured value per id, :obj:`None` where it did not run.
        note (str, optional): Appended to every row's conditions. (default: :obj:`""`)

    :rtype: :class:`list` of :obj:`{"id", "name", "measured", "op", "threshold", "met",
        "conditions"}`, :obj:`met` being :obj:`None` where nothing was measured.
    """
    rows = []
    for tid, name, op, threshold, conditions in specs:
        value = values[tid]
        met = None if value is None else (value <= threshold if op == "<=" else value >= threshold)
        row = dict(id=tid, name=name, measured=value, op=op, threshold=threshold, met=met)
        rows.append(dict(row, conditions=conditions + note))
    return rows


def targets_table(rows: Sequence[Mapping[str, Any]]) -> str:
    r"""The rows of :func:`evaluate_targets` as a Markdown table."""
    verdict = {None: "not run", True: "met", False: "NOT MET"}
    body = [
        [r["id"], r["name"], format_value(r["measured"]), f"{r['op']} {r['threshold']:g}"]
        + [verdict[r["met"]], r["conditions"]]
        for r in rows
    ]
    return markdown_table(["#", "target", "measured", "threshold", "met", "conditions"], body)


def targets(index: dict, settings: dict[str, Any]) -> list[dict[str, Any]]:
    r"""The targets: measured value, threshold, met, or not run."""
    default, sizes = settings["backend"], settings["sizes"]
    sc = dict(settings["scenarios"], big=case(None, None, sizes[-1], 1, RATIO))

    def t(method, name, backend=default, what="time_s"):
        return lookup(index, what, **dict(sc[name], method=method, backend=backend))

    slopes = {m: slope(index, m, default, sizes) for m in MEMORY[:2]}
    worst, where = worst_backend_ratio(index, default)
    values = {
        "1": ratio(t("samplenet_pointnet", "few"), t("pointnet_full", "few")),
        "2": ratio(t("pyg_fps", "hard", None), t("hard_sample", "hard")),
        "3a": ratio(
            t("dense_projection", "hard", what=MEM), t("soft_projection", "hard", what=MEM)
        ),
        "3b": ratio(t("dense_projection", "hard"), t("soft_projection", "hard")),
        "4": slopes["samplenet_eval"][0],
        "R2.1": ratio(t("fpsample", "hard", None), t("hard_sample", "hard")),
        "R2.2": worst,
        "R2.3a": ratio(t("pyg_fps", "half", None), t("progressive_eval", "half")),
        "R2.3b": ratio(t("progressive_eval", "half"), t("fpsample", "half", None)),
        "R2.3c": ratio(t("samplenet_eval", "few"), t("pyg_fps", "few", None)),
        "R2.3d": ratio(t("progressive_eval", "few"), t("pyg_fps", "few", None)),
        "R2.4a": ratio(t("samplenet_train", "big", what=MEM), 1 << 30),
        "R2.4b": ratio(t("samplenet_train", "big"), t("samplenet_eval", "big")),
        "R2.4c": slopes["samplenet_train"][0],
        "R2.5": t("samplenet_eval", "big"),
    }
    places = {name: describe(spec) for name, spec in sc.items()}
    places.update(worst=where, slope=f"B=1, ratio 1/32, N in {slopes['samplenet_eval'][1]}")
    specs = [(*spec[:4], spec[4].format(**places)) for spec in TARGETS]
    return evaluate_targets(specs, values, " [smoke: not a verdict]" * settings["smoke"])


def render_markdown(report: dict[str, Any]) -> str:
    meta, settings, results = report["metadata"], report["settings"], report["results"]
    machine, backends = meta["machine"], ", ".join(settings["backends"])
    out = ["# Speed and memory: SampleNet against PyG's and installable samplers", ""]
    out += [metadata_markdown(meta)]
    if (machine["load_average"] or [0])[0] > machine["usable_cores"]:
        out += ["- **Busy machine**: the load average exceeded the usable cores at the start"]
    out += [
        f"- Device: {settings['device']}; default back-end {settings['backend']}; back-ends "
        f"measured: {backends}; torch_geometric.nn.fps calls {settings['pyg_fps_kernel']}",
        "",
        "## Targets",
        "",
        targets_table(report["targets"]),
        "",
        "## Every measurement (median time; peak memory where measured)",
        "",
    ]
    index, rows = {key(r): r for r in results}, []
    order = ("batch_size", "num_points", "ratio", "num_samples")
    for r in sorted(results, key=lambda r: [r[k] or 0 for k in order]):
        base = lookup(index, **dict(r, method="pyg_fps", backend=None))
        time = format_seconds(r.get("time_s")) if r["status"] == "ok" else r["status"]
        cells = [
            describe(r),
            LABELS[r["method"]],
            r["backend"] or "–",
            time,
            format_bytes(r.get(MEM)),
        ]
        rows.append(cells + [format_value(ratio(r.get("time_s"), base)), r["note"]])
    header = ["case", "implementation", "back-end", "time", "memory", "x PyG fps", "note"]
    out += [
        markdown_table(header, rows),
        "",
        "## Log-log slopes of time against N (B=1, ratio 1/32)",
        "",
    ]
    rows = [
        [LABELS[m], format_value(s), ", ".join(map(str, xs))]
        for m, (s, xs) in report["slopes"].items()
    ]
    out += [markdown_table(["method", "slope", "sizes"], rows), "", "## How it was measured", ""]
    out += [f"- Inputs: {INPUTS}"]
    out += [f"- {k.capitalize()}: {settings[k]}" for k in ("timing", "memory", "skips")]
    load = ", ".join(f"{x:.2f}" for x in settings["load_average_end"] or [])
    out += [f"- Load average (1, 5, 15 min) at the end: {load or 'unknown'}"]
    return "\n".join(out) + "\n"


def plot(report: dict[str, Any], path: str):
    settings, sizes = report["settings"], report["settings"]["sizes"]
    index = {key(r): r for r in report["results"]}

    def series(method, backend):
        return sizes, [lookup(index, **case(method, backend, n, 1, RATIO)) for n in sizes]

    backends = settings["backends"]
    panels = {
        "B = 1, ratio 1/32": {LABELS[m]: series(m, settings["backend"]) for m in GRID},
        "SampleNet per back-end": {
            f"{LABELS[m]} ({b})": series(m, b) for m in MEMORY[:2] for b in backends
        },
    }
    title = f"Speed ({settings['device']})"
    plot_loglog(path, panels, "points per cloud N", "median time (s)", title)


def run_pass(cases, args, device, default) -> list[dict[str, Any]]:
    r"""One pass over the plan: a row per case (skipped where the series predicts a case
    slower than the limit)."""
    from tqdm import tqdm

    results, history = [], {}
    for c in tqdm(cases, desc="speed", unit="case"):
        big = c["method"] in MEMORY[:2] and c["num_points"] == args.sizes[-1]
        reason = skip_reason(c, history, TARGET_CASE_S if big else args.max_case_seconds)
        on_memory = args.memory and c["method"] in MEMORY and c["backend"] == default
        kwargs, small = dict(c, device=device), dict(c, device=device, num_points=1000)
        small.update(ratio=RATIO, num_samples=None)  # a long call's child warms up on this
        row = (
            {}
            if reason
            else bench.measure(build_case, kwargs, device, on_memory, args.min_run_time, small)
        )
        results.append(dict(c, **(row or dict(status="skipped", note=reason))))
        if row.get("time_s"):
            series = history.setdefault(key(dict(c, num_points=0)), [])
            series.append((c["num_points"], row["time_s"]))
    return results


def median_pass(rows: Sequence[dict[str, Any]]) -> dict[str, Any]:
    r"""The row of the pass with the median time (the first row where none was timed)."""
    timed = sorted((r for r in rows if r.get("time_s")), key=lambda r: r["time_s"])
    return timed[(len(timed) - 1) // 2] if timed else rows[0]


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cpu", help="cpu or cuda (default: cpu)")
    parser.add_argument("--sizes", type=int, nargs="+", help=f"grid N (default: {SIZES})")
    parser.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "results"))
    parser.add_argument("--smoke", action="store_true", help="small sizes: seconds")
    parser.add_argument("--no-memory", dest="memory", action="store_false", help="time only")
    parser.add_argument("--threads", type=int, help="torch threads (default: torch's choice)")
    parser.add_argument("--min-run-time", type=float, default=1.0, help="timed s per case")
    parser.add_argument("--max-case-seconds", type=float, default=60.0, help="skip slower")
    parser.add_argument(
        "--passes", type=int, default=1, help="time every case in this many passes, median"
    )
    args = parser.parse_args(argv)
    if args.device != "cpu" and not (args.device.startswith("cuda") and torch.cuda.is_available()):
        parser.error(f"--device must be cpu or an available cuda device (got {args.device!r})")
    if args.threads is not None and args.threads < 1:
        parser.error("--threads must be at least 1")
    if args.passes < 1:
        parser.error("--passes must be at least 1")
    args.sizes = sorted(set(args.sizes or (SMOKE_SIZES if args.smoke else SIZES)))
    if len(args.sizes) < 2 or args.sizes[0] < 64:
        parser.error("--sizes needs at least two distinct sizes of 64 points or more")
    if args.smoke:
        args.min_run_time = min(args.min_run_time, 0.1)
    return args


def main(argv: Optional[Sequence[str]] = None) -> dict[str, Any]:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parse_args(argv)
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    device, default, sc = args.device, ops.get_backend(args.device), scenarios(args.smoke)
    # The default back-end (nothing compiled) and the compiled ones installed here.
    compiled = [b for b in ("torch_cluster", "pyg_lib") if b in ops.available_backends()]
    backends = [default] + [b for b in compiled if b != default]
    meta = run_metadata("benchmarks/speed.py", argv, device)
    new_pyg = tuple(int(x) for x in torch_geometric.__version__.split(".")[:2]) >= (2, 8)
    memory = bench.CUDA_MEMORY_METHOD if device.startswith("cuda") else bench.CPU_MEMORY_METHOD
    settings = dict(
        device=device,
        sizes=args.sizes,
        smoke=args.smoke,
        backend=default,
        backends=backends,
        scenarios=sc,
        pyg_fps_kernel="pyg-lib" if new_pyg else "torch_cluster",
        timing="one untimed call, then torch.utils.benchmark.Timer.blocked_autorange("
        f"min_run_time={args.min_run_time:g}), median; a first call over 5 s is the measurement"
        f"; the median of {args.passes} passes over every case",
        memory=memory if args.memory else "not measured",
        skips=f"dense matrices over {format_bytes(MAX_DENSE_BYTES)}; cases predicted from the "
        f"same series at smaller N to take over {args.max_case_seconds:g} s "
        f"({TARGET_CASE_S:g} s for inference and training at the largest N)",
    )
    # Cases measured at different moments see different loads: with --passes, every case is
    # timed once per pass over the whole plan, and its row keeps the median pass.
    cases = plan(args.sizes, args.smoke, backends)
    passes: list[list[dict[str, Any]]] = []
    for _ in range(args.passes):
        passes.append(run_pass(cases, args, device, default))
    results = [median_pass([rows[i] for rows in passes]) for i in range(len(cases))]
    settings["load_average_end"] = list(os.getloadavg()) if hasattr(os, "getloadavg") else None
    index = {key(r): r for r in results}
    report = dict(
        metadata=meta,
        settings=settings,
        targets=targets(index, settings),
        slopes={m: slope(index, m, default, args.sizes) for m in GRID},
        results=results,
    )
    markdown = render_markdown(report)
    write_json(os.path.join(args.out, "speed.json"), report)
    with open(os.path.join(args.out, "speed.md"), "w") as f:
        f.write(markdown)
    plot(report, os.path.join(args.out, "speed.png"))
    print(markdown)
    return report


if __name__ == "__main__":
    main()
