r"""What the benchmarks share: timing with :mod:`torch.utils.benchmark`, peak memory on the
CPU and on CUDA, one guarded measurement, the farthest point samplers a user can install
(peers, optional), the near-surface inputs that stand in for a trained sampler, log-log
slopes, targets, and writers for JSON and log-log figures.

A measurement is a zero-argument callable (for timing) or a picklable *builder* and its
keyword arguments (for CPU memory, which runs in a fresh child process)."""

from __future__ import annotations

import ctypes
import gc
import importlib
import json
import math
import multiprocessing
import os
import re
import statistics
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, Optional, Sequence, Union

import numpy as np
import torch
import torch.utils.benchmark as benchmark
from torch import Tensor

from reproduction.baselines import random_sample
from reproduction.reporting import markdown_table
from tg_samplenet.nn.sampler import SampleNet
from tg_samplenet.ops.batch import cloud_ptr, sample_counts

__all__ = [
    "CPU_MEMORY_METHOD",
    "CUDA_MEMORY_METHOD",
    "Timing",
    "time_call",
    "cuda_peak_memory",
    "cpu_peak_memory",
    "set_memory_preload",
    "Unavailable",
    "measure",
    "predicted_time",
    "PEERS",
    "peer_fps",
    "ratio_for_count",
    "loglog_slope",
    "evaluate_targets",
    "targets_table",
    "format_seconds",
    "format_value",
    "surface_sampler",
    "near_surface_queries",
    "write_json",
    "plot_loglog",
]

CPU_MEMORY_METHOD = (
    "peak resident set size of a fresh child process per measurement, forked from a "
    "multiprocessing fork server that has only imported the packages: the child builds the "
    "inputs, runs a warm-up (the same call, or a small one for long calls), resets the "
    "kernel's high-water mark (/proc/self/clear_refs = 5), runs the call once and reports "
    "VmHWM minus VmRSS just before the call (so inputs and imports are excluded, outputs "
    "included). glibc's mmap threshold is fixed at 128 KiB in the child so that freed "
    "buffers leave the RSS instead of being reused unseen."
)
CUDA_MEMORY_METHOD = (
    "torch.cuda.max_memory_allocated() during one call minus torch.cuda.memory_allocated() "
    "before it (after torch.cuda.reset_peak_memory_stats())"
)

# mallopt(3) parameter numbers of glibc.
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3


@dataclass
class Timing:
    r"""Wall-clock times of one measured call.

    Attributes:
        median (float): The median time of one call, in seconds.
        times (list of float): Time of one call in each timed block, in seconds.
        calls_per_block (int): Calls per timed block (fast calls run many to a block).
        note (str): Why the call was timed once, if so.
    """

    median: float
    times: list[float]
    calls_per_block: int = 1
    note: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {
            "time_s": self.median,
            "times_s": self.times,
            "calls_per_block": self.calls_per_block,
        }


def time_call(
    fn: Callable[[], Any],
    min_run_time: float = 1.0,
    single_run_above_s: float = 5.0,
) -> Timing:
    r"""Times :obj:`fn` with :meth:`torch.utils.benchmark.Timer.blocked_autorange` (which
    synchronises the accelerator around each block) after one untimed call, and returns the
    median.

    A first call longer than :obj:`single_run_above_s` is itself the measurement: first-call
    overheads are negligible at that length, and autoranging would run it twice more.

    Args:
        fn (Callable): The call, without arguments.
        min_run_time (float, optional): Seconds of timed blocks to collect.
            (default: :obj:`1.0`)
        single_run_above_s (float, optional): See above. (default: :obj:`5.0`)

    :rtype: :class:`Timing`
    """
    start = benchmark.timer()
    fn()
    first = benchmark.timer() - start
    if first > single_run_above_s:
        note = f"one call of {first:.1f} s > {single_run_above_s:g} s: timed once"
        return Timing(first, [first], 1, note)
    timer = benchmark.Timer(stmt="fn()", globals={"fn": fn}, num_threads=torch.get_num_threads())
    measurement = timer.blocked_autorange(min_run_time=min_run_time)
    return Timing(measurement.median, list(measurement.times), measurement.number_per_run)


