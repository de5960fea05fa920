r"""``tg-samplenet train``: a SampleNet-Progressive for one of the examples' task networks,
trained on a folder of point files.

The clouds are centred, scaled into the unit sphere and resampled to the profile's number
of points (PyG's FixedPoints); a held-out part (--val-fraction) measures the result. The
example's task network (vanilla PointNet for classification, with labels from the
first-level sub-folders DATA/<class>/...; the point-cloud autoencoder for reconstruction,
no labels) is trained on the complete clouds and frozen, then the progressive sampler is
trained against it with the example's profile (tg_samplenet.fit_sampler). Every stage
resumes from its checkpoint in OUTDIR/checkpoints. OUTDIR/samplenet_progressive.sampler.pt
holds the sampler and a record of its training (`tg-samplenet info` prints it),
OUTDIR/train.json the held-out table: the task metric on the complete clouds, on FPS
samples and on the sampler's. Bad files are reported and left out; the exit status is
their number.

Under torchrun (torchrun --nproc_per_node N -m tg_samplenet.cli train ...; --nnodes across
machines) both stages train data-parallel as the examples do: every global batch of
--batch-size clouds is split over the N processes (gloo on the CPU, nccl with --device
cuda, one GPU per process), BatchNorm is synchronised, each process measures part of the
held-out clouds and the results are gathered, and only rank 0 reports and writes OUTDIR.
A rerun resumes from the checkpoints with any number of processes.
"""

from __future__ import annotations

import argparse
import json
import math
import shlex
import sys
import time
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any, Callable

import torch
from torch import Tensor
from torch_geometric.data import Data
from torch_geometric.loader import DataLoader
from torch_geometric.transforms import Compose, FixedPoints

from reproduction.baselines import baseline_samplers
from reproduction.config import CLASSIFICATION, RECONSTRUCTION, Profile
from reproduction.environment import run_metadata
from reproduction.samplers import (
    gather_sample,
    make_sampler,
    samplenet_indices,
    train_sampler,
)
from reproduction.tasks.classification import PointNet, classification_loss, evaluate_accuracy
from reproduction.tasks.reconstruction import (
    PointCloudAE,
    evaluate_reconstruction,
    reconstruction_errors,
)
from tg_samplenet.cli.common import (
    add_device_argument,
    command_parser,
    exit_status,
    positive_int,
    report_error,
)
from tg_samplenet.cli.point_files import (
    PointFileError,
    find_point_files,
    read_point_file,
)
from tg_samplenet.datasets.normalize import NormalizeUnitSphere
from tg_samplenet.io import atomic_save, atomic_write
from tg_samplenet.nn.sampler import SampleNet
from tg_samplenet.training.distributed import (
    all_reduce_sum,
    evaluate_sharded,
    get_world_size,
    init_distributed,
    is_distributed,
    is_main_process,
    shard_loader,
    training_loader,
)
from tg_samplenet.training.fit import freeze
from tg_samplenet.training.loop import fit_model, seed_everything

__all__ = ["add_parser", "run", "load_clouds"]

PROFILES = {"classification": CLASSIFICATION, "reconstruction": RECONSTRUCTION}
SAMPLER_FILE = "samplenet_progressive.sampler.pt"

SUMMARY = "train a progressive sampler for an example's task network on a folder of files"


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    parser = command_parser(subparsers, "train", SUMMARY, __doc__)
    parser.add_argument("data", metavar="DATA", help="folder of point files (searched recursively)")
    parser.add_argument(
        "--task", choices=sorted(PROFILES), required=True, help="whose task network"
    )
    parser.add_argument("-o", "--out", required=True, metavar="OUTDIR", help="output folder")
    parser.add_argument(
        "--profile",
        choices=("smoke", "cpu", "paper"),
        default="cpu",
        help="the example's settings (default: cpu)",
    )
    parser.add_argument(
        "--num-points", type=positive_int, metavar="N", help="points per cloud (profile's)"
    )
    parser.add_argument(
        "--epochs", type=positive_int, metavar="E", help="sampler epochs (profile's)"
    )
    parser.add_argument(
        "--task-epochs", type=positive_int, metavar="E", help="task-network epochs (profile's)"
    )
    parser.add_argument(
        "--batch-size", type=positive_int, metavar="B", help="clouds per batch (profile's)"
    )
    parser.add_argument(
        "--val-fraction",
        type=float,
        default=0.2,
        metavar="F",
        help="held-out share of the clouds for the report, in [0, 1) (default: 0.2)",
    )
    parser.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
    add_device_argument(parser)
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    parser.set_defaults(run=run)
    return parser


