r"""What the ``tg-samplenet`` commands share: argument types, the device, loading a sampler,
one-line error reports and the exit status."""

from __future__ import annotations

import argparse
import math
import os
import sys
from pathlib import Path
from typing import Any, Callable, Optional, Union

import torch

from tg_samplenet.io import load_checkpoint
from tg_samplenet.nn.sampler import SampleNet
from tg_samplenet.training.distributed import is_main_process

__all__ = [
    "add_device_argument",
    "command_parser",
    "exit_status",
    "is_sampler_file",
    "load_sampler",
    "one_line",
    "positive_int",
    "read_checkpoint",
    "report_error",
    "resolve_device",
    "unit_ratio",
]

PROGRAM = "tg-samplenet"


def _number(text: str, cast: Callable[[str], Any], valid: Callable[[Any], bool], expected: str):
    try:
        value = cast(text)
    except ValueError:
        value = None
    if value is None or not valid(value):
        raise argparse.ArgumentTypeError(f"expected {expected}, got {text!r}")
    return value


def positive_int(text: str) -> int:
    r"""An :mod:`argparse` type: an integer :math:`\ge 1`."""
    return _number(text, int, lambda v: v >= 1, "an integer >= 1")


def unit_ratio(text: str) -> float:
    r"""An :mod:`argparse` type: a finite number in :math:`(0, 1]`."""
    return _number(text, float, lambda v: math.isfinite(v) and 0.0 < v <= 1.0, "a number in (0, 1]")


def command_parser(subparsers: Any, name: str, summary: str, doc: str) -> argparse.ArgumentParser:
    r"""A sub-command's parser: :obj:`summary` in the command list, the module docstring
    :obj:`doc` (after its first paragraph) as its description, so that paragraph is plain
    text (no reST roles: ``--help`` prints it as it is)."""
    return subparsers.add_parser(
        name,
        help=summary,
        description=doc.split("\n\n", 1)[1],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )


def add_device_argument(parser: argparse.ArgumentParser):
    parser.add_argument(
        "--device",
        type=resolve_device,
        default="auto",
        help="cpu, cuda, cuda:N or auto (cuda when available; default: auto)",
    )


def resolve_device(name: str) -> torch.device:
    r"""An :mod:`argparse` type: a :class:`torch.device` that exists on this machine."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise argparse.ArgumentTypeError(f"unknown device {name!r}") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise argparse.ArgumentTypeError(f"{name}: CUDA is not available on this machine")
    if device.type == "cuda" and (device.index or 0) >= torch.cuda.device_count():
        raise argparse.ArgumentTypeError(
            f"{name}: this machine has {torch.cuda.device_count()} CUDA devices"
        )
    return device


def read_checkpoint(path: Union[str, os.PathLike]) -> Any:
    r"""The object saved in :obj:`path` (:func:`tg_samplenet.io.load_checkpoint`).

    Raises:
        ValueError: The file is missing, or not a checkpoint (e.g. truncated or foreign),
            in a message without the file name (the caller adds it).
    """
    if not Path(path).is_file():
        raise ValueError("no such file")
    try:
        return load_checkpoint(path)
    except Exception as error:  # truncated, foreign or not a torch file at all
        reason = type(error).__name__
        raise ValueError(f"not a checkpoint this package can read ({reason})") from None


def is_sampler_file(state: Any) -> bool:
    r"""Whether :obj:`state` is what :meth:`SampleNet.save` writes."""
    return isinstance(state, dict) and "config" in state and "state_dict" in state


def load_sampler(path: Union[str, os.PathLike], device: torch.device) -> SampleNet:
    r"""A sampler written by :meth:`SampleNet.save`, on :obj:`device`, in eval mode.

    Raises:
        ValueError: The file holds no sampler or one that does not load.
    """
    if not is_sampler_file(read_checkpoint(path)):
        raise ValueError("not a sampler written by SampleNet.save (no config and state_dict)")
    try:
        sampler = SampleNet.load(path)
    except Exception as error:  # a config or state_dict this version cannot rebuild
        reason = f"{type(error).__name__}: {one_line(error)}"
        raise ValueError(f"cannot rebuild the sampler: {reason}") from None
    return sampler.to(device).eval()


def one_line(error: BaseException) -> str:
    r"""The first line of an exception's message (or its type when it has none)."""
    lines = str(error).strip().splitlines()
    return lines[0] if lines else type(error).__name__


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
