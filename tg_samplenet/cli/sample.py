r"""``tg-samplenet sample``: a trained sampler on users' point files.

Each input file is read with every per-point attribute, batched with others (clouds of any
sizes in one PyG batch), sampled in eval mode (hard matching, unique points per cloud) and
its selected rows are written in the same format: a file INPUT as OUTDIR/<its name>, the
files of a folder INPUT as OUTDIR/<their path below it>. A bad file gets a one-line error
on stderr and the others are still processed; each output is written atomically (a failure
never leaves a partial file nor replaces an earlier output). The exit status is the number
of failed files (at most 255); a checkpoint that does not load fails them all.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Optional, Union

import numpy as np
import torch
from torch_geometric.data import Batch, Data
from tqdm.auto import tqdm

from tg_samplenet.cli.common import (
    add_device_argument,
    command_parser,
    exit_status,
    load_sampler,
    one_line,
    positive_int,
    report_error,
    unit_ratio,
)
from tg_samplenet.cli.point_files import (
    FORMATS,
    PointFile,
    PointFileError,
    find_point_files,
    read_point_file,
    write_point_subset,
)
from tg_samplenet.nn.sampler import SampleNet

__all__ = ["add_parser", "run", "sample_files"]

SUMMARY = "sample point files (PLY, OFF, NPY, XYZ/TXT) with a trained sampler"


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    parser = command_parser(subparsers, "sample", SUMMARY, __doc__)
    parser.add_argument(
        "inputs", nargs="+", metavar="INPUT", help="point files, or folders searched recursively"
    )
    parser.add_argument(
        "--checkpoint",
        required=True,
        metavar="FILE",
        help="a sampler written by SampleNet.save (*.sampler.pt)",
    )
    size = parser.add_mutually_exclusive_group(required=True)
    size.add_argument(
        "--num-points",
        type=positive_int,
        metavar="M",
        help="points per cloud: min(M, n) of each cloud",
    )
    size.add_argument(
        "--ratio",
        type=unit_ratio,
        metavar="R",
        help="fraction in (0, 1]: ceil(n * R) points, as PyG's fps",
    )
    parser.add_argument("-o", "--out", required=True, metavar="OUTDIR", help="output folder")
    parser.add_argument(
        "--batch-size",
        type=positive_int,
        default=8,
        metavar="B",
        help="files per batch (default: 8)",
    )
    add_device_argument(parser)
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.set_defaults(run=run)
    return parser


def run(args: argparse.Namespace) -> int:
    files = find_point_files(args.inputs)
    # A folder without point files is a failure of its own (a mistyped path, say).
    empty = [p for p in map(Path, args.inputs) if p.is_dir() and not find_point_files([p])]
    for folder in empty:
        report_error(f"{folder}: no point files ({', '.join(sorted(FORMATS))}) in this folder")
    if not files:
        return exit_status(len(empty))
    try:
        sampler = load_sampler(args.checkpoint, args.device)
    except (OSError, ValueError) as error:
        report_error(f"{args.checkpoint}: {one_line(error)}; no file sampled")
        return exit_status(len(files) + len(empty))
    failed = len(empty) + sample_files(
        sampler,
        files,
        Path(args.out),
        num_points=args.num_points,
        ratio=args.ratio,
        batch_size=args.batch_size,
        progress=not args.no_progress,
    )
    ok = len(files) + len(empty) - failed
    print(f"sampled {ok} of {len(files)} files into {args.out}", file=sys.stderr)
    return exit_status(failed)


def sample_files(
    sampler: SampleNet,
    files: list[tuple[Path, Path]],
    out: Path,
    num_points: Optional[int] = None,
    ratio: Optional[float] = None,
    batch_size: int = 8,
    progress: bool = True,
) -> int:
    r"""Samples every :obj:`(file, relative name)` of :obj:`files` into :obj:`out` with
    :obj:`sampler` in eval mode, :obj:`batch_size` files per batch, and returns the number
    of files that failed (each reported on stderr in one line)."""
    sampler.eval()
    run = _Run(
        sampler, num_points, ratio, tqdm(total=len(files), unit="file", disable=not progress)
    )
    targets = _targets(files, out)
    for start in range(0, len(files), batch_size):
        clouds = []
        for (path, _), target in zip(files[start : start + batch_size], targets[start:]):
            try:
                if isinstance(target, str):
                    raise PointFileError(path, target)
                clouds.append((read_point_file(path), target))
            except PointFileError as error:
                run.fail(str(error))
        if len(clouds) > 1:
            try:
                run.sample(clouds)
                continue
            except _SamplerFailed:
                pass  # retried file by file: one cloud (e.g. too large) fails alone
        for cloud in clouds:
            try:
                run.sample([cloud])
            except _SamplerFailed as error:
                run.fail(f"{cloud[0].path}: sampling failed: {error}")
    run.bar.close()
    return run.failed


class _SamplerFailed(Exception):
    pass


class _Run:
    r"""One sampling run: the sampler, the requested size, the progress bar, the failures."""

    def __init__(self, sampler: SampleNet, num_points, ratio, bar):
        self.sampler, self.num_points, self.ratio, self.bar = sampler, num_points, ratio, bar
        self.device = next(sampler.parameters()).device
        self.failed = 0
        self.warned = False

    def fail(self, message: str):
        self.failed += 1
        report_error(message, self.bar)
        self.bar.update()

    def sample(self, clouds: list[tuple[PointFile, Path]]):
        r"""Samples :obj:`clouds` in one batch, then writes each (raises
        :class:`_SamplerFailed` before writing anything if the sampler fails)."""
        batch = Batch.from_data_list([Data(pos=torch.from_numpy(f.pos)) for f, _ in clouds])
        try:
            with torch.no_grad():
                pos, vec = batch.pos.to(self.device), batch.batch.to(self.device)
                out = self.sampler(
                    pos, vec, ratio=self.ratio, num_samples=self.num_points, num_clouds=len(clouds)
                )
            local = (out.index - batch.ptr.to(self.device)[out.batch]).cpu().numpy()
            counts = torch.bincount(out.batch, minlength=len(clouds)).cpu()
        except Exception as error:  # out of memory, or a cloud the sampler rejects
            raise _SamplerFailed(f"{type(error).__name__}: {one_line(error)}") from None
        if not self.warned and int(counts.max()) > self.sampler.num_out_points:
            self.warned = True
            report_error(
                f"note: the sampler learned {self.sampler.num_out_points} points per cloud; "
                "the points beyond them are farthest point sampling",
                self.bar,
                prefix="",
            )
        for (file, target), index in zip(clouds, np.split(local, counts.cumsum(0)[:-1])):
            try:
                write_point_subset(file, index, target)
            except (OSError, PointFileError) as error:
                self.fail(f"{file.path}: cannot write {target}: {one_line(error)}")
                continue
            self.bar.update()


def _targets(files: list[tuple[Path, Path]], out: Path) -> list[Union[Path, str]]:
    r"""Each input's output path, or why it has none: two inputs with one relative name,
    or an output that would replace its input."""
    targets: list[Union[Path, str]] = []
    owner: dict[Path, Path] = {}
    for path, rel in files:
        target = out / rel
        key = target.resolve()
        if path.exists() and key == path.resolve():
            targets.append(f"the output {target} would replace the input")
        elif key in owner:
            targets.append(f"same output name {target} as {owner[key]}")
        else:
            owner[key] = path
            targets.append(target)
    return targets
