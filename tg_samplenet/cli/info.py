r"""``tg-samplenet info``: what a checkpoint holds.

For a sampler written by SampleNet.save() or `tg-samplenet train`: its configuration,
size, temperature and, where the file records it, what it was trained on. For a training
checkpoint of the resumable loop: its epochs and losses. What a file does not record is
said so.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import torch

from tg_samplenet.cli.common import (
    command_parser,
    is_sampler_file,
    load_sampler,
    one_line,
    read_checkpoint,
    report_error,
)
from tg_samplenet.nn.sampler import SampleNet

__all__ = ["add_parser", "describe_checkpoint", "run"]

# Keys under which a sampler file may record its training (tg-samplenet train writes
# "training"); anything else beside config and state_dict is shown too.
TRAINING_KEYS = ("training", "trained_on", "metadata")
SUMMARY_KEYS = (
    "task",
    "task_network",
    "data",
    "files",
    "failed_files",
    "classes",
    "training_clouds",
    "held_out_clouds",
    "profile",
    "seed",
    "processes",
)

SUMMARY = "print a checkpoint's configuration and what it was trained on"


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    parser = command_parser(subparsers, "info", SUMMARY, __doc__)
    parser.add_argument("file", metavar="FILE", help="a *.sampler.pt or training checkpoint")
    parser.add_argument("--json", action="store_true", help="print JSON instead of text")
    parser.set_defaults(run=run)
    return parser


def run(args: argparse.Namespace) -> int:
    try:
        info = describe_checkpoint(args.file)
    except (OSError, ValueError) as error:
        report_error(f"{args.file}: {one_line(error)}")
        return 1
    if args.json:
        print(json.dumps(info, indent=2, default=str))
    else:
        print(_render(_summary(info)))
    return 0


def describe_checkpoint(path: str) -> dict[str, Any]:
    r"""A JSON-ready description of the checkpoint at :obj:`path`.

    Raises:
        ValueError: The file is not a checkpoint this package writes.
    """
    state = read_checkpoint(path)
    info: dict[str, Any] = {"file": str(path), "bytes": Path(path).stat().st_size}
    if is_sampler_file(state):
        sampler = load_sampler(path, torch.device("cpu"))
        info["kind"] = "SampleNet sampler (SampleNet.save)"
        info["sampler"] = repr(sampler)
        info["config"] = sampler.config
        info["parameters"] = sum(p.numel() for p in sampler.parameters())
        info["temperature"] = _temperature(sampler)
        extra = {k: v for k, v in state.items() if k not in ("config", "state_dict")}
        trained = [extra.pop(k) for k in TRAINING_KEYS if k in extra]
        info["trained_on"] = trained[0] if len(trained) == 1 else (trained or None)
        if extra:
            info["other"] = sorted(extra)
        if not trained:
            info["note"] = (
                "SampleNet.save stores the configuration and weights only; a sampler "
                "written by `tg-samplenet train` also records its data, task and settings"
            )
    elif isinstance(state, dict) and {"epoch", "history", "state"} <= set(state):
        history = [float(x) for x in state["history"]]
        info["kind"] = "training checkpoint (resumable fit loop)"
        info["epochs_done"] = int(state["epoch"])
        info["loss_first_last"] = [history[0], history[-1]] if history else None
        info["objects"] = sorted(state["state"])
        info["note"] = (
            "a training checkpoint records no configuration: the trained sampler is the "
            "*.sampler.pt beside it"
        )
    else:
        keys = sorted(state) if isinstance(state, dict) else type(state).__name__
        raise ValueError(f"not a tg_samplenet sampler or training checkpoint (holds {keys})")
    return info


def _temperature(sampler: SampleNet) -> dict[str, Any]:
    projection = sampler.projection
    return {
        "t": float(projection.temperature.detach()),
        "sigma": float(projection.sigma.detach()),
        "learned": isinstance(projection.temperature, torch.nn.Parameter),
    }


def _summary(info: dict[str, Any]) -> dict[str, Any]:
    r"""The text view: a training record of ``tg-samplenet train`` cut to what tells runs
    apart (``--json`` shows all of it)."""
    record = info.get("trained_on")
    if not (isinstance(record, dict) and "settings" in record):
        return info
    settings = record["settings"]
    short = {key: record.get(key) for key in SUMMARY_KEYS if key in record}
    if len(short.get("classes") or []) > 12:
        short["classes"] = [*record["classes"][:12], f"... ({len(record['classes'])} in all)"]
    for key in ("num_points", "task_epochs", "sampler_epochs", "batch_size", "sampler_lr"):
        short[key] = settings.get(key)
    for key in ("validation", "date", "command"):
        if key in record:
            short[key] = record[key]
    return {**info, "trained_on": short}


def _render(info: dict[str, Any], indent: str = "") -> str:
    lines = []
    for key, value in info.items():
        label = key.replace("_", " ")
        if isinstance(value, dict):
            lines.append(f"{indent}{label}:")
            lines.append(_render(value, indent + "  "))
        elif value is None:
            lines.append(f"{indent}{label}: not recorded")
        else:
            lines.append(f"{indent}{label}: {_format(value)}")
    return "\n".join(lines)


def _format(value: Any) -> str:
    if isinstance(value, (list, tuple)):
        return ", ".join(_format(v) for v in value) if value else "[]"
    if torch.is_tensor(value):
        return str(value.tolist()) if value.numel() <= 8 else f"tensor{list(value.shape)}"
    return str(value)
