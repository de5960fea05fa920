r"""The ``tg-samplenet`` command line: ``sample``, ``info`` and ``train``.

.. code-block:: console

    tg-samplenet sample --checkpoint sampler.pt --num-points 1024 scans/ -o sampled/
    tg-samplenet info sampler.pt
    tg-samplenet train my_shapes/ --task classification --out run/
"""

from __future__ import annotations

import argparse
import os
import sys
from importlib import metadata
from typing import Optional, Sequence

from tg_samplenet.cli import info, sample, train


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="tg-samplenet",
        description="SampleNet (Lang et al., CVPR 2020) for your own point-cloud files: "
        "sample them with a trained sampler, inspect a checkpoint, train a sampler.",
    )
    try:
        version = metadata.version("tg_samplenet")
    except metadata.PackageNotFoundError:  # run from a source tree that is not installed
        version = "(not installed)"
    parser.add_argument("--version", action="version", version=f"%(prog)s {version}")
    commands = parser.add_subparsers(title="commands", dest="command", metavar="COMMAND")
    commands.required = True
    for command in (sample, info, train):
        command.add_parser(commands)
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    r"""Runs the command line on :obj:`argv` (default: :obj:`sys.argv[1:]`) and returns the
    exit status: 0 on success, the number of failed files for ``sample`` and ``train`` (at
    most 255), 2 for a usage error."""
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as exit:  # argparse exits on --help, --version and usage errors
        return int(exit.code or 0)
    args.argv = argv  # what a command records of how it was called
    try:
        return args.run(args)
    except BrokenPipeError:  # e.g. `tg-samplenet info FILE | head`: not an error
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0


if __name__ == "__main__":
    sys.exit(main())
