r"""Results of the examples and benchmarks: :obj:`results.json`, a Markdown table, a plot of
the task metric against the sampling ratio (like the paper's Figs. 5, 9 and 11) and
renderings of sampled clouds."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Mapping, Optional, Sequence, Union

import numpy as np

__all__ = ["markdown_table", "write_results", "plot_metric_vs_ratio", "render_clouds"]

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


def plot_metric_vs_ratio(
    data: Mapping[str, Any],
    num_points: int,
    path: PathLike,
    ax: Any = None,
    title: Optional[str] = None,
):
    r"""Plots each sampler's metric against the sampling ratio :math:`n/m` on a log2 axis,
    with the complete-cloud value as a dashed line, and saves it to :obj:`path` (unless an
    :obj:`ax` to draw into is given)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    own = ax is None
    if own:
        fig, ax = plt.subplots(figsize=(6, 4.2))
    for name, row in data["results"].items():
        sizes = sorted(int(m) for m in row)
        ratios = [num_points / m for m in sizes]
        ax.plot(ratios, [row[str(m)] for m in sizes], marker="o", label=name)
    ax.axhline(data["complete"], color="k", ls="--", lw=1, label="complete")
    ax.set_xscale("log", base=2)
    ax.set_xlabel("sampling ratio (n / m)")
    ax.set_ylabel(data["metric"])
    ax.set_title(title or data["task"])
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8)
    if own:
        fig.tight_layout()
        fig.savefig(path, dpi=120)
        plt.close(fig)


def render_clouds(
    panels: Sequence[tuple[str, np.ndarray, Optional[np.ndarray]]],
    path: PathLike,
    elev: float = 20.0,
    azim: float = -60.0,
):
    r"""Renders point clouds side by side and saves a PNG. Each panel is
    :obj:`(title, points [N, 3], highlighted [M, 3] or None)`: the cloud is drawn in light
    grey and the highlighted points (a sample) large and red on top of it."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig = plt.figure(figsize=(3.4 * len(panels), 3.6))
    for i, (title, points, highlight) in enumerate(panels):
        ax = fig.add_subplot(1, len(panels), i + 1, projection="3d")
        # y is "up" in the data sets: draw it as the vertical axis.
        ax.scatter(points[:, 0], points[:, 2], points[:, 1], s=1, c="0.6", alpha=0.5)
        if highlight is not None:
            ax.scatter(highlight[:, 0], highlight[:, 2], highlight[:, 1], s=14, c="tab:red")
        ax.set_title(title, fontsize=9)
        ax.view_init(elev=elev, azim=azim)
        ax.set_axis_off()
        lim = float(np.abs(points).max()) if len(points) else 1.0
        for set_lim in (ax.set_xlim, ax.set_ylim, ax.set_zlim):
            set_lim(-lim, lim)
        ax.set_box_aspect((1, 1, 1), zoom=1.5)
    fig.subplots_adjust(left=0, right=1, bottom=0, top=0.9, wspace=0)
    fig.savefig(path, dpi=120)
    plt.close(fig)
