r"""Shared machinery of the benchmarks: what the run was (machine, package versions, command
line, date), timing with warm-up and medians, peak memory on the CPU and on CUDA, and writers
for JSON, Markdown tables and log-log figures.

Nothing here knows about sampling: a benchmark describes a measurement by a zero-argument
callable (for timing) or by a picklable *builder* and its keyword arguments (for CPU memory,
which runs in a fresh child process).
"""

from __future__ import annotations

import ctypes
import datetime
import gc
import importlib
import importlib.metadata
import json
import math
import multiprocessing
import os
import platform
import re
import shlex
import statistics
import sys
import time
import traceback
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

__all__ = [
    "CPU_MEMORY_METHOD",
    "CUDA_MEMORY_METHOD",
    "Timing",
    "machine_info",
    "package_versions",
    "run_metadata",
    "synchronize",
    "time_call",
    "cuda_peak_memory",
    "cpu_peak_memory",
    "set_memory_preload",
    "loglog_slope",
    "format_seconds",
    "format_bytes",
    "markdown_table",
    "metadata_markdown",
    "write_json",
    "write_text",
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


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _physical_cores() -> int | None:
    try:
        import psutil

        return psutil.cpu_count(logical=False)
    except ImportError:
        return None


def _cgroup_memory_limit() -> int | None:
    # A container's limit can be far below the host's RAM.
    for path in ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"):
        try:
            with open(path) as f:
                text = f.read().strip()
        except OSError:
            continue
        if text.isdigit() and int(text) < 1 << 60:
            return int(text)
    return None


def machine_info(device: str = "cpu") -> dict[str, Any]:
    r"""Describes the machine: CPU model, cores (logical, physical, usable by this process),
    RAM, the operating system, PyTorch's thread count and, for :obj:`device="cuda"`, the GPU.

    Args:
        device (str, optional): The device the benchmark runs on. (default: :obj:`"cpu"`)

    :rtype: :class:`dict`
    """
    try:
        ram = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        ram = None
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:
        usable = os.cpu_count()
    info: dict[str, Any] = {
        "cpu_model": _cpu_model(),
        "logical_cores": os.cpu_count(),
        "physical_cores": _physical_cores(),
        "usable_cores": usable,
        "ram_bytes": ram,
        "memory_limit_bytes": _cgroup_memory_limit(),
        "torch_threads": torch.get_num_threads(),
        "load_average": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
        "platform": platform.platform(),
        "device": device,
    }
    if str(device).startswith("cuda") and torch.cuda.is_available():
        props = torch.cuda.get_device_properties(torch.device(device))
        info["gpu"] = props.name
        info["gpu_memory_bytes"] = props.total_memory
        info["cuda"] = torch.version.cuda
    return info


def package_versions(
    names: Sequence[str] = (
        "torch",
        "torch_geometric",
        "torch_cluster",
        "torch_scatter",
        "pyg_lib",
        "tg_samplenet",
        "numpy",
    ),
) -> dict[str, str | None]:
    r"""Versions of Python and of the given packages, :obj:`None` for those that cannot be
    imported here (an installed wheel built for another PyTorch counts as missing).

    :rtype: :class:`dict`
    """
    versions: dict[str, str | None] = {"python": platform.python_version()}
    for name in names:
        try:
            module = importlib.import_module(name)
        except Exception:  # noqa: BLE001  (a broken extension raises OSError, RuntimeError, ...)
            versions[name] = None
            continue
        version = getattr(module, "__version__", None)
        if version is None:
            try:
                version = importlib.metadata.version(name.replace("_", "-"))
            except importlib.metadata.PackageNotFoundError:
                version = "unknown"
        versions[name] = str(version)
    return versions


def run_metadata(script: str, argv: Sequence[str], device: str = "cpu") -> dict[str, Any]:
    r"""What a results file needs to be reproduced: the exact command line, the date, the
    machine and the package versions.

    Args:
        script (str): The script as the user would call it, e.g.
            :obj:`"benchmarks/speed.py"`.
        argv (Sequence[str]): Its arguments.
        device (str, optional): The device measured. (default: :obj:`"cpu"`)

    :rtype: :class:`dict`
    """
    now = datetime.datetime.now(datetime.timezone.utc)
    return {
        "command": shlex.join(["python", script, *argv]),
        "python_executable": sys.executable,
        "date": now.isoformat(timespec="seconds"),
        "machine": machine_info(device),
        "versions": package_versions(),
    }


def synchronize(device: str):
    r"""Waits for queued GPU work, so that clocks read around a call measure the call."""
    if str(device).startswith("cuda"):
        torch.cuda.synchronize(torch.device(device))


@dataclass
class Timing:
    r"""Wall-clock times of one measured call.

    Attributes:
        median (float): The median of :obj:`times`, in seconds.
        times (list of float): Every timed call, in seconds.
        warmup (int): Untimed calls before them.
        note (str): Why fewer calls were timed than asked, if so.
    """

    median: float
    times: list[float]
    warmup: int
    note: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {"median_s": self.median, "times_s": self.times, "warmup": self.warmup}


def _timed_call(fn: Callable[[], Any], device: str) -> float:
    synchronize(device)
    start = time.perf_counter()
    out = fn()
    synchronize(device)
    elapsed = time.perf_counter() - start
    del out
    return elapsed


def time_call(
    fn: Callable[[], Any],
    device: str = "cpu",
    warmup: int = 1,
    repeats: int = 5,
    budget_s: float = 5.0,
    single_run_above_s: float = 20.0,
) -> Timing:
    r"""Times :obj:`fn` after :obj:`warmup` untimed calls and returns the median over up to
    :obj:`repeats` timed calls, synchronising CUDA before each clock reading.

    The repeats stop early once the timed calls add up to :obj:`budget_s` (at least one is
    timed), so small inputs get many repeats and large ones few. A warm-up call longer than
    :obj:`single_run_above_s` is itself the measurement: first-call overheads are negligible
    at that length, and a second call would double the run.

    Args:
        fn (Callable): The call, without arguments; its result is dropped after each call.
        device (str, optional): :obj:`"cpu"` or a CUDA device. (default: :obj:`"cpu"`)
        warmup (int, optional): Untimed calls first. (default: :obj:`1`)
        repeats (int, optional): Most timed calls. (default: :obj:`5`)
        budget_s (float, optional): Time after which no further repeat starts.
            (default: :obj:`5.0`)
        single_run_above_s (float, optional): See above. (default: :obj:`20.0`)

    :rtype: :class:`Timing`
    """
    if repeats < 1:
        raise ValueError(f"repeats must be at least 1 (got {repeats})")
    for _ in range(warmup):
        elapsed = _timed_call(fn, device)
        if elapsed > single_run_above_s:
            note = f"one call of {elapsed:.1f} s > {single_run_above_s:g} s: timed once"
            return Timing(elapsed, [elapsed], 0, note)
    times: list[float] = []
    while len(times) < repeats:
        times.append(_timed_call(fn, device))
        if sum(times) >= budget_s:
            break
    note = "" if len(times) == repeats else f"{len(times)} of {repeats} repeats (time budget)"
    return Timing(statistics.median(times), times, warmup, note)


def cuda_peak_memory(fn: Callable[[], Any], device: str = "cuda") -> int:
    r"""Peak CUDA memory allocated during one call of :obj:`fn` beyond what was allocated
    before it (inputs and parameters), in bytes; see :data:`CUDA_MEMORY_METHOD`."""
    dev = torch.device(device)
    gc.collect()
    torch.cuda.synchronize(dev)
    torch.cuda.empty_cache()
    torch.cuda.reset_peak_memory_stats(dev)
    base = torch.cuda.memory_allocated(dev)
    out = fn()
    torch.cuda.synchronize(dev)
    peak = torch.cuda.max_memory_allocated(dev)
    del out
    return peak - base


def _status_kib(field_name: str) -> int:
    with open("/proc/self/status") as f:
        match = re.search(rf"^{field_name}:\s+(\d+) kB", f.read(), re.MULTILINE)
    if match is None:
        raise RuntimeError(f"/proc/self/status has no {field_name}")
    return int(match.group(1))


def _libc() -> ctypes.CDLL | None:
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
        if threads is not None:
            torch.set_num_threads(threads)
        fn = builder(**kwargs)
        if warmup_kwargs is None:
            fn()
        else:
            builder(**warmup_kwargs)()
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
    warmup_kwargs: Mapping[str, Any] | None = None,
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


def format_seconds(seconds: float | None) -> str:
    r"""A duration in the unit that reads best (µs, ms or s), three significant digits."""
    if seconds is None or (isinstance(seconds, float) and math.isnan(seconds)):
        return "–"
    for unit, scale in (("s", 1.0), ("ms", 1e-3), ("µs", 1e-6)):
        if seconds >= scale or unit == "µs":
            return f"{seconds / scale:.3g} {unit}"
    return f"{seconds:.3g} s"


def format_bytes(num_bytes: int | None) -> str:
    r"""A size in binary units (KiB, MiB, GiB), three significant digits."""
    if num_bytes is None:
        return "–"
    value = float(num_bytes)
    for unit in ("B", "KiB", "MiB", "GiB"):
        # Below 999.5 so that three significant digits never need an exponent.
        if abs(value) < 999.5 or unit == "GiB":
            return f"{value:.3g} {unit}" if unit != "B" else f"{int(value)} B"
        value /= 1024
    return f"{value:.3g} GiB"


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    r"""A GitHub-flavoured Markdown table; cells are turned into text with :obj:`str`."""
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines)


