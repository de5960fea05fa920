r"""``tg-samplenet train``: a SampleNet-Progressive for a task network, both trained on a folder
of point files.

The clouds are centred, scaled into the unit sphere and resampled to the profile's number
of points (PyG's FixedPoints); a class-stratified held-out part (--val-fraction) measures
the result. The task network (vanilla PointNet for classification, with labels from the
first-level sub-folders DATA/<class>/...; the point-cloud autoencoder for reconstruction,
no labels needed) is trained on the complete clouds and frozen, then the progressive
sampler is trained against it (tg_samplenet.fit_sampler). Every stage resumes from its
checkpoint in OUTDIR/checkpoints. OUTDIR/samplenet_progressive.sampler.pt holds the sampler
and the record of its training (`tg-samplenet info` prints it), OUTDIR/train.json the same
record with the held-out table: the task metric on the complete clouds and on samples of
farthest point sampling, random sampling and the sampler. Bad files are reported and left
out; the exit status is their number.

Under torchrun (torchrun --nproc_per_node N -m tg_samplenet.cli train ...) both stages train
data-parallel: every global batch of --batch-size clouds is split over the N processes (gloo
on the CPU, nccl with --device cuda), BatchNorm is synchronised, the held-out clouds are
shared out and the results gathered, and only rank 0 reports and writes OUTDIR. A rerun
resumes from the checkpoints with any number of processes.
"""

from __future__ import annotations

import argparse
import json
import platform
import shlex
import sys
import time
from dataclasses import asdict, replace
from importlib import metadata
from pathlib import Path
from typing import Any, Callable, NamedTuple, Optional

import torch
import torch.nn.functional as F
from torch import Tensor
from torch_geometric.data import Batch, Data
from torch_geometric.loader import DataLoader
from torch_geometric.transforms import Compose, FixedPoints

from tg_samplenet.cli.common import command_parser, exit_status, positive_int, report_error
from tg_samplenet.cli.config import PROFILES, TrainConfig
from tg_samplenet.datasets.formats import find_point_files, read_point_file
from tg_samplenet.datasets.normalize import NormalizeUnitSphere
from tg_samplenet.datasets.split import stratified_split
from tg_samplenet.io import atomic_write
from tg_samplenet.losses import chamfer_distance
from tg_samplenet.models import PointCloudAE, PointNet
from tg_samplenet.nn.sampler import SampleNet
from tg_samplenet.ops import farthest_point_sampling
from tg_samplenet.ops.checks import InputError
from tg_samplenet.training import fit_model, fit_sampler, freeze, seed_everything
from tg_samplenet.training.distributed import (
    evaluate_sharded,
    get_world_size,
    init_distributed,
    is_distributed,
    is_main_process,
    shard_loader,
    training_loader,
)

SAMPLER_FILE = "samplenet_progressive.sampler.pt"
SUMMARY = "train a task network and a progressive sampler for it on a folder of files"


def add_parser(subparsers: argparse._SubParsersAction):
    parser = command_parser(subparsers, "train", SUMMARY, __doc__)
    parser.add_argument("data", metavar="DATA", help="folder of point files (searched recursively)")
    parser.add_argument("--task", choices=sorted(PROFILES), required=True)
    parser.add_argument("-o", "--out", required=True, metavar="OUTDIR", help="output folder")
    parser.add_argument("--profile", choices=("smoke", "cpu", "paper"), default="cpu")
    for option, what in [
        ("--num-points", "points per cloud"),
        ("--epochs", "sampler epochs"),
        ("--task-epochs", "task-network epochs"),
        ("--batch-size", "clouds per batch"),
    ]:
        parser.add_argument(option, type=positive_int, help=f"{what} (the profile's)")
    parser.add_argument(
        "--val-fraction", type=float, default=0.2, help="held-out share in [0, 1) (0.2)"
    )
    parser.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
    parser.set_defaults(run=run)


class Task(NamedTuple):
    r"""A task network, its training loss :obj:`loss(pos, batch, data)` and its per-cloud
    metric :obj:`metric(pos, batch, data) -> [B]` on the points :obj:`(pos, batch)` of the
    clouds of :obj:`data`."""

    name: str
    metric_name: str
    network: torch.nn.Module
    loss: Callable[[Tensor, Tensor, Any], Tensor]
    metric: Callable[[Tensor, Tensor, Any], Tensor]


def make_task(task: str, config: TrainConfig, num_classes: int) -> Task:
    r"""Vanilla PointNet (cross entropy, accuracy) or the autoencoder (Chamfer distance of
    the reconstruction to the complete cloud, as loss and metric)."""
    widths = config.task_channels
    if task == "classification":
        net = PointNet(num_classes, False, False, widths[:-1], widths[-1], config.head_channels)
        return Task(
            "pointnet_vanilla",
            "accuracy",
            net,
            lambda pos, batch, data: F.cross_entropy(net(pos, batch), data.y),
            lambda pos, batch, data: (net(pos, batch).argmax(-1) == data.y).double(),
        )
    ae = PointCloudAE(config.num_points, widths, config.head_channels)

    def chamfer(pos: Tensor, batch: Tensor, data: Any) -> Tensor:
        out = ae(pos, batch)
        return chamfer_distance(out.pos, data.pos, out.batch, data.batch, reduction="none")

    return Task("autoencoder", "chamfer", ae, lambda *a: chamfer(*a).mean(), chamfer)


