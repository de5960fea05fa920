r"""What the examples and benchmarks write: :obj:`results.json` with the run's metadata, JSON
files, Markdown tables (one row per sampler, one column per sample size) and the numbers in
them."""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any, Mapping, Optional, Sequence, Union

import numpy as np

from reproduction.config import PointNet2Profile, Profile
from reproduction.environment import run_metadata

__all__ = [
    "consistency_table",
    "example_metadata",
    "format_bytes",
    "format_seconds",
    "format_value",
    "markdown_table",
    "metadata_markdown",
    "per_class_table",
    "pointnet2_report",
    "results_table",
    "write_json",
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


def seed_summary(values: Sequence[float]) -> dict[str, float]:
    r"""Mean, standard deviation (0 for one value) and range of one measure over seeds."""
    mean = sum(values) / len(values)
    std = math.sqrt(sum((v - mean) ** 2 for v in values) / max(len(values) - 1, 1))
    return dict(mean=mean, std=std, min=min(values), max=max(values))


def pointnet2_report(summary: Mapping[str, Any], profile: PointNet2Profile, where: str) -> str:
    r"""The PointNet++ example's Markdown: per row and first-layer ratio, the accuracy as
    mean +- standard deviation over the seeds (and their range), the milliseconds per
    inference batch and the speed-up over fps at the first ratio."""
    rows = []
    for row, by_ratio in summary["rows"].items():
        for ratio, cell in by_ratio.items():
            acc, ms = cell["accuracy"], cell["ms_per_batch"]
            rows.append([
                row, f"1/{round(1 / float(ratio))}",
                f"{acc['mean']:.4f} +- {acc['std']:.4f}", f"{acc['min']:.4f} - {acc['max']:.4f}",
                f"{ms['mean']:.1f}", f"{summary['reference_ms'] / ms['mean']:.2f}",
            ])  # fmt: skip
    table = markdown_table(
        ["PointNet++", "first layer keeps", "accuracy (mean +- std)", "range", "ms / batch",
         "speed-up"],
        rows,
    )  # fmt: skip
    seeds = ", ".join(str(s) for s in summary["seeds"])
    return (
        f"PointNet++ on {where}, {profile.num_points} points, batch {profile.batch_size}, "
        f"width {profile.task_width}, trained in {summary['training_dtype']}; "
        f"seeds {seeds}. Inference time (float32) of one batch in eval "
        f"mode (the sampler included; fps models with {summary['timing_fps']}); speed-up "
        f"against fps with the first layer keeping 1/2.\n\n{table}\n"
    )


def write_json(path: PathLike, data: Any):
    r"""Writes :obj:`data` as indented JSON (NaN and infinities become :obj:`null`),
    creating the folder."""

    def clean(value: Any) -> Any:
        if isinstance(value, float) and not math.isfinite(value):
            return None
        if isinstance(value, dict):
            return {str(k): clean(v) for k, v in value.items()}
        if isinstance(value, (list, tuple)):
            return [clean(v) for v in value]
        return value

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(clean(data), indent=2, allow_nan=False) + "\n")


def format_value(value: Optional[float]) -> str:
    r"""A number with three significant digits, or :obj:`"–"` for :obj:`None`."""
    return "–" if value is None else f"{value:.3g}"


def format_seconds(seconds: Optional[float]) -> str:
    r"""A duration in the unit that reads best (s, ms or µs), three significant digits."""
    if seconds is None or math.isnan(seconds):
        return "–"
    for unit, scale in (("s", 1.0), ("ms", 1e-3)):
        if seconds >= scale:
            return f"{seconds / scale:.3g} {unit}"
    return f"{seconds / 1e-6:.3g} µs"


def format_bytes(num_bytes: Optional[float]) -> str:
    r"""A size in binary units (B, KiB, MiB, GiB) with three significant digits, or
    :obj:`"–"` for :obj:`None`."""
    if num_bytes is None:
        return "–"
    value = float(num_bytes)
    for unit in ("B", "KiB", "MiB"):
        # Below 999.5 so that three significant digits never need an exponent.
        if abs(value) < 999.5:
            return f"{int(value)} B" if unit == "B" else f"{value:.3g} {unit}"
        value /= 1024
    return f"{value:.3g} GiB"


def metadata_markdown(meta: Mapping[str, Any]) -> str:
    r"""The run description of :func:`~reproduction.environment.run_metadata` as a Markdown
    list (command, date, CPU, RAM, platform, load average, GPU, versions)."""
    machine, versions = meta["machine"], meta["versions"]
    cores = f"{machine['logical_cores']} logical"
    if machine.get("physical_cores"):
        cores += f", {machine['physical_cores']} physical"
    cores += f", {machine['usable_cores']} usable, torch threads {machine['torch_threads']}"
    ram = f"- RAM: {format_bytes(machine['ram_bytes'])}"
    if machine.get("memory_limit_bytes"):
        ram += f" (container limit {format_bytes(machine['memory_limit_bytes'])})"
    lines = [
        f"- Command: `{meta['command']}`",
        f"- Date: {meta['date']}",
        f"- CPU: {machine['cpu_model']} ({cores})",
        ram,
        f"- Platform: {machine['platform']}",
    ]
    if machine.get("load_average"):
        load = ", ".join(f"{x:.2f}" for x in machine["load_average"])
        lines.append(f"- Load average (1, 5, 15 min) at the start: {load}")
    if "gpu" in machine:
        lines.append(
            f"- GPU: {machine['gpu']} ({format_bytes(machine['gpu_memory_bytes'])}, "
            f"CUDA {machine['cuda']})"
        )
    lines.append(
        "- Versions: "
        + ", ".join(f"{k} {v if v else 'not installed'}" for k, v in versions.items())
    )
    return "\n".join(lines)