def cuda_peak_memory(fn: Callable[[], Any], device: Union[str, torch.device] = "cuda") -> int:
    r"""Peak CUDA memory allocated during one call of :obj:`fn` beyond what was allocated
    before it (inputs and parameters), in bytes; see :data:`CUDA_MEMORY_METHOD`."""
    device = torch.device(device)
    gc.collect()
    torch.cuda.synchronize(device)
    torch.cuda.empty_cache()
    torch.cuda.reset_peak_memory_stats(device)
    base = torch.cuda.memory_allocated(device)
    out = fn()
    torch.cuda.synchronize(device)
    peak = torch.cuda.max_memory_allocated(device)
    del out
    return peak - base


def _status_kib(name: str) -> int:
    with open("/proc/self/status") as f:
        match = re.search(rf"^{name}:\s+(\d+) kB", f.read(), re.MULTILINE)
    if match is None:
        raise RuntimeError(f"/proc/self/status has no {name}")
    return int(match.group(1))


def _libc() -> Optional[ctypes.CDLL]:
    try:
        return ctypes.CDLL("libc.so.6")
    except OSError:
        return None


def _memory_child(conn, builder, kwargs, warmup_kwargs, threads):
    # Runs in the forked child: never returns normally to the fork server.
    try:
        libc = _libc()
        if libc is not None:
            libc.mallopt(_M_MMAP_THRESHOLD, 128 * 1024)
            libc.mallopt(_M_TRIM_THRESHOLD, 128 * 1024)
        torch.set_num_threads(threads)
        fn = builder(**kwargs)
        (fn if warmup_kwargs is None else builder(**warmup_kwargs))()
        gc.collect()
        if libc is not None:
            libc.malloc_trim(0)
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")  # resets VmHWM to the current RSS
        base = _status_kib("VmRSS")
        out = fn()
        peak = _status_kib("VmHWM")
        del out
        conn.send(("ok", (peak - base) * 1024))
    except BaseException:  # noqa: BLE001  (report everything to the parent)
        conn.send(("error", traceback.format_exc(limit=4)))
    finally:
        conn.close()


_PRELOAD: list[str] = ["torch"]


def set_memory_preload(modules: Sequence[str]):
    r"""Modules the fork server of :func:`cpu_peak_memory` imports once, so that each child
    starts in a fraction of a second. Call before the first measurement."""
    _PRELOAD[:] = list(modules)


def cpu_peak_memory(
    builder: Callable[..., Callable[[], Any]],
    kwargs: Mapping[str, Any],
    warmup_kwargs: Optional[Mapping[str, Any]] = None,
    timeout_s: float = 900.0,
) -> int:
    r"""Peak extra resident memory of one call, in bytes, measured in a fresh child process
    as :data:`CPU_MEMORY_METHOD` describes (Linux only).

    Args:
        builder (Callable): A picklable top-level function; :obj:`builder(**kwargs)` creates
            the inputs and returns the zero-argument call to measure.
        kwargs (Mapping): Its arguments (picklable).
        warmup_kwargs (Mapping, optional): Arguments of a smaller warm-up call, for calls too
            long to run twice; by default the measured call itself runs once first.
            (default: :obj:`None`)
        timeout_s (float, optional): Give up after this long. (default: :obj:`900.0`)

    :rtype: :class:`int`
    """
    if not os.path.exists("/proc/self/clear_refs"):
        raise RuntimeError("CPU peak memory needs Linux's /proc/self/clear_refs")
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(_PRELOAD)
    receiver, sender = context.Pipe(duplex=False)
    process = context.Process(
        target=_memory_child,
        args=(sender, builder, dict(kwargs), warmup_kwargs, torch.get_num_threads()),
    )
    process.start()
    sender.close()
    try:
        if not receiver.poll(timeout_s):
            process.kill()
            raise RuntimeError(f"memory measurement timed out after {timeout_s:g} s")
        status, value = receiver.recv()
    except EOFError:
        process.join()
        raise RuntimeError(
            f"the child process died (exit code {process.exitcode}; out of memory?)"
        ) from None
    finally:
        receiver.close()
        process.join()
    if status != "ok":
        raise RuntimeError(f"the child process failed:\n{value}")
    return int(value)