def run(args: argparse.Namespace) -> int:
    # Under torchrun: join the process group; only rank 0 reports errors and writes files.
    args.device = init_distributed(args.device)
    if not 0.0 <= args.val_fraction < 1.0 or args.seed < 0:
        report_error(f"--val-fraction must be in [0, 1) and --seed at least 0 (got {args.argv})")
        return 2
    if not Path(args.data).is_dir():
        report_error(f"{args.data}: not a folder (DATA is a folder of point files)")
        return 1
    started, out, progress = time.time(), Path(args.out), not args.no_progress
    config = _config(args)
    seed_everything(args.seed)  # every rank: the same clouds, split and initial weights
    labelled = args.task == "classification"
    clouds, classes, failed = load_clouds(args.data, config.num_points, labelled)
    if len(clouds) < 2 or (labelled and len(classes) < 2):
        need = "clouds in at least two class folders" if labelled else "at least two clouds"
        report_error(f"{args.data}: {len(clouds)} usable point files; training needs {need}")
        return exit_status(max(failed, 1))
    train, val = stratified_split(torch.cat([c.y for c in clouds]), args.val_fraction, args.seed)
    train_set, val_set = [clouds[i] for i in train], [clouds[i] for i in val]
    batch_size = min(config.batch_size, len(train_set))
    if batch_size < get_world_size():
        report_error(
            f"{len(train_set)} training clouds ({len(val_set)} held out) in batches of "
            f"{batch_size}: too few for {get_world_size()} processes (each needs a cloud of "
            "every batch)"
        )
        return 2
    # One process: DataLoader(shuffle=True, drop_last=True); under torchrun this rank's
    # share of every global batch.
    loader = training_loader(train_set, batch_size, seed=args.seed)
    if is_main_process():
        print(
            f"{args.data}: {len(train_set)} training / {len(val_set)} held-out clouds"
            + (f", {len(classes)} classes" if labelled else "")
            + f", {config.num_points} points; {args.task} profile {args.profile}"
            + (f"; {get_world_size()} processes" if is_distributed() else ""),
            file=sys.stderr,
        )

    task = make_task(args.task, config, len(classes))
    task.network.to(args.device)
    checkpoints = out / "checkpoints"
    fit_model(
        task.network,
        lambda data: task.loss(data.pos, data.batch, data),
        loader,
        epochs=config.task_epochs,
        lr=config.task_lr,
        checkpoint=checkpoints / f"{task.name}.pt",
        lr_schedule=config.lr_schedule,
        device=args.device,
        progress=progress,
        desc=f"train {task.name}",
    )
    freeze(task.network)
    sampler = SampleNet(config.num_points, k=config.k, progressive=True, **config.sampler)
    fit_sampler(
        sampler.to(args.device),
        lambda out, data: task.loss(out.pos, out.batch, data),
        loader,
        epochs=config.sampler_epochs,
        lr=config.sampler_lr,
        loss_weights=config.loss,
        control_sizes=config.control_sizes,
        reduction=config.reduction,
        lr_schedule=config.lr_schedule,
        checkpoint=checkpoints / "samplenet_progressive.pt",
        device=args.device,
        progress=progress,
        desc="train samplenet_progressive",
    )
    validation = None
    if val_set:
        val_loader = DataLoader(val_set, batch_size)
        validation = validate(task, sampler, val_loader, config.sizes, args.seed, args.device)
    if not is_main_process():
        return exit_status(failed)
    record = {
        "task": args.task,
        "task_network": repr(task.network),
        "data": str(Path(args.data).resolve()),
        "files": len(clouds),
        "failed_files": failed,
        "classes": classes,
        "training_clouds": len(train_set),
        "held_out_clouds": len(val_set),
        "profile": args.profile,
        "settings": json.loads(json.dumps(asdict(config))),
        "seed": args.seed,
        "processes": get_world_size(),
        "validation": validation,
        "seconds": round(time.time() - started, 1),
        "command": shlex.join(["tg-samplenet", *args.argv]),
        "date": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "device": str(args.device),
        "python": platform.python_version(),
        "versions": {name: _version(name) for name in ("tg_samplenet", "torch", "torch_geometric")},
    }
    sampler.save(out / SAMPLER_FILE, metadata=record)
    text = json.dumps(record, indent=2) + "\n"
    atomic_write(out / "train.json", lambda f: f.write(text.encode()))
    if validation is not None:
        print(_table(validation), file=sys.stderr)
    print(f"wrote {out / SAMPLER_FILE} and {out / 'train.json'}", file=sys.stderr)
    return exit_status(failed)