def metadata_markdown(meta: Mapping[str, Any]) -> str:
    r"""The run description of :func:`run_metadata` as a Markdown list."""
    machine, versions = meta["machine"], meta["versions"]
    cores = f"{machine['logical_cores']} logical"
    if machine.get("physical_cores"):
        cores += f", {machine['physical_cores']} physical"
    cores += f", {machine['usable_cores']} usable, torch threads {machine['torch_threads']}"
    lines = [
        f"- Command: `{meta['command']}`",
        f"- Date: {meta['date']}",
        f"- CPU: {machine['cpu_model']} ({cores})",
        f"- RAM: {format_bytes(machine['ram_bytes'])}"
        + (
            f" (container limit {format_bytes(machine['memory_limit_bytes'])})"
            if machine.get("memory_limit_bytes")
            else ""
        ),
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


def write_json(path: str, data: Any):
    r"""Writes :obj:`data` as indented JSON (NaN becomes :obj:`null`), creating folders."""

    def clean(value: Any) -> Any:
        if isinstance(value, float) and not math.isfinite(value):
            return None
        if isinstance(value, dict):
            return {str(k): clean(v) for k, v in value.items()}
        if isinstance(value, (list, tuple)):
            return [clean(v) for v in value]
        return value

    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "w") as f:
        json.dump(clean(data), f, indent=2, allow_nan=False)
        f.write("\n")