class Unavailable(RuntimeError):
    r"""Raised by a builder whose measurement cannot run here (a peer that is not installed,
    or that does not run on this device): :func:`measure` reports it as skipped."""


def measure(
    builder: Callable[..., Callable[[], Any]],
    kwargs: Mapping[str, Any],
    device: str = "cpu",
    memory: bool = False,
    min_run_time: float = 1.0,
    small_kwargs: Optional[Mapping[str, Any]] = None,
) -> dict[str, Any]:
    r"""Times :obj:`builder(**kwargs)` with :func:`time_call` and, with :obj:`memory`,
    measures its peak memory (:func:`cuda_peak_memory` on CUDA, else
    :func:`cpu_peak_memory`, whose child warms up on :obj:`small_kwargs` when one call takes
    more than 2 s). Never raises: returns :obj:`{"status": "ok" | "skipped" | "error",
    "note", "time_s", ..., "peak_memory_bytes"}`.
    """
    row: dict[str, Any] = {"status": "ok", "note": ""}
    try:
        fn = builder(**kwargs)
        timing = time_call(fn, min_run_time=min_run_time)
        row.update(timing.to_dict(), note=timing.note)
        if memory and str(device).startswith("cuda"):
            row["peak_memory_bytes"] = cuda_peak_memory(fn, device)
        del fn
        gc.collect()
        if memory and not str(device).startswith("cuda"):
            warm = small_kwargs if timing.median > 2 else None
            row["peak_memory_bytes"] = cpu_peak_memory(builder, kwargs, warm)
    except Unavailable as reason:
        row.update(status="skipped", note=str(reason))
    except Exception as error:  # noqa: BLE001  (a failed case must not stop the run)
        row.update(status="error", note=f"{type(error).__name__}: {error}".splitlines()[0])
    return row


def predicted_time(
    history: Sequence[tuple[int, float]], num_points: int, default_slope: float = 1.0
) -> Optional[float]:
    r"""The time of a case at :obj:`num_points`, extrapolated from :obj:`history`, the
    :obj:`(N, seconds)` of the same series at smaller :math:`N`: with the log-log slope of
    its last two sizes clipped to [1, 2], or with :obj:`default_slope` from one size;
    :obj:`None` without history."""
    points = sorted(p for p in history if p[0] < num_points)
    if not points:
        return None
    slope = default_slope
    if len(points) >= 2:
        slope = min(max(loglog_slope(*zip(*points[-2:])), 1.0), 2.0)
    return points[-1][1] * (num_points / points[-1][0]) ** slope


PEERS = {
    "pyg_fps": "torch_geometric.nn.fps",
    "pyg_lib_fps": "pyg-lib fps",
    "fpsample": "fpsample bucket FPS (kd-line, h=7)",
    "torch_quickfps": "torch-quickfps (h=7)",
    "torch_fps": "torch-fps",
}


def ratio_for_count(num_points: int, num_samples: int) -> float:
    r"""A ratio for which :func:`torch_geometric.nn.fps` keeps exactly :obj:`num_samples`
    of :obj:`num_points` points (its product is taken in float32, so the ratio is stepped
    in float32 units).

    :rtype: :class:`float`
    """
    ratio = torch.tensor(num_samples / num_points, dtype=torch.float32)
    for _ in range(64):
        got = int(sample_counts(torch.tensor([num_points]), ratio=float(ratio)))
        if got == num_samples:
            return float(ratio)
        ratio = torch.nextafter(ratio, torch.tensor(0.0 if got > num_samples else 1.0))
    raise ValueError(f"no float ratio gives {num_samples} of {num_points} points")


