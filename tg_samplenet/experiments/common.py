r"""What the three example scripts share: the command line, profiles, devices, loaders and the
evaluation of samplers over sample sizes. Each example keeps only its task."""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from tg_samplenet.experiments.baselines import fps_sample, random_sample, voxel_sample

__all__ = [
    "Profile",
    "common_parser",
    "resolve_profile",
    "resolve_device",
    "freeze",
    "baseline_samplers",
    "run_metadata",
    "sampler_factory",
    "train_samplers",
    "learned_samplers",
]


@dataclass(frozen=True)
class Profile:
    r"""The sizes and schedules of one run of an example. :obj:`"paper"` holds the authors'
    values (see :obj:`../shared/reference/samplenet-reference.md`), :obj:`"cpu"` a run that
    finishes in minutes on two cores, :obj:`"smoke"` the whole pipeline on tiny data.

    Attributes:
        num_points (int): Points per input cloud :math:`n`.
        sizes (tuple of int): Sample sizes :math:`m` to evaluate.
        train_sizes (tuple of int): Sizes for which fixed-size samplers are trained.
        samples_per_class (int): Training clouds per class of the synthetic data set.
        test_samples_per_class (int): Test clouds per class of the synthetic data set.
        task_epochs (int): Epochs of the task network.
        sampler_epochs (int): Epochs of each sampler.
        batch_size (int): Clouds per batch.
        task_lr (float): Adam learning rate of the task network.
        sampler_lr (float): Adam learning rate of the samplers.
        task_width (int): Global feature width of the task network.
        control_sizes (tuple of int): Control sizes of SampleNet-Progressive.
        extra (dict): Task-specific settings.
    """

    num_points: int
    sizes: tuple[int, ...]
    train_sizes: tuple[int, ...]
    samples_per_class: int
    test_samples_per_class: int
    task_epochs: int
    sampler_epochs: int
    batch_size: int
    task_lr: float
    sampler_lr: float
    task_width: int
    control_sizes: tuple[int, ...]
    extra: dict[str, Any] = field(default_factory=dict)


def common_parser(description: str, profiles: Sequence[str]) -> argparse.ArgumentParser:
    r"""The flags every example takes."""
    parser = argparse.ArgumentParser(
        description=description, formatter_class=argparse.ArgumentDefaultsHelpFormatter
    )
    parser.add_argument(
        "--dataset",
        default="synthetic",
        choices=["synthetic", "modelnet10", "modelnet40", "h5", "shapenet"],
        help="data set: the built-in procedural shapes need no download",
    )
    parser.add_argument("--data-root", default=None, help="folder of a real data set")
    parser.add_argument("--out", default=None, help="output folder (results, plots, checkpoints)")
    parser.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N")
    parser.add_argument("--profile", default="cpu", choices=list(profiles))
    parser.add_argument("--smoke", action="store_true", help="same as --profile smoke")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--task-epochs", type=int, default=None)
    parser.add_argument("--sampler-epochs", type=int, default=None)
    parser.add_argument("--batch-size", type=int, default=None)
    parser.add_argument("--task-lr", type=float, default=None)
    parser.add_argument("--sampler-lr", type=float, default=None)
    parser.add_argument(
        "--sizes", type=int, nargs="+", default=None, help="sample sizes m to evaluate"
    )
    parser.add_argument(
        "--train-sizes", type=int, nargs="+", default=None, help="m of the fixed-size samplers"
    )
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bars")
    return parser


def resolve_profile(args: argparse.Namespace, profiles: dict[str, Profile]) -> Profile:
    r"""The chosen profile with the command-line overrides applied."""
    if args.smoke:
        args.profile = "smoke"
    profile = profiles[args.profile]
    overrides = {
        name: getattr(args, name)
        for name in ("task_epochs", "sampler_epochs", "batch_size", "task_lr", "sampler_lr")
        if getattr(args, name, None) is not None
    }
    if args.sizes:
        overrides["sizes"] = tuple(sorted(args.sizes, reverse=True))
    if args.train_sizes:
        overrides["train_sizes"] = tuple(sorted(args.train_sizes, reverse=True))
    profile = replace(profile, **overrides)
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


def freeze(module: torch.nn.Module) -> torch.nn.Module:
    r"""Puts a task network in eval mode with no gradients to its parameters, as the paper
    trains only the sampler."""
    module.eval()
    for p in module.parameters():
        p.requires_grad_(False)
    return module


def baseline_samplers(seed: int) -> dict[str, Callable[[Tensor, Tensor, int], Tensor]]:
    r"""PyG's farthest point sampling, seeded random sampling and voxel-grid sampling at
    matched counts, as :obj:`sample(pos, batch, m) -> index`."""
    generator = torch.Generator().manual_seed(seed)
    return {
        "fps": fps_sample,
        "random": lambda pos, batch, m: random_sample(pos, batch, m, generator),
        "voxel": voxel_sample,
    }


