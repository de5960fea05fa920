r"""``tg-samplenet sample``: a trained sampler on users' point files.

Each input file is read with every per-point attribute, batched with others (clouds of any
sizes in one PyG batch), sampled in eval mode (unique points per cloud) and its selected
rows are written in the same format: a file INPUT as OUTDIR/<its name>, the files of a
folder INPUT as OUTDIR/<their path below it>. A bad file gets a one-line error on stderr and
the others are still processed; each output is written atomically (a failure never leaves
a partial file nor replaces an earlier output). The exit status is the number of failed
files (at most 255); a checkpoint that does not load fails them all.
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
    command_parser,
    exit_status,
    one_line,
    positive_int,
    report_error,
    unit_ratio,
)
from tg_samplenet.datasets.formats import (
    FORMATS,
    PointFile,
    find_point_files,
    read_point_file,
    write_point_file,
)
from tg_samplenet.nn.sampler import SampleNet
from tg_samplenet.ops.checks import InputError

SUMMARY = "sample point files (PLY, OFF, NPY, NPZ, XYZ/TXT) with a trained sampler"


def add_parser(subparsers: argparse._SubParsersAction):
    parser = command_parser(subparsers, "sample", SUMMARY, __doc__)
    parser.add_argument("inputs", nargs="+", metavar="INPUT", help="point files or folders")
    parser.add_argument(
        "--checkpoint", required=True, metavar="FILE", help="a sampler (SampleNet.save)"
    )
    size = parser.add_mutually_exclusive_group(required=True)
    size.add_argument("--num-points", type=positive_int, metavar="M", help="min(M, n) points")
    size.add_argument("--ratio", type=unit_ratio, metavar="R", help="ceil(n * R) points (fps)")
    parser.add_argument("-o", "--out", required=True, metavar="OUTDIR", help="output folder")
    parser.add_argument("--batch-size", type=positive_int, default=8, help="files per batch")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    files = find_point_files(args.inputs)
    # A folder without point files is a failure of its own (a mistyped path, say).
    empty = [p for p in map(Path, args.inputs) if p.is_dir() and not find_point_files([p])]
    for folder in empty:
        report_error(f"{folder}: no point files ({', '.join(sorted(FORMATS))}) in this folder")
    if not files:
        return exit_status(len(empty))
    try:
        sampler = SampleNet.load(args.checkpoint).to(args.device)
    except Exception as error:  # a file torch.load cannot read raises many types
        report_error(f"{args.checkpoint}: {one_line(error)}; no file sampled")
        return exit_status(len(files) + len(empty))
    bar = tqdm(total=len(files), unit="file", disable=args.no_progress)
    failed = len(empty) + sample_files(
        sampler, files, Path(args.out), args.num_points, args.ratio, args.batch_size, bar
    )
    bar.close()
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
    bar: Optional[tqdm] = None,
) -> int:
    r"""Samples every :obj:`(file, relative name)` of :obj:`files` into :obj:`out` with
    :obj:`sampler` in eval mode, :obj:`batch_size` files per batch, and returns the number
    of files that failed (each reported on stderr in one line)."""
    sampler.eval()
    bar = tqdm(disable=True) if bar is None else bar
    failed, noted = 0, False

    def fail(message: str):
        nonlocal failed
        failed += 1
        report_error(message, bar)
        bar.update()

    def attempt(group: list[tuple[PointFile, Path]]) -> Optional[list[np.ndarray]]:
        try:
            return _sample(sampler, [file for file, _ in group], num_points, ratio)
        except Exception as error:  # out of memory, or a cloud the sampler rejects
            if len(group) == 1:
                fail(f"{group[0][0].path}: sampling failed: {one_line(error)}")
            return None

    targets = _targets(files, out)
    for start in range(0, len(files), batch_size):
        clouds = []
        for (path, _), target in zip(files[start : start + batch_size], targets[start:]):
            try:
                if isinstance(target, str):
                    raise InputError("path", f"{path}: {target}")
                clouds.append((read_point_file(path), target))
            except InputError as error:
                fail(str(error))
        # One batch; if it fails, file by file, so that one cloud (e.g. too large) fails alone.
        rows = attempt(clouds) if len(clouds) > 1 else None
        parts = [(clouds, rows)] if rows is not None else [([c], attempt([c])) for c in clouds]
        for group, rows in parts:
            if rows is None:
                continue
            if not noted and max(map(len, rows)) > sampler.num_out_points:
                noted = True
                report_error(
                    f"note: the sampler learned {sampler.num_out_points} points per cloud; "
                    "the points beyond them are farthest point sampling",
                    bar,
                    prefix="",
                )
            for (file, target), index in zip(group, rows):
                try:
                    write_point_file(file, target, index)
                    bar.update()
                except (OSError, InputError) as error:
                    fail(f"{file.path}: cannot write {target}: {one_line(error)}")
    return failed


def _sample(
    sampler: SampleNet, files: list[PointFile], num_points: Optional[int], ratio: Optional[float]
) -> list[np.ndarray]:
    # The selected rows of each file, sampled in one batch.
    batch = Batch.from_data_list([Data(pos=torch.from_numpy(f.pos)) for f in files])
    device = next(sampler.parameters()).device
    with torch.no_grad():
        out = sampler(
            batch.pos.to(device),
            batch.batch.to(device),
            ratio=ratio,
            num_samples=num_points,
            num_clouds=len(files),
        )
    local = (out.index - batch.ptr.to(device)[out.batch]).cpu().numpy()
    counts = torch.bincount(out.batch, minlength=len(files)).cpu()
    return np.split(local, counts.cumsum(0)[:-1].numpy())


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