def _import(name: str):
    try:
        return importlib.import_module(name)
    except Exception as error:  # noqa: BLE001  (a broken extension raises OSError, ...)
        raise Unavailable(f"{name} does not import here ({type(error).__name__})") from None


def peer_fps(
    name: str, pos: Tensor, batch: Tensor, num_clouds: int, num_samples: int
) -> Callable[[], Any]:
    r"""The call of a farthest point sampler that users can install instead (see
    :data:`PEERS`), taking :obj:`num_samples` points from each of :obj:`num_clouds` clouds of
    equal size; the call returns indices into :obj:`pos`, grouped by cloud. The inputs are
    converted outside the call. Raises :class:`Unavailable` when the peer does not import
    or cannot run on the device.

    Args:
        name (str): A key of :data:`PEERS`.
        pos (torch.Tensor): Points :obj:`[B * n, 3]`, grouped by cloud.
        batch (torch.Tensor): Their sorted batch vector.
        num_clouds (int): :math:`B`.
        num_samples (int): Points to take per cloud.
    """
    n = pos.size(0) // num_clouds
    dense, ratio = pos.view(num_clouds, n, 3), ratio_for_count(n, num_samples)
    if name == "pyg_fps":
        from torch_geometric.nn import fps

        try:  # PyG 2.7 without torch_cluster raises AttributeError, 2.8 without pyg-lib ImportError
            fps(pos[:4], batch[:4], ratio=0.5, random_start=False)
        except Exception as error:  # noqa: BLE001
            raise Unavailable(f"needs torch_cluster or pyg-lib ({type(error).__name__})") from None
        return lambda: fps(pos, batch, ratio=ratio, random_start=False)
    if name == "pyg_lib_fps":
        _import("pyg_lib")
        ptr = cloud_ptr(batch, num_clouds)
        return lambda: torch.ops.pyg.fps(pos, ptr, ratio, False)
    if name == "fpsample":
        fpsample = _import("fpsample")
        if pos.device.type != "cpu":
            raise Unavailable("fpsample runs on the CPU only")
        clouds = list(dense.numpy())

        def loop_over_clouds():
            return np.concatenate(
                [
                    fpsample.bucket_fps_kdline_sampling(cloud, num_samples, h=7, start_idx=0)
                    + i * n
                    for i, cloud in enumerate(clouds)
                ]
            )

        return loop_over_clouds
    offsets = torch.arange(num_clouds, device=pos.device).view(-1, 1) * n
    if name == "torch_quickfps":
        quickfps = _import("torch_quickfps")
        return lambda: (
            quickfps.sample(dense, num_samples, h=7, return_points=False) + offsets
        ).view(-1)
    if name == "torch_fps":
        torch_fps = _import("torch_fps")
        mask = torch.ones(num_clouds, n, dtype=torch.bool, device=pos.device)
        return lambda: (torch_fps.farthest_point_sampling(dense, mask, num_samples) + offsets).view(
            -1
        )
    raise ValueError(f"unknown peer {name!r}; choose one of {sorted(PEERS)}")


def loglog_slope(xs: Sequence[float], ys: Sequence[float]) -> float:
    r"""Least-squares slope of :math:`\log y` against :math:`\log x`: the exponent
    :math:`a` of :math:`y \propto x^a`. Needs at least two distinct :math:`x`.

    :rtype: :class:`float`
    """
    if len(xs) != len(ys) or len(set(xs)) < 2:
        raise ValueError("loglog_slope needs at least two distinct x values, one y each")
    lx = [math.log(x) for x in xs]
    ly = [math.log(y) for y in ys]
    mx, my = statistics.fmean(lx), statistics.fmean(ly)
    covariance = sum((a - mx) * (b - my) for a, b in zip(lx, ly, strict=True))
    return covariance / sum((a - mx) ** 2 for a in lx)


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


