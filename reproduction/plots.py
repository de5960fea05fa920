r"""Plots of the examples and benchmarks: the task metric against the sampling ratio (like
the paper's Figs. 5, 9 and 11), renderings of sampled clouds (Figs. 7, 10 and 12), training
curves, and log-log grids of the benchmarks' times."""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any, Callable, Mapping, Optional, Sequence, Union

import numpy as np
import torch
from torch import Tensor

from reproduction.tasks.rotations import rotate_points

__all__ = [
    "plot_loglog",
    "plot_metric_vs_ratio",
    "plot_runs_side_by_side",
    "plot_accuracy_against_time",
    "render_clouds",
    "render_registration",
    "render_samples",
]

PathLike = Union[str, os.PathLike]
IndexSampler = Callable[[Tensor, Tensor, int], Tensor]


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


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
    plt = _pyplot()
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


def plot_runs_side_by_side(
    runs: Mapping[str, Mapping[str, Any]],
    path: PathLike,
    samplers: Optional[Sequence[str]] = None,
):
    r""":func:`plot_metric_vs_ratio` of several :obj:`results.json` dicts in one figure, one
    panel each (titled with its key and data set), on a shared metric axis, keeping only
    the rows :obj:`samplers` when given; saved to :obj:`path`."""
    plt = _pyplot()
    fig, axes = plt.subplots(1, len(runs), figsize=(5.5 * len(runs), 4.2), sharey=True)
    for ax, (name, run) in zip(np.atleast_1d(axes), runs.items(), strict=True):
        rows = run["results"]
        if samplers is not None:
            rows = {s: rows[s] for s in samplers if s in rows}
        title = f"{name} ({run.get('dataset', run['task'])})"
        plot_metric_vs_ratio(
            {**run, "results": rows}, run["settings"]["num_points"], path, ax, title
        )
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
    plt = _pyplot()
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


def render_samples(
    pos: Tensor,
    samplers: Sequence[tuple[str, IndexSampler]],
    m: int,
    path: PathLike,
    reconstruct: Optional[Callable[[Tensor, Tensor], Tensor]] = None,
):
    r"""One cloud :obj:`pos` :obj:`[n, 3]` and its :obj:`m`-point samples, one panel per
    :obj:`(label, sample(pos, batch, m) -> index)`; with :obj:`reconstruct(pos, batch) ->
    points`, each sample (and the complete cloud) is followed by its reconstruction (paper
    Fig. 12)."""
    batch = torch.zeros(pos.size(0), dtype=torch.long, device=pos.device)
    full = pos.cpu().numpy()
    panels: list[tuple[str, np.ndarray, Optional[np.ndarray]]] = [("input", full, None)]
    with torch.no_grad():
        if reconstruct is not None:
            panels.append(("reconstruction of the input", _numpy(reconstruct(pos, batch)), None))
        for label, sample in samplers:
            index = sample(pos, batch, m)
            panels.append((f"{label}, {m} points", full, pos[index].cpu().numpy()))
            if reconstruct is not None:
                recon = _numpy(reconstruct(pos[index], batch[index]))
                panels.append((f"reconstruction from {label}", recon, None))
    render_clouds(panels, path)


def _numpy(points: Tensor) -> np.ndarray:
    return points.detach().cpu().numpy()