def write_text(path: str, text: str):
    r"""Writes :obj:`text` to :obj:`path`, creating folders."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "w") as f:
        f.write(text if text.endswith("\n") else text + "\n")


@dataclass
class _Panel:
    title: str
    series: dict[str, tuple[list[float], list[float]]] = field(default_factory=dict)


def plot_loglog(
    path: str,
    panels: Mapping[str, Mapping[str, tuple[Sequence[float], Sequence[float]]]],
    xlabel: str,
    ylabel: str,
    title: str = "",
    styles: Mapping[str, Mapping[str, Any]] | None = None,
    ncols: int = 2,
):
    r"""Saves a grid of log-log line plots (matplotlib, Agg back-end) to :obj:`path`.

    Args:
        path (str): The PNG file.
        panels (Mapping): Panel title -> series label -> :obj:`(xs, ys)`.
        xlabel (str): The x-axis label.
        ylabel (str): The y-axis label.
        title (str, optional): The figure title. (default: :obj:`""`)
        styles (Mapping, optional): Series label -> keyword arguments of
            :meth:`~matplotlib.axes.Axes.plot` (colour, line style). (default: :obj:`None`)
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
    styles = styles or {}
    for ax, panel in zip(axes.flat, items, strict=False):
        for label, (xs, ys) in panel.series.items():
            points = [(x, y) for x, y in zip(xs, ys, strict=True) if y is not None and y > 0]
            if points:
                px, py = zip(*points, strict=True)
                ax.plot(px, py, marker="o", label=label, **styles.get(label, {}))
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
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
