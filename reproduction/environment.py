r"""What a results file needs to be reproduced: the machine (CPU, cores, memory, load, GPU),
the package versions and the exact command line (rendered by
:func:`~reproduction.reporting.metadata_markdown`)."""

from __future__ import annotations

import datetime
import importlib
import importlib.metadata
import os
import platform
import shlex
import sys
from typing import Any, Optional, Sequence

import torch

__all__ = ["machine_info", "package_versions", "run_metadata"]

DEFAULT_PACKAGES = (
    "torch",
    "torch_geometric",
    "torch_cluster",
    "torch_scatter",
    "pyg_lib",
    "tg_samplenet",
    "numpy",
)


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _physical_cores() -> Optional[int]:
    try:
        import psutil
    except ImportError:
        return None
    return psutil.cpu_count(logical=False)


def _cgroup_memory_limit() -> Optional[int]:
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
    RAM and container limit, the load average, the operating system, PyTorch's thread count
    and, for a CUDA :obj:`device`, the GPU.

    Args:
        device (str, optional): The device the run uses. (default: :obj:`"cpu"`)

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
        "device": str(device),
    }
    if str(device).startswith("cuda") and torch.cuda.is_available():
        props = torch.cuda.get_device_properties(torch.device(device))
        info["gpu"] = props.name
        info["gpu_memory_bytes"] = props.total_memory
        info["cuda"] = torch.version.cuda
    return info


def package_versions(names: Sequence[str] = DEFAULT_PACKAGES) -> dict[str, Optional[str]]:
    r"""Versions of Python and of the given packages, :obj:`None` for those that cannot be
    imported here (an installed wheel built for another PyTorch counts as missing).

    Args:
        names (Sequence[str], optional): Importable module names.
            (default: :obj:`DEFAULT_PACKAGES`)

    :rtype: :class:`dict`
    """
    versions: dict[str, Optional[str]] = {"python": platform.python_version()}
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


def run_metadata(
    script: str,
    argv: Sequence[str],
    device: str = "cpu",
    packages: Sequence[str] = DEFAULT_PACKAGES,
) -> dict[str, Any]:
    r"""What a results file needs to be reproduced: the exact command line, the date, the
    machine (:func:`machine_info`) and the package versions (:func:`package_versions`).

    Args:
        script (str): The script as the user would call it, e.g.
            :obj:`"benchmarks/speed.py"`.
        argv (Sequence[str]): Its arguments.
        device (str, optional): The device the run uses. (default: :obj:`"cpu"`)
        packages (Sequence[str], optional): The packages whose versions are recorded.
            (default: :obj:`DEFAULT_PACKAGES`)

    :rtype: :class:`dict`
    """
    now = datetime.datetime.now(datetime.timezone.utc)
    return {
        "command": shlex.join(["python", script, *argv]),
        "python_executable": sys.executable,
        "date": now.isoformat(timespec="seconds"),
        "machine": machine_info(device),
        "versions": package_versions(packages),
    }