def render_registration(
    template: Tensor,
    source: Tensor,
    estimate: Callable[[Tensor, Tensor], Tensor],
    samplers: Sequence[tuple[str, IndexSampler]],
    m: int,
    path: PathLike,
):
    r"""One registration pair before and after registration from each sampler's samples
    (paper Fig. 10): the template in grey, the source in light blue, the sampled template
    points in orange and the sampled source points in magenta; after registration the
    source is rotated back by the rotation :obj:`estimate(template_sample, source_sample)`
    (:obj:`[3, 3]`, template to source) returns."""
    plt = _pyplot()
    batch = torch.zeros(template.size(0), dtype=torch.long, device=template.device)
    fig = plt.figure(figsize=(6.4, 3.2 * len(samplers)))
    fig.suptitle(
        "grey: template, blue: source, orange / magenta: their samples", fontsize=9, y=0.99
    )
    lim = float(template.abs().max()) * 0.8
    with torch.no_grad():
        for r, (name, sample) in enumerate(samplers):
            t_pos = template[sample(template, batch, m)]
            s_pos = source[sample(source, batch, m)]
            back = estimate(t_pos, s_pos).transpose(0, 1)  # source -> template frame
            for c, (title, cloud, sampled) in enumerate(
                (
                    ("before", source, s_pos),
                    ("after", rotate_points(source, back), rotate_points(s_pos, back)),
                )
            ):
                ax = fig.add_subplot(len(samplers), 2, 2 * r + c + 1, projection="3d")
                for points, color, size in (
                    (template, "0.6", 1),
                    (cloud, "tab:blue", 1),
                    (t_pos, "tab:orange", 14),
                    (sampled, "m", 14),
                ):
                    p = _numpy(points)
                    ax.scatter(p[:, 0], p[:, 2], p[:, 1], s=size, c=color, alpha=0.6)
                ax.set_title(f"{name}, {m} points: {title} registration", fontsize=9)
                ax.set_axis_off()
                for set_lim in (ax.set_xlim, ax.set_ylim, ax.set_zlim):
                    set_lim(-lim, lim)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def plot_loglog(
    path: PathLike,
    panels: Mapping[str, Mapping[str, tuple[Sequence[float], Sequence[Optional[float]]]]],
    xlabel: str,
    ylabel: str,
    title: str = "",
    ncols: int = 2,
):
    r"""Saves a grid of log-log line plots to :obj:`path`.

    Args:
        path (str): The PNG file.
        panels (Mapping): Panel title -> series label -> :obj:`(xs, ys)`; missing values
            (:obj:`None`) are left out.
        xlabel (str): The x-axis label.
        ylabel (str): The y-axis label.
        title (str, optional): The figure title. (default: :obj:`""`)
        ncols (int, optional): Panels per row. (default: :obj:`2`)
    """
    plt = _pyplot()
    ncols = max(1, min(ncols, len(panels)))
    nrows = max(1, math.ceil(len(panels) / ncols))
    fig, axes = plt.subplots(nrows, ncols, figsize=(6 * ncols, 4.5 * nrows), squeeze=False)
    for ax, (name, series) in zip(axes.flat, panels.items()):
        for label, (xs, ys) in series.items():
            points = sorted((x, y) for x, y in zip(xs, ys, strict=True) if y is not None and y > 0)
            if points:
                ax.plot(*zip(*points, strict=True), marker="o", label=label)
        ax.set(xscale="log", yscale="log", title=name, xlabel=xlabel, ylabel=ylabel)
        ax.grid(True, which="both", alpha=0.3)
        if ax.has_data():
            ax.legend(fontsize="small")
    for ax in list(axes.flat)[len(panels) :]:
        ax.set_visible(False)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_accuracy_against_time(summary: Mapping[str, Any], path: PathLike):
    r"""The PointNet++ example's figure, saved to :obj:`path`: each row's accuracy (mean and
    standard deviation over the seeds) against its milliseconds per inference batch, one
    marker per first-layer ratio."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6.4, 4.4))
    for row, by_ratio in summary["rows"].items():
        cells = list(by_ratio.items())
        ax.errorbar(
            [c["ms_per_batch"]["mean"] for _, c in cells],
            [c["accuracy"]["mean"] for _, c in cells],
            yerr=[c["accuracy"]["std"] for _, c in cells],
            marker="o", capsize=3, label=row,
        )  # fmt: skip
        for ratio, c in cells:
            label = f"1/{round(1 / float(ratio))}"
            ax.annotate(label, (c["ms_per_batch"]["mean"], c["accuracy"]["mean"]), fontsize=7)
    ax.set(xlabel="ms per inference batch", ylabel="accuracy", title="PointNet++")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