def run(args: argparse.Namespace) -> int:
    # Under torchrun: join the process group (cuda:LOCAL_RANK for a CUDA device); only
    # rank 0 reports errors and writes files.
    args.device = init_distributed(args.device)
    if not 0.0 <= args.val_fraction < 1.0:
        report_error(f"--val-fraction must be in [0, 1) (got {args.val_fraction})")
        return 2
    if not Path(args.data).is_dir():
        report_error(f"{args.data}: not a folder (DATA is a folder of point files)")
        return 1
    started = time.time()
    profile = _profile(args)
    out = Path(args.out)
    progress = not args.no_progress
    seed_everything(args.seed)  # every rank: the same clouds, split and initial weights

    labelled = args.task == "classification"
    clouds, classes, failed = load_clouds(args.data, profile.num_points, labelled)
    if len(clouds) < 2 or (labelled and len(classes) < 2):
        need = "clouds in at least two class folders" if labelled else "at least two clouds"
        report_error(f"{args.data}: {len(clouds)} usable point files; training needs {need}")
        return exit_status(max(failed, 1))
    order = torch.randperm(len(clouds)).tolist()
    num_val = min(len(clouds) - 1, math.ceil(args.val_fraction * len(clouds)))
    train_set = [clouds[i] for i in order[num_val:]]
    val_set = [clouds[i] for i in order[:num_val]]
    batch_size = min(profile.batch_size, len(train_set))
    if batch_size < get_world_size():
        report_error(
            f"{len(train_set)} training clouds in batches of {batch_size}: too few for "
            f"{get_world_size()} processes (each needs a cloud of every batch)"
        )
        return 2
    # One process: DataLoader(shuffle=True, drop_last=True); under torchrun this rank's
    # share of every global batch, reshuffled from the seed every epoch.
    loader = training_loader(train_set, batch_size, seed=args.seed)
    val_loader = DataLoader(val_set, batch_size)
    if is_main_process():
        print(
            f"{args.data}: {len(train_set)} training / {len(val_set)} held-out clouds"
            + (f", {len(classes)} classes" if labelled else "")
            + f", {profile.num_points} points; {args.task} profile {args.profile}"
            + (f"; {get_world_size()} processes" if is_distributed() else ""),
            file=sys.stderr,
        )

    task = TASKS[args.task](profile, len(classes), args.device)
    fit_model(
        task.network,
        task.fit_loss,
        loader,
        epochs=profile.task_epochs,
        lr=profile.task_lr,
        checkpoint=out / "checkpoints" / f"{task.name}.pt",
        device=args.device,
        progress=progress,
        desc=f"train {task.name}",
        **task.fit_options,
    )
    freeze(task.network)
    sampler = make_sampler(profile, profile.num_points, args.device, progressive=True)
    train_sampler(
        sampler,
        profile,
        task.sampler_loss,
        loader,
        out / "checkpoints" / "samplenet_progressive.pt",
        args.device,
        progress,
    )

    validation = _validate(task, sampler, val_loader, profile, args) if val_set else None
    if not is_main_process():
        return exit_status(failed)  # rank 0 writes and reports
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
        "settings": json.loads(json.dumps(asdict(profile))),
        "seed": args.seed,
        "processes": get_world_size(),
        "validation": validation,
        "seconds": round(time.time() - started, 1),
        **run_metadata("tg-samplenet", args.argv, str(args.device)),
    }
    record["command"] = shlex.join(["tg-samplenet", *args.argv])
    state = {"config": sampler.config, "state_dict": sampler.state_dict(), "training": record}
    atomic_save(state, out / SAMPLER_FILE)
    text = json.dumps(record, indent=2) + "\n"
    atomic_write(out / "train.json", lambda f: f.write(text.encode()))
    if validation is not None:
        print(_table(validation, task.metric), file=sys.stderr)
    print(f"wrote {out / SAMPLER_FILE} and {out / 'train.json'}", file=sys.stderr)
    return exit_status(failed)


def load_clouds(root: str, num_points: int, labelled: bool) -> tuple[list[Data], list[str], int]:
    r"""The point files under :obj:`root` as PyG :class:`~torch_geometric.data.Data`
    (centred, in the unit sphere, :obj:`num_points` points each), the class names (the
    first-level sub-folders, sorted) and the number of files that could not be used (each
    reported on stderr). :obj:`y` is the class index (0 without class folders)."""
    transform = Compose(
        [NormalizeUnitSphere(), FixedPoints(num_points, replace=False, allow_duplicates=True)]
    )
    files = find_point_files([root])
    classes = sorted({rel.parts[0] for _, rel in files if len(rel.parts) > 1})
    clouds, failed = [], 0
    for path, rel in files:
        if labelled and len(rel.parts) < 2:
            report_error(f"{path}: not in a class folder (DATA/<class>/<file>)")
            failed += 1
            continue
        try:
            file = read_point_file(path)
        except PointFileError as error:
            report_error(str(error))
            failed += 1
            continue
        y = classes.index(rel.parts[0]) if len(rel.parts) > 1 else 0
        clouds.append(transform(Data(pos=torch.from_numpy(file.pos), y=torch.tensor([y]))))
    return clouds, classes, failed


