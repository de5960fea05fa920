r"""Where SampleNet inference spends its time as clouds grow: the stages of one
:meth:`SampleNet.forward` in eval mode, timed apart, with the log-log slope of each.

The speed benchmark's scaling target asks that inference time grow linearly in :math:`N`
(slope at most 1.15 from 16k to 1M points at ratio 1/32). This script shows which stage
bounds that slope. The stages, in the order the sampler runs them:

- ``network``: the point MLP, max-pool and head (:meth:`SampleNet.simplify`);
- ``matching``: the nearest input point of every simplified point
  (:func:`tg_samplenet.ops.nearest_index`, :math:`M` queries into the :math:`N` points);
- ``matching + de-duplication``: the same with repeats removed per cloud
  (:func:`tg_samplenet.ops.hard_sample` without the completion);
- ``completion: distances``: the distance of every input point to the matched set, where
  continued farthest point sampling starts (:math:`N` queries into the matched points);
- ``completion: total``: :func:`tg_samplenet.ops.farthest_point_sampling` continued from
  the matched set, those distances included.

Inputs are those of ``benchmarks/speed.py``: one cloud uniform on the unit sphere
(:func:`reproduction.testing.sphere_clouds`) and a SampleNet whose simplified points lie
near it, as a trained sampler's do (:func:`reproduction.testing.surface_sampler`).

.. code-block:: bash

    python benchmarks/inference_stages.py                          # 16k, 100k, 1M points
    python benchmarks/inference_stages.py --backend torch          # the plain-torch back-end
    python benchmarks/inference_stages.py --smoke --out /tmp/p     # seconds

Writes :obj:`inference_stages.json`, :obj:`inference_stages.md` and
:obj:`inference_stages.png` into :obj:`--out` and prints the Markdown.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # reproduction/ beside tg_samplenet/

import argparse
import os
from typing import Any, Optional, Sequence

import torch
from tqdm import tqdm

from reproduction.benchmarking import loglog_slope, time_call
from reproduction.environment import run_metadata
from reproduction.plots import plot_loglog
from reproduction.reporting import (
    format_seconds,
    format_value,
    markdown_table,
    metadata_markdown,
    write_json,
)
from reproduction.testing import sphere_clouds, surface_sampler
from tg_samplenet.ops import (
    available_backends,
    farthest_point_sampling,
    get_backend,
    hard_sample,
    nearest_index,
    sample_counts,
    use_backend,
)

SIZES = (16_000, 100_000, 1_000_000)
SMOKE_SIZES = (1000, 4000)
RATIO = 1 / 32
STAGES = (
    "network",
    "matching",
    "matching + de-duplication",
    "completion: distances",
    "completion: total",
    "SampleNet inference (all)",
)


def stage_calls(num_points: int, device: str) -> tuple[dict[str, Any], dict[str, int]]:
    r"""The call of every stage on one cloud of :obj:`num_points` points, each fed with what
    the previous stages produced (computed once, outside the timing), and the counts."""
    num_samples = int(sample_counts(torch.tensor([num_points]), ratio=RATIO))
    pos, batch = sphere_clouds(num_points, 1, device=device)
    sampler = surface_sampler(num_samples).to(device).eval()
    counts = torch.tensor([num_samples], device=device)
    with torch.no_grad():
        simplified = sampler.simplify(pos, batch, 1).reshape(-1, 3)
    simplified_batch = torch.zeros(simplified.size(0), dtype=torch.long, device=device)
    unique = hard_sample(pos, batch, simplified, simplified_batch, counts, complete=False)
    missing = counts - unique.numel()
    unique_batch = torch.zeros_like(unique)
    calls = {
        "network": torch.no_grad()(lambda: sampler.simplify(pos, batch, 1)),
        "matching": lambda: nearest_index(pos, simplified, batch, simplified_batch),
        "matching + de-duplication": lambda: hard_sample(
            pos, batch, simplified, simplified_batch, counts, complete=False
        ),
        "completion: distances": lambda: nearest_index(pos[unique], pos, unique_batch, batch),
        "completion: total": lambda: farthest_point_sampling(pos, batch, missing, unique),
        "SampleNet inference (all)": torch.no_grad()(lambda: sampler(pos, batch, ratio=RATIO)),
    }
    return calls, {"samples": num_samples, "unique_matches": unique.numel()}


def render_markdown(report: dict[str, Any]) -> str:
    sizes = report["settings"]["sizes"]
    rows = []
    for stage in STAGES:
        times = [report["times_s"][stage][str(n)] for n in sizes]
        share = times[-1] / report["times_s"]["SampleNet inference (all)"][str(sizes[-1])]
        rows.append(
            [stage]
            + [format_seconds(t) for t in times]
            + [f"{100 * share:.0f}%", format_value(report["slopes"][stage])]
        )
    header = (
        ["stage"]
        + [f"N={n:,}" for n in sizes]
        + [f"share at N={sizes[-1]:,}", f"slope {sizes[0]:,}-{sizes[-1]:,}"]
    )
    counts = ", ".join(
        f"N={n:,}: {c['samples']} samples, {c['unique_matches']} distinct matches"
        for n, c in zip(sizes, report["counts"])
    )
    return "\n\n".join(
        [
            "# SampleNet inference: time per stage against N (B=1, ratio 1/32)",
            metadata_markdown(report["metadata"]),
            f"Neighbour back-end: {report['settings']['backend']}. {counts}. Medians of "
            "torch.utils.benchmark's blocked_autorange after one untimed call. The stages "
            "overlap: `completion: total` includes `completion: distances`; `SampleNet "
            "inference (all)` is the whole forward pass.",
            markdown_table(header, rows),
        ]
    )


def main(argv: Optional[Sequence[str]] = None) -> dict[str, Any]:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=list(SIZES))
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--backend", choices=available_backends(), default=get_backend())
    parser.add_argument("--min-run-time", type=float, default=1.0, help="timed s per stage")
    parser.add_argument("--threads", type=int, help="torch threads (default: torch's choice)")
    parser.add_argument("--smoke", action="store_true", help=f"sizes {SMOKE_SIZES}, short runs")
    parser.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "results"))
    args = parser.parse_args(argv)
    if args.smoke:
        args.sizes, args.min_run_time = list(SMOKE_SIZES), 0.05
    if len(set(args.sizes)) < 2 or min(args.sizes) < 32:
        parser.error("--sizes needs at least two distinct sizes of 32 points or more")
    if args.threads is not None:
        if args.threads < 1:
            parser.error("--threads must be at least 1")
        torch.set_num_threads(args.threads)
    sizes = sorted(set(args.sizes))

    times: dict[str, dict[str, float]] = {stage: {} for stage in STAGES}
    counts = []
    with use_backend(args.backend):
        for n in tqdm(sizes, desc="inference stages", unit="size"):
            calls, info = stage_calls(n, args.device)
            counts.append(info)
            for stage in STAGES:
                times[stage][str(n)] = time_call(calls[stage], args.min_run_time).median
    slopes = {stage: loglog_slope(sizes, [times[stage][str(n)] for n in sizes]) for stage in STAGES}
    report = {
        "metadata": run_metadata("benchmarks/inference_stages.py", argv, args.device),
        "settings": {"sizes": sizes, "ratio": RATIO, "backend": args.backend},
        "counts": counts,
        "times_s": times,
        "slopes": slopes,
    }
    markdown = render_markdown(report)
    write_json(os.path.join(args.out, "inference_stages.json"), report)
    with open(os.path.join(args.out, "inference_stages.md"), "w") as f:
        f.write(markdown + "\n")
    plot_loglog(
        os.path.join(args.out, "inference_stages.png"),
        {"B = 1, ratio 1/32": {s: (sizes, [times[s][str(n)] for n in sizes]) for s in STAGES}},
        "points per cloud N",
        "median time (s)",
        title=f"SampleNet inference stages ({args.device}, {args.backend} back-end)",
        ncols=1,
    )
    print(markdown)
    return report


if __name__ == "__main__":
    main()
