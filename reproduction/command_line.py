r"""The command line every example shares: the flags, the chosen profile (a run configuration
of :mod:`reproduction.config`) with its overrides, the device, the start-up of a run
(:func:`start_example`), and the training and evaluation splits they name.

The examples set :obj:`OMP_WAIT_POLICY=PASSIVE` before they import torch: on CPUs shared with
other processes, OpenMP threads that spin while waiting stall each other (10x slower steps),
and waiting passively costs next to nothing on an idle machine. It only takes effect before
torch starts its thread pool, so it cannot be set from here."""

from __future__ import annotations

import argparse
import time
from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path
from typing import NamedTuple

import torch
from torch_geometric.data import Dataset

from reproduction.config import Profile
from reproduction.datasets import DATASET_NAMES, get_dataset
from tg_samplenet.training import seed_everything
from tg_samplenet.training.distributed import init_distributed, main_process_first

__all__ = [
    "ExampleRun",
    "common_parser",
    "load_splits",
    "resolve_device",
    "resolve_profile",
    "start_example",
]

# Flags that override the profile field of the same name.
_OVERRIDES = ("task_epochs", "sampler_epochs", "batch_size", "task_lr", "sampler_lr")


_EPILOG = (
    "Every stage resumes from its checkpoint in --out/checkpoints: rerunning a finished or "
    "interrupted command continues where it stopped. Under torchrun (e.g. torchrun "
    "--nproc_per_node 4 EXAMPLE --device cuda) every batch is split over the processes, each "
    "process evaluates part of the test data and the results are gathered, so the numbers are "
    "those of one process; only rank 0 writes files."
)


class ExampleRun(NamedTuple):
    r"""What :func:`start_example` sets up for one run of an example."""

    profile: Profile  #: the chosen profile with the command-line overrides
    device: torch.device  #: :obj:`cuda:LOCAL_RANK` under :obj:`torchrun`
    out_dir: Path  #: where results, plots and checkpoints go
    ckpt_dir: Path  #: :obj:`out_dir / "checkpoints"`
    progress: bool  #: whether to show progress bars
    started: float  #: :func:`time.time` at the start


def start_example(
    args: argparse.Namespace, profiles: Mapping[str, Profile], task: str
) -> ExampleRun:
    r"""Starts a run of the example for :obj:`task`: resolves the profile and the device
    (joining the process group under :obj:`torchrun`), names the output folder
    (:obj:`--out`, by default :obj:`runs/<task>-<profile>`) and seeds every generator with
    :obj:`--seed`."""
    profile = resolve_profile(args, profiles)
    device = init_distributed(resolve_device(args.device))
    out_dir = Path(args.out or f"runs/{task}-{args.profile}")
    started = time.time()
    seed_everything(args.seed)
    return ExampleRun(
        profile, device, out_dir, out_dir / "checkpoints", not args.no_progress, started
    )


def common_parser(
    description: str, profiles: Mapping[str, Profile], default: str = "cpu"
) -> argparse.ArgumentParser:
    r"""The flags every example takes: data set, output folder, device, profile (one of
    :obj:`profiles`, :obj:`default` unless given; :obj:`--smoke` for :obj:`"smoke"`), seed,
    overrides of the profile's epochs, batch size, learning rates and sample sizes, and
    :obj:`--no-progress`."""
    parser = argparse.ArgumentParser(
        description=description,
        epilog=_EPILOG,
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument(
        "--dataset",
        default="synthetic",
        choices=list(DATASET_NAMES),
        help="data set: the built-in procedural shapes need no download",
    )
    parser.add_argument("--data-root", default=None, help="folder of a real data set")
    parser.add_argument("--out", default=None, help="output folder (results, plots, checkpoints)")
    parser.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N")
    parser.add_argument(
        "--profile", default=default, choices=list(profiles), help="the run configuration"
    )
    parser.add_argument("--smoke", action="store_true", help="same as --profile smoke")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--val-fraction",
        type=float,
        default=None,
        help="train on a seeded, class-stratified hold-out of the training split and evaluate "
        "on the held-out share (for data sets without a test split, and model selection)",
    )
    for name in _OVERRIDES:
        kind = float if name.endswith("lr") else int
        parser.add_argument("--" + name.replace("_", "-"), type=kind, default=None)
    parser.add_argument(
        "--sizes", type=int, nargs="+", default=None, help="sample sizes m to evaluate"
    )
    parser.add_argument(
        "--train-sizes", type=int, nargs="+", default=None, help="m of the fixed-size samplers"
    )
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bars")
    return parser


def resolve_profile(args: argparse.Namespace, profiles: Mapping[str, Profile]) -> Profile:
    r"""The chosen profile (:obj:`--smoke` sets :obj:`args.profile` to :obj:`"smoke"`) with
    the command-line overrides applied; sample sizes outside :math:`[1, n]` end the run
    with a message."""
    if args.smoke:
        args.profile = "smoke"
    overrides = {
        name: getattr(args, name) for name in _OVERRIDES if getattr(args, name) is not None
    }
    if args.sizes:
        overrides["sizes"] = tuple(sorted(args.sizes, reverse=True))
    if args.train_sizes:
        overrides["train_sizes"] = tuple(sorted(args.train_sizes, reverse=True))
    profile = replace(profiles[args.profile], **overrides)
    for size in profile.sizes + profile.train_sizes:
        if not 1 <= size <= profile.num_points:
            raise SystemExit(f"sample size {size} must lie in [1, {profile.num_points}]")
    return profile


def resolve_device(name: str) -> torch.device:
    r"""A :class:`torch.device`, with a clear message when CUDA is asked for but missing."""
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SystemExit(f"--device {name}: CUDA is not available on this machine")
    return device


def load_splits(
    args: argparse.Namespace, profile: Profile, **kwargs
) -> tuple[Dataset, Dataset, str]:
    r"""The training split and the split to evaluate on, named by :obj:`--dataset`,
    :obj:`--data-root`, :obj:`--seed` and :obj:`--val-fraction`: the data set's test split,
    or with :obj:`--val-fraction` the held-out share of its training split (then the third
    value is :obj:`"val"`, else :obj:`"test"`). Under :obj:`torchrun` rank 0 builds the
    caches first. :obj:`kwargs` go to :func:`~reproduction.datasets.get_dataset`.

    :rtype: :obj:`(train_set, eval_set, eval_split)`
    """
    eval_split = "test" if args.val_fraction is None else "val"

    def split(name: str, samples_per_class: int) -> Dataset:
        return get_dataset(
            args.dataset,
            args.data_root,
            name,
            num_points=profile.num_points,
            seed=args.seed,
            val_fraction=args.val_fraction,
            samples_per_class=samples_per_class,
            **kwargs,
        )

    with main_process_first():  # rank 0 writes a data set's cache, the others read it
        train_set = split("train", profile.samples_per_class)
        eval_set = split(eval_split, profile.test_samples_per_class)
    return train_set, eval_set, eval_split