def run_metadata(args: argparse.Namespace, profile: Profile, started: float) -> dict[str, Any]:
    r"""Command, profile, versions and machine of a run, stored in :obj:`results.json`."""
    import torch_geometric

    return {
        "command": " ".join([Path(sys.argv[0]).name, *sys.argv[1:]]),
        "profile": args.profile,
        "settings": {f.name: _plain(getattr(profile, f.name)) for f in fields(profile)},
        "dataset": args.dataset,
        "seed": args.seed,
        "device": str(args.device),
        "seconds": round(time.time() - started, 1),
        "versions": {
            "python": platform.python_version(),
            "torch": torch.__version__,
            "torch_geometric": torch_geometric.__version__,
        },
        "machine": f"{platform.machine()}, {torch.get_num_threads()} threads",
    }


def _plain(value: Any) -> Any:
    return json.loads(json.dumps(value, default=list)) if not isinstance(value, dict) else value


def profile_dict(profile: Profile) -> dict[str, Any]:
    r"""The profile as a plain dict."""
    return asdict(profile)


def load_split(
    name: str,
    root: str | None,
    split: str,
    num_points: int,
    seed: int,
    samples_per_class: int,
    categories: Sequence[str] | None = None,
):
    r"""One split of a data set for an example. :obj:`samples_per_class` (the profile's
    training or test count) sizes the built-in synthetic data only; a real data set keeps
    all its clouds of the selected :obj:`categories`."""
    from tg_samplenet.datasets import get_dataset

    kwargs: dict[str, Any] = dict(num_points=num_points, seed=seed, categories=categories)
    if name == "synthetic":
        kwargs["samples_per_class"] = samples_per_class
    return get_dataset(name, root, split, **kwargs)


def samplenet_indices(sampler: torch.nn.Module) -> Callable[[Tensor, Tensor, int], Tensor]:
    r"""A trained :class:`~tg_samplenet.SampleNet` (in eval mode) behind the baselines'
    signature :obj:`sample(pos, batch, m) -> index`: its first :math:`m` hard samples."""
    return lambda pos, batch, m: sampler(pos, batch, num_samples=m).index


def gather_sample(
    sample: Callable[[Tensor, Tensor, int], Tensor], m: int
) -> Callable[[Tensor, Tensor], tuple[Tensor, Tensor]]:
    r"""Turns :obj:`sample(pos, batch, m) -> index` into a function
    :obj:`(pos, batch) -> (pos[index], batch[index])` that takes :math:`m` points per cloud."""

    def gather(pos: Tensor, batch: Tensor) -> tuple[Tensor, Tensor]:
        index = sample(pos, batch, m)
        return pos[index], batch[index]

    return gather


def sampler_factory(profile: Profile, k: int, device: Any) -> Callable[..., torch.nn.Module]:
    r""":obj:`make(m, **kwargs)`: a :class:`~tg_samplenet.SampleNet` of :obj:`m` outputs on
    :obj:`device` with :obj:`k` neighbours and whichever of :obj:`initial_temperature`,
    :obj:`sampler_point_channels` and :obj:`sampler_head_channels` the profile's
    :obj:`extra` sets (the defaults otherwise)."""
    from tg_samplenet.nn.sampler import SampleNet

    names = {
        "initial_temperature": "initial_temperature",
        "sampler_point_channels": "point_channels",
        "sampler_head_channels": "head_channels",
    }
    settings = {arg: profile.extra[key] for key, arg in names.items() if key in profile.extra}

    def make(m: int, **kwargs) -> torch.nn.Module:
        return SampleNet(m, k=k, **settings, **kwargs).to(device)

    return make


def train_samplers(
    make: Callable[..., torch.nn.Module],
    train: Callable[[torch.nn.Module, Path], None],
    train_sizes: Sequence[int],
    num_points: int,
    checkpoints: Path,
) -> tuple[dict[tuple[str, int], torch.nn.Module], torch.nn.Module]:
    r"""The samplers every example trains against its frozen task network, in this order:
    for each size :math:`m`, SampleNet and S-NET (:obj:`skip_projection=True`), then one
    SampleNet-Progressive of :obj:`num_points` outputs. :obj:`make(m, **kwargs)` builds a
    :class:`~tg_samplenet.SampleNet`, :obj:`train(sampler, checkpoint)` trains (or resumes)
    it. Returns :obj:`({(name, m): sampler}, progressive)`, all in eval mode."""
    fixed = {}
    for m in train_sizes:
        for name, skip in (("samplenet", False), ("snet", True)):
            sampler = make(m, skip_projection=skip)
            train(sampler, checkpoints / f"{name}_{m}.pt")
            fixed[name, m] = sampler.eval()
    progressive = make(num_points, progressive=True)
    train(progressive, checkpoints / "samplenet_progressive.pt")
    return fixed, progressive.eval()


def learned_samplers(
    fixed: dict[tuple[str, int], torch.nn.Module], progressive: torch.nn.Module, m: int
) -> dict[str, Callable[[Tensor, Tensor, int], Tensor]]:
    r"""What :func:`train_samplers` returned, as :obj:`sample(pos, batch, m) -> index` for
    size :obj:`m`: S-NET and SampleNet where one was trained for :obj:`m`, and the
    progressive sampler's first :obj:`m` points."""
    samplers = {
        name: samplenet_indices(fixed[name, m])
        for name in ("snet", "samplenet")
        if (name, m) in fixed
    }
    samplers["samplenet_progressive"] = samplenet_indices(progressive)
    return samplers