def load_clouds(root: str, num_points: int, labelled: bool) -> tuple[list[Data], list[str], int]:
    r"""The point files under :obj:`root` as :class:`~torch_geometric.data.Data` (centred,
    in the unit sphere, :obj:`num_points` points each), the class names (the first-level
    sub-folders, sorted) and the number of files that could not be used (each reported on
    stderr). :obj:`y` is the class index (0 for files outside class folders)."""
    transform = Compose(
        [NormalizeUnitSphere(), FixedPoints(num_points, replace=False, allow_duplicates=True)]
    )
    files = find_point_files([root])
    classes = sorted({rel.parts[0] for _, rel in files if len(rel.parts) > 1})
    clouds, failed = [], 0
    for path, rel in files:
        try:
            if labelled and len(rel.parts) < 2:
                raise InputError("path", f"{path}: not in a class folder (DATA/<class>/<file>)")
            pos = torch.from_numpy(read_point_file(path).pos)
        except InputError as error:
            report_error(str(error))
            failed += 1
            continue
        y = torch.tensor([classes.index(rel.parts[0]) if len(rel.parts) > 1 else 0])
        clouds.append(transform(Data(pos=pos, y=y)))
    return clouds, classes, failed


def validate(
    task: Task,
    sampler: SampleNet,
    loader: DataLoader,
    sizes: tuple[int, ...],
    seed: int,
    device: torch.device,
) -> dict[str, Any]:
    r"""The task metric, averaged over the held-out clouds of :obj:`loader` (all of the same
    size), on the complete clouds and on :math:`m` points of each for every :math:`m` of
    :obj:`sizes`: farthest point sampling, uniform random sampling (seeded) and the
    sampler's first :math:`m` points. Under torchrun each rank measures its share of the
    batches (random sampling all of them, to draw what one process draws)."""
    shard = shard_loader(loader)  # this rank's batches (all of them in one process)
    sampler.eval()

    def measure(select: Optional[Callable[[Batch], Tensor]] = None, whole: bool = False):
        def per_cloud(part: DataLoader) -> Tensor:
            values = []
            with torch.no_grad():
                for data in part:
                    data = data.to(device)
                    index = slice(None) if select is None else select(data)
                    values.append(task.metric(data.pos[index], data.batch[index], data))
            return torch.cat(values).cpu()

        return float(evaluate_sharded(per_cloud, loader, shard, whole).double().mean())

    def fps(m: int) -> Callable[[Batch], Tensor]:
        return lambda data: farthest_point_sampling(
            data.pos, data.batch, torch.full((data.num_graphs,), m, device=device)
        )

    def random(m: int) -> Callable[[Batch], Tensor]:
        generator = torch.Generator().manual_seed(seed)

        def select(data: Batch) -> Tensor:
            B, n = data.num_graphs, data.num_nodes // data.num_graphs
            keep = torch.rand(B, n, generator=generator).argsort(dim=1)[:, :m].sort(1).values
            return (keep.to(device) + data.ptr[:-1, None]).view(-1)

        return select

    def learned(m: int) -> Callable[[Batch], Tensor]:
        return lambda data: sampler(data.pos, data.batch, num_samples=m).index

    table: dict[str, Any] = {"metric": task.metric_name, "complete": measure()}
    for name, sample in (("fps", fps), ("random", random), ("samplenet_progressive", learned)):
        table[name] = {str(m): measure(sample(m), whole=name == "random") for m in sizes}
    return table


def _config(args: argparse.Namespace) -> TrainConfig:
    r"""The profile with the command line's overrides; the control sizes are those not
    above the number of points, the reported sizes those below it."""
    config = PROFILES[args.task][args.profile]
    overrides = {
        "num_points": args.num_points,
        "sampler_epochs": args.epochs,
        "task_epochs": args.task_epochs,
        "batch_size": args.batch_size,
    }
    config = replace(config, **{k: v for k, v in overrides.items() if v is not None})
    n = config.num_points
    controls = tuple(c for c in config.control_sizes if c <= n) or (n,)
    sizes = tuple(m for m in config.sizes if m < n) or (max(1, n // 2),)
    return replace(config, control_sizes=controls, sizes=sizes)


def _version(package: str) -> Optional[str]:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None


def _table(validation: dict[str, Any]) -> str:
    sizes = list(validation["fps"])
    lines = [f"held-out {validation['metric']} (complete clouds: {validation['complete']:.4g})"]
    lines.append("sampler".ljust(24) + "".join(f"m={m}".rjust(10) for m in sizes))
    for name in ("fps", "random", "samplenet_progressive"):
        lines.append(name.ljust(24) + "".join(f"{validation[name][m]:10.4g}" for m in sizes))
    return "\n".join(lines)