def surface_sampler(
    num_out_points: int,
    k: int = 7,
    noise: float = 0.01,
    seed: int = 0,
    progressive: bool = False,
) -> SampleNet:
    r"""A :class:`~tg_samplenet.nn.sampler.SampleNet` whose simplified points lie near the
    unit sphere, as a trained sampler's lie near the surface of the shapes it samples (a
    random network's collapsed output would leave nearly all the work to the farthest point
    completion). It is untrained except for its last layer, whose weight is zero and whose
    bias holds :obj:`num_out_points` points uniform on the unit sphere moved by
    :math:`\mathcal{N}(0, \text{noise}^2)` per coordinate. The network costs the same
    whatever its weights."""
    torch.manual_seed(seed)
    sampler = SampleNet(num_out_points, k=k, progressive=progressive)
    generator = torch.Generator().manual_seed(seed + 2)
    target = torch.randn(num_out_points, 3, generator=generator)
    target = target / target.norm(dim=1, keepdim=True)
    target = target + noise * torch.randn(num_out_points, 3, generator=generator)
    last = sampler.head.lins[-1]
    with torch.no_grad():
        last.weight.zero_()
        last.bias.copy_(target.flatten())
    return sampler


def near_surface_queries(
    pos: Tensor, batch: Tensor, num_samples: int, noise: float = 0.01, seed: int = 0
) -> tuple[Tensor, Tensor]:
    r""":obj:`num_samples` points per cloud drawn at random from :obj:`pos` and moved by
    :math:`\mathcal{N}(0, \text{noise}^2)` per coordinate: simplified points near the
    surface, as a trained sampler gives. Returns :obj:`(query, query_batch)`."""
    generator = torch.Generator().manual_seed(seed + 1)
    index = random_sample(pos.cpu(), batch.cpu(), num_samples, generator).to(pos.device)
    jitter = noise * torch.randn(index.numel(), 3, generator=generator).to(pos.device)
    return pos[index] + jitter, batch[index]


def write_json(path: Union[str, os.PathLike], data: Any):
    r"""Writes :obj:`data` as indented JSON (NaN and infinities become :obj:`null`)."""

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


@dataclass
class _Panel:
    title: str
    series: dict[str, tuple[list[float], list[float]]] = field(default_factory=dict)


def plot_loglog(
    path: Union[str, os.PathLike],
    panels: Mapping[str, Mapping[str, tuple[Sequence[float], Sequence[Optional[float]]]]],
    xlabel: str,
    ylabel: str,
    title: str = "",
    ncols: int = 2,
):
    r"""Saves a grid of log-log line plots (matplotlib, Agg back-end) to :obj:`path`.

    Args:
        path (str): The PNG file.
        panels (Mapping): Panel title -> series label -> :obj:`(xs, ys)`; missing values
            (:obj:`None`) are left out.
        xlabel (str): The x-axis label.
        ylabel (str): The y-axis label.
        title (str, optional): The figure title. (default: :obj:`""`)
        ncols (int, optional): Panels per row. (default: :obj:`2`)
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    items = [
        _Panel(name, {k: (list(x), list(y)) for k, (x, y) in s.items()})
        for name, s in panels.items()
    ]
    ncols = max(1, min(ncols, len(items)))
    nrows = max(1, math.ceil(len(items) / ncols))
    fig, axes = plt.subplots(nrows, ncols, figsize=(6 * ncols, 4.5 * nrows), squeeze=False)
    for ax, panel in zip(axes.flat, items):
        for label, (xs, ys) in panel.series.items():
            points = sorted((x, y) for x, y in zip(xs, ys, strict=True) if y is not None and y > 0)
            if points:
                ax.plot(*zip(*points, strict=True), marker="o", label=label)
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_title(panel.title)
        ax.set_xlabel(xlabel)
        ax.set_ylabel(ylabel)
        ax.grid(True, which="both", alpha=0.3)
        if ax.has_data():
            ax.legend(fontsize="small")
    for ax in list(axes.flat)[len(items) :]:
        ax.set_visible(False)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
