r"""The command line every example shares: the flags, the chosen profile with its overrides,
and the device."""

from __future__ import annotations

import argparse
from collections.abc import Mapping
from dataclasses import replace

import torch

from tg_samplenet.datasets import DATASET_NAMES
from tg_samplenet.experiments.config import Profile

__all__ = ["common_parser", "resolve_device", "resolve_profile"]

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
