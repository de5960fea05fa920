r"""The command line every example shares: the flags, the chosen profile with its overrides,
the device, and the training and evaluation splits they name."""

from __future__ import annotations

import argparse
from collections.abc import Mapping
from dataclasses import replace

import torch
from torch_geometric.data import Dataset

from tg_samplenet.datasets import DATASET_NAMES, get_dataset
from tg_samplenet.distributed import main_process_first
from tg_samplenet.experiments.config import Profile

__all__ = ["common_parser", "load_splits", "resolve_device", "resolve_profile"]

# Flags that override the profile field of the same name.
_OVERRIDES = ("task_epochs", "sampler_epochs", "batch_size", "task_lr", "sampler_lr")


def common_parser(description: str, profiles: Mapping[str, Profile]) -> argparse.ArgumentParser:
    r"""The flags every example takes: data set, output folder, device, profile (and
    :obj:`--smoke`), seed, overrides of the profile's epochs, batch size, learning rates and
    sample sizes, and :obj:`--no-progress`."""
    parser = argparse.ArgumentParser(
        description=description, formatter_class=argparse.ArgumentDefaultsHelpFormatter
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
    parser.add_argument("--profile", default="cpu", choices=list(profiles))
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
    caches first. :obj:`kwargs` go to :func:`~tg_samplenet.datasets.get_dataset`.

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
