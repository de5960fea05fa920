r"""What the ``tg-samplenet`` commands share: argument types, the device, one-line error reports
and the exit status."""

from __future__ import annotations

import argparse
import math
import sys
from typing import Any, Optional

import torch

from tg_samplenet.ops.checks import InputError
from tg_samplenet.training.distributed import is_main_process

PROGRAM = "tg-samplenet"


def positive_int(text: str) -> int:
    r"""An :mod:`argparse` type: an integer :math:`\ge 1`."""
    if not text.strip().isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"expected an integer >= 1, got {text!r}")
    return int(text)


def unit_ratio(text: str) -> float:
    r"""An :mod:`argparse` type: a number in :math:`(0, 1]`."""
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not 0.0 < value <= 1.0:
        raise argparse.ArgumentTypeError(f"expected a number in (0, 1], got {text!r}")
    return value


def device(name: str) -> torch.device:
    r"""An :mod:`argparse` type: a :class:`torch.device` of this machine (:obj:`"auto"`: CUDA
    when available)."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(name)
    except RuntimeError:
        raise argparse.ArgumentTypeError(f"unknown device {name!r}") from None
    count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if dev.type == "cuda" and (dev.index or 0) >= count:
        raise argparse.ArgumentTypeError(f"{name}: this machine has {count} CUDA devices")
    return dev


def command_parser(subparsers: Any, name: str, summary: str, doc: str) -> argparse.ArgumentParser:
    r"""A sub-command's parser with :obj:`summary` in the command list and the module
    docstring :obj:`doc` (after its first paragraph) as its description; common options."""
    parser = subparsers.add_parser(
        name,
        help=summary,
        description=doc.split("\n\n", 1)[1],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    if name != "info":
        parser.add_argument(
            "--device", type=device, default="auto", help="cpu, cuda, cuda:N or auto (default)"
        )
        parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    return parser


def one_line(error: BaseException) -> str:
    r"""The first line of an exception's message, after its type unless it is an
    :class:`InputError` or an :class:`OSError` (whose messages name the file)."""
    text = str(error).strip().splitlines()[0] if str(error).strip() else ""
    if isinstance(error, (InputError, OSError)) and text:
        return text
    return f"{type(error).__name__}: {text}" if text else type(error).__name__


def report_error(message: str, bar: Optional[Any] = None, prefix: str = "error: "):
    r"""Prints :obj:`message` as one line on stderr, above a tqdm bar if one is shown; under
    torchrun only rank 0 prints (every rank meets the same errors)."""
    if not is_main_process():
        return
    line = f"{PROGRAM}: {prefix}{message}".replace("\n", " ")
    if bar is not None and not bar.disable:
        bar.write(line, file=sys.stderr)
    else:
        print(line, file=sys.stderr)


def exit_status(failed: int) -> int:
    r"""The number of failed files as an exit status (0 on success, at most 255)."""
    return min(failed, 255)
