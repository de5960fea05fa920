r"""How the benchmarks measure: the time of a call with :mod:`torch.utils.benchmark`, its peak
memory (CUDA's allocator statistics; on the CPU the high-water mark of a fresh child
process), one guarded measurement per case, and the log-log slope of times against sizes.

A case is a picklable top-level *builder* and its keyword arguments: :obj:`builder(**kwargs)`
creates the inputs and returns the zero-argument call to measure, so that a child process
can build it again."""

from __future__ import annotations

import ctypes
import gc
import math
import multiprocessing
import os
import re
import statistics
import traceback
from typing import Any, Callable, Mapping, NamedTuple, Optional, Sequence, Union

import torch
import torch.utils.benchmark as benchmark

__all__ = [
    "CPU_MEMORY_METHOD",
    "CUDA_MEMORY_METHOD",
    "Timing",
    "Unavailable",
    "cpu_peak_memory",
    "cuda_peak_memory",
    "loglog_slope",
    "measure",
    "predicted_time",
    "time_call",
]

CPU_MEMORY_METHOD = (
    "peak resident set size of a fresh child process per measurement (forked from a "
    "multiprocessing fork server that has imported torch and tg_samplenet): the child builds "
    "the inputs, runs a warm-up (the same call, or a small one for long calls), resets the "
    "kernel's high-water mark (/proc/self/clear_refs = 5), runs the call once and reports "
    "VmHWM minus VmRSS just before the call (inputs and imports excluded, outputs included); "
    "glibc's mmap threshold is fixed at 128 KiB so that freed buffers leave the RSS instead "
    "of being reused unseen"
)
CUDA_MEMORY_METHOD = (
    "torch.cuda.max_memory_allocated() during one call minus torch.cuda.memory_allocated() "
    "before it (after torch.cuda.reset_peak_memory_stats())"
)


class Unavailable(RuntimeError):
    r"""Raised by a builder whose measurement cannot run here (a peer that is not installed,
    or that does not run on this device): :func:`measure` reports it as skipped."""


class Timing(NamedTuple):
    r"""Wall-clock times of one measured call: the median of one call, the time of one call
    in each timed block, the calls per block, and why the call was timed once, if so."""

    median: float
    times: list[float]
    calls_per_block: int = 1
    note: str = ""


