r"""``tg-samplenet info``: what a checkpoint holds.

For a sampler (SampleNet.save, `tg-samplenet train`): its configuration, size, temperature
and the metadata saved with it (what `tg-samplenet train` trained it on). For a training
checkpoint of the resumable loop: its epochs and losses. What a file does not record is
said so.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import torch

from tg_samplenet.cli.common import command_parser, one_line, report_error
from tg_samplenet.io import load_checkpoint
from tg_samplenet.nn.sampler import SampleNet
from tg_samplenet.ops.checks import InputError

SUMMARY = "print a checkpoint's configuration and what it was trained on"


def add_parser(subparsers: argparse._SubParsersAction):
    parser = command_parser(subparsers, "info", SUMMARY, __doc__)
    parser.add_argument("file", metavar="FILE", help="a *.sampler.pt or training checkpoint")
    parser.add_argument("--json", action="store_true", help="print JSON instead of text")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    try:
        info = describe_checkpoint(args.file)
    except Exception as error:  # a file torch.load cannot read raises many types
        report_error(f"{args.file}: {one_line(error)}")
        return 1
    print(json.dumps(info, indent=2, default=str) if args.json else _render(info))
    return 0


def describe_checkpoint(path: str) -> dict[str, Any]:
    r"""A JSON-ready description of the checkpoint at :obj:`path`.

    Raises:
        InputError: The file is not a checkpoint this package writes.
    """
    info: dict[str, Any] = {"file": str(path), "bytes": Path(path).stat().st_size}
    try:
        sampler = SampleNet.load(path)
    except InputError as error:
        state = load_checkpoint(path)
        if not (isinstance(state, dict) and {"epoch", "history", "state"} <= set(state)):
            raise error from None  # neither a sampler nor a training checkpoint
        history = [float(x) for x in state["history"]]
        return {
            **info,
            "kind": "training checkpoint (resumable fit loop)",
            "epochs_done": int(state["epoch"]),
            "loss_first_last": [history[0], history[-1]] if history else None,
            "objects": sorted(state["state"]),
            "note": "a training checkpoint records no configuration: the trained sampler is "
            "the *.sampler.pt beside it",
        }
    projection = sampler.projection
    info.update(
        kind="SampleNet sampler (SampleNet.save)",
        sampler=repr(sampler),
        config=sampler.config,
        parameters=sum(p.numel() for p in sampler.parameters()),
        temperature={
            "t": float(projection.temperature.detach()),
            "sigma": float(projection.sigma.detach()),
            "learned": isinstance(projection.temperature, torch.nn.Parameter),
        },
        trained_on=sampler.metadata or None,
    )
    if info["trained_on"] is None:
        info["note"] = "saved without metadata; `tg-samplenet train` records its training"
    return info


def _render(info: dict[str, Any], indent: str = "") -> str:
    lines = []
    for key, value in info.items():
        label = f"{indent}{key.replace('_', ' ')}:"
        if isinstance(value, dict):
            lines += [label, _render(value, indent + "  ")]
        elif isinstance(value, (list, tuple)):
            lines.append(f"{label} {', '.join(map(str, value)) if value else '[]'}")
        else:
            lines.append(f"{label} {'not recorded' if value is None else value}")
    return "\n".join(lines)