class _Task:
    r"""What ``train`` needs of an example's task: its network, the loss that trains it on
    complete clouds, the sampler's task loss and the metric on held-out clouds:
    :obj:`evaluate(loader, shard, device, sample=None)`, over every cloud of :obj:`loader`,
    computed under torchrun on this rank's batches :obj:`shard`
    (:func:`~tg_samplenet.training.distributed.shard_loader`) and combined over the ranks."""

    name: str
    metric: str
    network: torch.nn.Module
    fit_options: dict[str, Any] = {}
    fit_loss: Callable[[Any], torch.Tensor]
    sampler_loss: Callable[[Any, Any], torch.Tensor]
    evaluate: Callable[..., float]


class _Classification(_Task):
    name, metric = "pointnet_vanilla", "accuracy"

    def __init__(self, profile: Profile, num_classes: int, device: torch.device):
        # The progressive sampler trains against vanilla PointNet, as in the example.
        self.network = PointNet(
            num_classes,
            False,
            False,
            point_channels=profile.point_channels,
            global_channels=profile.task_width,
            head_channels=profile.head_channels,
        ).to(device)
        net = self.network
        self.fit_options = dict(
            lr_schedule=profile.lr_schedule, decay_samples=profile.task_decay_samples
        )
        self.fit_loss = lambda data: classification_loss(net, data.pos, data.batch, data.y)
        self.sampler_loss = lambda out, data: classification_loss(net, out.pos, out.batch, data.y)

        def accuracy(loader: DataLoader, shard: DataLoader, device, sample=None) -> float:
            if not is_distributed():
                return evaluate_accuracy(net, loader, device, sample)
            # Each rank counts the correct predictions of its batches; the counts add up.
            n = len(shard.dataset)
            correct = round(evaluate_accuracy(net, shard, device, sample) * n) if n else 0
            return all_reduce_sum(correct) / len(loader.dataset)

        self.evaluate = accuracy


class _Reconstruction(_Task):
    name, metric = "autoencoder", "chamfer"

    def __init__(self, profile: Profile, num_classes: int, device: torch.device):
        encoder = (*profile.encoder_channels, profile.task_width)
        self.network = PointCloudAE(profile.num_points, encoder, profile.decoder_channels)
        ae = self.network.to(device)
        self.fit_loss = lambda data: reconstruction_errors(
            ae, data.pos, data.batch, data.pos, data.batch
        ).mean()
        self.sampler_loss = lambda out, data: reconstruction_errors(
            ae, out.pos, out.batch, data.pos, data.batch
        ).mean()

        def chamfer(loader: DataLoader, shard: DataLoader, device, sample=None) -> float:
            def errors(part: DataLoader) -> Tensor:
                return evaluate_reconstruction(ae, part, device, sample)[0]

            # Every cloud's error, this rank's share gathered in the loader's order.
            return float(evaluate_sharded(errors, loader, shard).mean())

        self.evaluate = chamfer


TASKS = {"classification": _Classification, "reconstruction": _Reconstruction}


def _profile(args: argparse.Namespace) -> Profile:
    r"""The example's profile with the command line's overrides; the control sizes are
    those not above the number of points."""
    profile = PROFILES[args.task][args.profile]
    overrides = {
        "num_points": args.num_points,
        "sampler_epochs": args.epochs,
        "task_epochs": args.task_epochs,
        "batch_size": args.batch_size,
    }
    profile = replace(profile, **{k: v for k, v in overrides.items() if v is not None})
    n = profile.num_points
    controls = tuple(c for c in profile.control_sizes if c <= n) or (n,)
    sizes = tuple(m for m in profile.sizes if m < n) or (max(1, n // 2),)
    return replace(profile, control_sizes=controls, sizes=sizes)


def _validate(
    task: _Task, sampler: SampleNet, loader: DataLoader, profile: Profile, args
) -> dict[str, Any]:
    r"""The task metric on the held-out clouds: complete, and per sample size with FPS and
    with the sampler's first :math:`m` points."""
    fps = baseline_samplers(args.seed)["fps"]  # deterministic: no draw to keep in step
    learned = samplenet_indices(sampler)
    shard = shard_loader(loader)  # this rank's batches (all of them in one process)
    table: dict[str, Any] = {"metric": task.metric}
    table["complete"] = task.evaluate(loader, shard, args.device)
    for name, sample in (("fps", fps), ("samplenet_progressive", learned)):
        table[name] = {
            str(m): task.evaluate(loader, shard, args.device, gather_sample(sample, m))
            for m in profile.sizes
        }
    return table


def _table(validation: dict[str, Any], metric: str) -> str:
    sizes = list(validation["fps"])
    lines = [f"held-out {metric} (complete clouds: {validation['complete']:.4g})"]
    lines.append("sampler".ljust(24) + "".join(f"m={m}".rjust(10) for m in sizes))
    for name in ("fps", "samplenet_progressive"):
        row = "".join(f"{validation[name][m]:10.4g}" for m in sizes)
        lines.append(name.ljust(24) + row)
    return "\n".join(lines)
