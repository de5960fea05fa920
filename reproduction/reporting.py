r"""Results of the examples and benchmarks: :obj:`results.json` with the run's metadata and
Markdown tables (one row per sampler, one column per sample size)."""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any, Mapping, Optional, Sequence, Union

import numpy as np

from reproduction.config import Profile
from reproduction.environment import run_metadata

__all__ = [
    "consistency_table",
    "example_metadata",
    "markdown_table",
    "per_class_table",
    "results_table",
    "write_results",
]

PathLike = Union[str, os.PathLike]


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    r"""A GitHub Markdown table; floats are printed with 4 significant digits."""

    def cell(value: Any) -> str:
        if isinstance(value, float):
            return "–" if np.isnan(value) else f"{value:.4g}"
        return str(value)

    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def results_table(results: Mapping[str, Any], num_points: Optional[int] = None) -> str:
    r"""The Markdown table of a :obj:`results.json` dict: one row per sampler, one column
    per sample size :math:`m` (with the sampling ratio :math:`n/m` when :obj:`num_points`
    is given), and the complete-cloud value."""
    sizes = sorted({int(m) for row in results["results"].values() for m in row}, reverse=True)
    header = ["sampler"] + [
        f"m={m}" + (f" (SR {num_points / m:g})" if num_points else "") for m in sizes
    ]
    rows = [
        [name] + [float(row.get(str(m), row.get(m, float("nan")))) for m in sizes]
        for name, row in results["results"].items()
    ]
    arrow = "higher is better" if results["higher_is_better"] else "lower is better"
    title = f"{results['task']}: {results['metric']} ({arrow}); complete clouds: "
    return title + f"{results['complete']:.4g}\n\n" + markdown_table(header, rows)


def write_results(
    out_dir: PathLike,
    task: str,
    metric: str,
    higher_is_better: bool,
    complete: float,
    results: Mapping[str, Mapping[int, float]],
    num_points: Optional[int] = None,
    **extra: Any,
) -> dict[str, Any]:
    r"""Writes :obj:`results.json` (:obj:`{"task", "metric", "higher_is_better", "complete",
    "results": {sampler: {m: value}}}` plus :obj:`extra` keys) and :obj:`results.md` into
    :obj:`out_dir`, and returns the dict."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    data = {
        "task": task,
        "metric": metric,
        "higher_is_better": higher_is_better,
        "complete": float(complete),
        "results": {
            name: {str(int(m)): float(v) for m, v in row.items()} for name, row in results.items()
        },
        **extra,
    }
    (out_dir / "results.json").write_text(json.dumps(data, indent=2) + "\n")
    (out_dir / "results.md").write_text(results_table(data, num_points) + "\n")
    return data


def example_metadata(
    script: str,
    argv: Optional[Sequence[str]],
    args: argparse.Namespace,
    profile: Profile,
    started: float,
) -> dict[str, Any]:
    r"""What :obj:`results.json` records of an example's run: command, date, machine and
    versions (:func:`~reproduction.environment.run_metadata`), and the profile's
    name and settings, the data set, the split evaluated on (:obj:`"val"` with
    :obj:`--val-fraction`), seed, device and the seconds since :obj:`started`."""
    meta = run_metadata(script, sys.argv[1:] if argv is None else list(argv), str(args.device))
    meta.update(
        profile=args.profile,
        settings=json.loads(json.dumps(asdict(profile))),
        dataset=args.dataset,
        evaluated_on="test" if getattr(args, "val_fraction", None) is None else "val",
        val_fraction=getattr(args, "val_fraction", None),
        seed=args.seed,
        device=str(args.device),
        seconds=round(time.time() - started, 1),
    )
    return meta


def per_class_table(per_class: Mapping[str, Any], classes: Sequence[str], m: int) -> str:
    r"""The per-class values :obj:`{sampler: {m: {class: value}}}` of every sampler at size
    :obj:`m` as a Markdown table."""
    rows = [
        [name] + [row[str(m)][c] for c in classes]
        for name, row in per_class.items()
        if str(m) in row
    ]
    return f"NRE per class at m={m}:\n\n" + markdown_table(["sampler", *classes], rows)


def consistency_table(consistency: Mapping[str, Mapping[str, float]], num_points: int) -> str:
    r"""The sampling consistency :obj:`{sampler: {m: value}}` of registration as a Markdown
    table (zero on complete clouds by construction)."""
    table = results_table(
        {
            "task": "sampling consistency",
            "metric": "Chamfer distance",
            "higher_is_better": False,
            "complete": 0.0,
            "results": consistency,
        },
        num_points,
    )
    return table.replace("complete clouds: 0", "complete clouds: 0 by construction")