def time_call(
    fn: Callable[[], Any], min_run_time: float = 1.0, single_run_above_s: float = 5.0
) -> Timing:
    r"""Times :obj:`fn` with :meth:`torch.utils.benchmark.Timer.blocked_autorange` (which
    synchronises the accelerator around each block) after one untimed call. A first call
    longer than :obj:`single_run_above_s` is itself the measurement: first-call overheads
    are negligible at that length, and autoranging would run it twice more.

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
        return int(re.search(rf"^{name}:\s+(\d+) kB", f.read(), re.MULTILINE).group(1))


def _memory_child(conn, builder, kwargs, warmup_kwargs, threads):
    # Runs in the child process and sends ("ok", bytes) or ("error", traceback).
    try:
        libc = ctypes.CDLL("libc.so.6")
        libc.mallopt(-3, 128 * 1024)  # M_MMAP_THRESHOLD: large buffers are mmap'ed ...
        libc.mallopt(-1, 128 * 1024)  # M_TRIM_THRESHOLD: ... and freed ones returned
        torch.set_num_threads(threads)
        fn = builder(**kwargs)
        (fn if warmup_kwargs is None else builder(**warmup_kwargs))()
        gc.collect()
        libc.malloc_trim(0)
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")  # VmHWM := VmRSS
        base = _status_kib("VmRSS")
        out = fn()
        conn.send(("ok", (_status_kib("VmHWM") - base) * 1024))
        del out
    except BaseException:  # noqa: BLE001  (everything goes back to the parent)
        conn.send(("error", traceback.format_exc(limit=4)))
    finally:
        conn.close()


def cpu_peak_memory(
    builder: Callable[..., Callable[[], Any]],
    kwargs: Mapping[str, Any],
    warmup_kwargs: Optional[Mapping[str, Any]] = None,
    timeout_s: float = 900.0,
) -> int:
    r"""Peak extra resident memory of one call of :obj:`builder(**kwargs)`, in bytes,
    measured in a fresh child process as :data:`CPU_MEMORY_METHOD` describes (Linux with
    glibc). The child warms up on :obj:`builder(**warmup_kwargs)` when given (for calls too
    long to run twice), else on the call itself.

    :rtype: :class:`int`
    """
    if not os.path.exists("/proc/self/clear_refs"):
        raise RuntimeError("CPU peak memory needs Linux's /proc/self/clear_refs")
    # A fork server: children start without importing torch again, and never inherit the
    # parent's OpenMP threads (forking those can hang the child).
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(["torch", "tg_samplenet"])
    receiver, sender = context.Pipe(duplex=False)
    args = (sender, builder, dict(kwargs), warmup_kwargs, torch.get_num_threads())
    process = context.Process(target=_memory_child, args=args)
    process.start()
    sender.close()
    try:
        if not receiver.poll(timeout_s):
            process.kill()
            raise RuntimeError(f"memory measurement timed out after {timeout_s:g} s")
        status, value = receiver.recv()
    except EOFError:
        raise RuntimeError("the child process died (out of memory?)") from None
    finally:
        receiver.close()
        process.join()
    if status != "ok":
        raise RuntimeError(f"the child process failed:\n{value}")
    return int(value)


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
    more than 2 s). Never raises: a case that cannot run is a row too.

    :rtype: :obj:`{"status": "ok" | "skipped" | "error", "note", "time_s", "times_s",
        "calls_per_block", "peak_memory_bytes"}`
    """
    row: dict[str, Any] = {"status": "ok", "note": ""}
    try:
        fn = builder(**kwargs)
        timing = time_call(fn, min_run_time=min_run_time)
        row.update(
            time_s=timing.median,
            times_s=timing.times,
            calls_per_block=timing.calls_per_block,
            note=timing.note,
        )
        if memory and str(device).startswith("cuda"):
            row["peak_memory_bytes"] = cuda_peak_memory(fn, device)
        del fn
        gc.collect()
        if memory and not str(device).startswith("cuda"):
            warmup = small_kwargs if timing.median > 2 else None
            row["peak_memory_bytes"] = cpu_peak_memory(builder, kwargs, warmup)
    except Unavailable as reason:
        row.update(status="skipped", note=str(reason))
    except Exception as error:  # noqa: BLE001  (a failed case must not stop the run)
        row.update(status="error", note=f"{type(error).__name__}: {error}".splitlines()[0])
    return row


def loglog_slope(xs: Sequence[float], ys: Sequence[float]) -> float:
    r"""Least-squares slope of :math:`\log y` against :math:`\log x`: the exponent
    :math:`a` of :math:`y \propto x^a`. Needs at least two distinct :math:`x`.

    :rtype: :class:`float`
    """
    if len(xs) != len(ys) or len(set(xs)) < 2:
        raise ValueError("loglog_slope needs at least two distinct x values, one y each")
    lx, ly = [math.log(x) for x in xs], [math.log(y) for y in ys]
    mx, my = statistics.fmean(lx), statistics.fmean(ly)
    covariance = sum((a - mx) * (b - my) for a, b in zip(lx, ly, strict=True))
    return covariance / sum((a - mx) ** 2 for a in lx)


def predicted_time(
    history: Sequence[tuple[int, float]], num_points: int, default_slope: float = 1.0
) -> Optional[float]:
    r"""The time of a case at :obj:`num_points`, extrapolated from :obj:`history`, the
    :obj:`(N, seconds)` of the same series at smaller :math:`N`: with the log-log slope of
    its last two sizes clipped to [1, 2], or with :obj:`default_slope` from one size;
    :obj:`None` without history. The benchmarks skip the cases it predicts too slow."""
    points = sorted(p for p in history if p[0] < num_points)
    if not points:
        return None
    slope = default_slope
    if len(points) >= 2:
        slope = min(max(loglog_slope(*zip(*points[-2:])), 1.0), 2.0)
    return points[-1][1] * (num_points / points[-1][0]) ** slope
