r"""Where SampleNet inference spends its time as clouds grow: the stages of one
:meth:`SampleNet.forward` in eval mode, timed apart, with the log-log slope of each.

The speed benchmark's scaling target asks that inference time grow linearly in :math:`N`
(slope at most 1.15 from 16k to 1M points at ratio 1/32). This script shows which stage
bounds that slope. The stages, in the order the sampler runs them:

- ``network``: the point MLP, max-pool and head (:meth:`SampleNet.simplify`);
- ``matching``: the nearest input point of every simplified point
  (:func:`tg_samplenet.backend.nearest`, :math:`M` queries into the :math:`N` points);
- ``de-duplication``: :func:`tg_samplenet.matching.first_occurrence` on the matched indices;
- ``completion: distances``: the distance of every input point to the matched set, where
  continued farthest point sampling starts (:math:`N` queries into the matched points);
- ``completion: total``: :func:`tg_samplenet.farthest_point_sampling` continued from the
  matched set, those distances included.

Inputs are those of ``benchmarks/speed.py`` (one cloud uniform on the unit sphere, an
emulated trained SampleNet whose simplified points lie near the surface).

.. code-block:: bash

    python benchmarks/scaling_profile.py                       # 16k, 100k, 1M points
    python benchmarks/scaling_profile.py --smoke --out /tmp/p  # seconds

Writes :obj:`scaling_profile.json`, :obj:`scaling_profile.md` and
:obj:`scaling_profile.png` into :obj:`--out` and prints the Markdown.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from typing import Any

import torch
from tqdm import tqdm

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import common  # noqa: E402
import speed  # noqa: E402

from tg_samplenet.ops.farthest_point import farthest_point_sampling  # noqa: E402
from tg_samplenet.ops.matching import first_occurrence  # noqa: E402
from tg_samplenet.ops.neighbors import get_backend, nearest_index  # noqa: E402

SIZES = (16_000, 100_000, 1_000_000)
SMOKE_SIZES = (1000, 4000)
RATIO = 1 / 32
STAGES = (
    "network",
    "matching",
    "de-duplication",
    "completion: distances",
    "completion: total",
    "SampleNet inference (all)",
)


def stage_calls(num_points: int, device: str) -> tuple[dict[str, Any], dict[str, int]]:
    r"""The call of every stage on one cloud of :obj:`num_points` points, each fed with what
    the previous stages produced (computed once, outside the timing), and the counts."""
    num_samples = speed.samples_per_cloud(num_points, RATIO)
    pos, batch = speed.sphere_clouds(num_points, 1, device=device)
    sampler = speed.emulated_samplenet(num_samples, device=device).eval()
    counts = torch.tensor([num_samples], device=device)
    with torch.no_grad():
        simplified = sampler.simplify(pos, batch, 1).reshape(-1, 3)
    simplified_batch = torch.zeros(simplified.size(0), dtype=torch.long, device=device)
    matched = nearest_index(pos, simplified, batch, simplified_batch)
    unique = matched[first_occurrence(matched)]
    missing = counts - unique.numel()
    unique_batch = torch.zeros_like(unique)

    def no_grad(fn):
        def call():
            with torch.no_grad():
                return fn()

        return call

    calls = {
        "network": no_grad(lambda: sampler.simplify(pos, batch, 1)),
        "matching": lambda: nearest_index(pos, simplified, batch, simplified_batch),
        "de-duplication": lambda: first_occurrence(matched),
        "completion: distances": lambda: nearest_index(pos[unique], pos, unique_batch, batch),
        "completion: total": lambda: farthest_point_sampling(pos, batch, missing, unique),
        "SampleNet inference (all)": no_grad(lambda: sampler(pos, batch, ratio=RATIO)),
    }
    sizes = {"samples": num_samples, "unique_matches": unique.numel()}
    return calls, sizes


def render_markdown(report: dict[str, Any]) -> str:
    sizes = report["settings"]["sizes"]
    rows = []
    for stage in STAGES:
        times = [report["times_s"][stage][str(n)] for n in sizes]
        share = times[-1] / report["times_s"]["SampleNet inference (all)"][str(sizes[-1])]
        slope = report["slopes"][stage]
        rows.append(
            [stage]
            + [common.format_seconds(t) for t in times]
            + [f"{100 * share:.0f}%", "–" if slope is None else f"{slope:.2f}"]
        )
    header = (
        ["stage"]
        + [f"N={n:,}" for n in sizes]
        + [f"share at N={sizes[-1]:,}", f"slope {sizes[0]:,}-{sizes[-1]:,}"]
    )
    counts = ", ".join(
        f"N={n:,}: {c['samples']} samples, {c['unique_matches']} distinct matches"
        for n, c in zip(sizes, report["counts"], strict=True)
    )
    return "\n\n".join(
        [
            "# SampleNet inference: time per stage against N (B=1, ratio 1/32)",
            common.metadata_markdown(report["metadata"]),
            f"Neighbour back-end: {report['settings']['backend']}. {counts}. Medians after "
            "one warm-up. The stages overlap: `completion: total` includes `completion: "
            "distances`; `SampleNet inference (all)` is the whole forward pass.",
            common.markdown_table(header, rows),
        ]
    )


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=list(SIZES))
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--smoke", action="store_true", help=f"sizes {SMOKE_SIZES}, 2 repeats")
    parser.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "results"))
    args = parser.parse_args(argv)
    if args.smoke:
        args.sizes, args.repeats = list(SMOKE_SIZES), 2
    if len(set(args.sizes)) < 2 or min(args.sizes) < 32:
        parser.error("--sizes needs at least two distinct sizes of 32 points or more")
    sizes = sorted(set(args.sizes))

    times: dict[str, dict[str, float]] = {stage: {} for stage in STAGES}
    counts = []
    for n in tqdm(sizes, desc="scaling profile", unit="size"):
        calls, info = stage_calls(n, args.device)
        counts.append(info)
        for stage in STAGES:
            timing = common.time_call(calls[stage], args.device, repeats=args.repeats)
            times[stage][str(n)] = timing.median
    slopes = {
        stage: common.loglog_slope(sizes, [times[stage][str(n)] for n in sizes]) for stage in STAGES
    }
    report = {
        "metadata": common.run_metadata("benchmarks/scaling_profile.py", argv, args.device),
        "settings": {"sizes": sizes, "ratio": RATIO, "backend": get_backend()},
        "counts": counts,
        "times_s": times,
        "slopes": slopes,
    }
    markdown = render_markdown(report)
    common.write_json(os.path.join(args.out, "scaling_profile.json"), report)
    common.write_text(os.path.join(args.out, "scaling_profile.md"), markdown)
    common.plot_loglog(
        os.path.join(args.out, "scaling_profile.png"),
        {"B = 1, ratio 1/32": {s: (sizes, [times[s][str(n)] for n in sizes]) for s in STAGES}},
        "points per cloud N",
        "median time (s)",
        title=f"SampleNet inference stages ({args.device})",
        ncols=1,
    )
    print(markdown)
    return report


if __name__ == "__main__":
    main()
