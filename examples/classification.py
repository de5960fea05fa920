r"""SampleNet for classification (paper §4.1, Figs. 5 and 6, Table 1), on PyG batches.

1. Trains PointNet (with its input and feature transform nets) and vanilla PointNet on
   complete clouds.
2. Freezes them and trains, per sample size m, SampleNet and S-NET (SampleNet without the
   soft projection) against PointNet, and one SampleNet-Progressive against vanilla PointNet.
3. Evaluates instance accuracy on the test split with PyG's fps, random sampling, S-NET,
   SampleNet and SampleNet-Progressive (sampled, simplified and soft-projected points) for
   every m, and writes results.json, results.md, accuracy.png, samples.png and the
   checkpoints into --out.

    python examples/classification.py                      # built-in data, CPU profile
    python examples/classification.py --smoke --out /tmp/c  # whole pipeline in seconds
    python examples/classification.py --dataset h5 --data-root modelnet40_ply_hdf5_2048 \
        --profile paper --device cuda

Every stage resumes from its checkpoint in --out/checkpoints: rerunning a finished or
interrupted command continues where it stopped.
"""

from __future__ import annotations

import os

# Idle OpenMP threads sleep instead of spinning: on a shared or busy CPU spinning threads
# slowed small kernels down tenfold. Must be set before torch starts its thread pool.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import math  # noqa: E402
import time
from pathlib import Path
from typing import Callable, Optional

import torch
import torch.nn.functional as F
from torch import Tensor
from torch_geometric.loader import DataLoader

from tg_samplenet import SampleNet, TemperatureProfile, progressive_loss, samplenet_loss
from tg_samplenet.datasets import get_dataset
from tg_samplenet.experiments.common import (
    Profile,
    baseline_samplers,
    common_parser,
    freeze,
    resolve_device,
    resolve_profile,
    run_metadata,
    sampler_factory,
    train_samplers,
)
from tg_samplenet.experiments.fit import fit, seed_everything
from tg_samplenet.experiments.reporting import (
    plot_metric_vs_ratio,
    render_clouds,
    results_table,
    write_results,
)
from tg_samplenet.tasks import PointNet

PROFILES = {
    "smoke": Profile(
        num_points=128,
        sizes=(32, 16, 8),
        train_sizes=(16,),
        samples_per_class=4,
        test_samples_per_class=2,
        task_epochs=2,
        sampler_epochs=2,
        batch_size=8,
        task_lr=1e-3,
        sampler_lr=1e-3,
        task_width=32,
        control_sizes=(8, 16, 32, 64, 128),
        extra={
            "lr_decay": "cosine",
            "pointnet": dict(
                point_channels=(16, 16, 16, 32),
                head_channels=(32, 16),
                tnet_point_channels=(16, 16, 32),
                tnet_head_channels=(16, 16),
            ),
        },
    ),
    "cpu": Profile(
        num_points=1024,
        sizes=(512, 256, 128, 64, 32, 16, 8),
        train_sizes=(32,),
        samples_per_class=40,
        test_samples_per_class=20,
        task_epochs=20,
        sampler_epochs=40,
        batch_size=16,
        task_lr=1e-3,
        sampler_lr=1e-2,
        task_width=128,
        control_sizes=(8, 16, 32, 64, 128, 256, 512),
        # A narrower PointNet than the paper's (1024 wide) so that the run takes minutes;
        # samplers train on batches of 16 (more steps in few epochs), PointNet on 32, both
        # with the paper's learning rates decayed to zero by a cosine.
        extra={
            "task_batch_size": 32,
            "lr_decay": "cosine",
            "pointnet": dict(
                point_channels=(32, 32, 32, 64),
                head_channels=(128, 64),
                tnet_point_channels=(32, 64, 128),
                tnet_head_channels=(128, 64),
            ),
        },
    ),
    "paper": Profile(
        num_points=1024,
        sizes=(512, 256, 128, 64, 32, 16, 8),
        train_sizes=(512, 256, 128, 64, 32, 16, 8),
        samples_per_class=100,
        test_samples_per_class=30,
        task_epochs=250,
        sampler_epochs=500,
        batch_size=32,
        task_lr=1e-3,
        sampler_lr=1e-2,
        task_width=1024,
        control_sizes=(2, 4, 8, 16, 32, 64, 128, 256, 512, 1024),
    ),
}
# The authors' classification settings (reference §3): alpha, lambda, gamma, delta, k.
FIXED_LOSS = dict(alpha=30.0, lmbda=1.0, gamma=1.0, delta=0.0)
PROGRESSIVE_LOSS = dict(alpha=30.0, lmbda=1.0, gamma=0.5, delta=1.0 / 30.0)
K = 7


def classifier(num_classes: int, profile: Profile, transforms: bool) -> PointNet:
    r"""PointNet with (or without) its transform nets, at the profile's widths."""
    widths = profile.extra.get("pointnet", {})
    return PointNet(
        num_classes, transforms, transforms, global_channels=profile.task_width, **widths
    )


def accuracy(model: PointNet, loader: DataLoader, device, sample=None) -> float:
    r"""Instance accuracy of :obj:`model` on the points that :obj:`sample(pos, batch)`
    returns (all points when :obj:`None`)."""
    correct = total = 0
    with torch.no_grad():
        for data in loader:
            data = data.to(device)
            pos, batch = (data.pos, data.batch) if sample is None else sample(data.pos, data.batch)
            pred = model(pos, batch).argmax(-1)
            correct += int((pred == data.y).sum())
            total += data.num_graphs
    return correct / max(total, 1)


def decaying_lr(
    optimizer: torch.optim.Optimizer,
    profile: Profile,
    loader: DataLoader,
    num_epochs: int,
    decay_samples: int,
) -> torch.optim.lr_scheduler.LRScheduler:
    r"""A per-step learning-rate schedule: the authors' staircase (x0.7 every
    :obj:`decay_samples` samples, floor 1e-5) for :obj:`profile.extra["lr_decay"] ==
    "staircase"`, or a cosine decay to zero over the run, which short runs need to settle:
    at a constant rate the fixed-size SampleNet's test accuracy swung by more than 0.1
    between epochs and its temperature collapsed to the floor."""
    total = max(1, num_epochs * len(loader))
    base = optimizer.param_groups[0]["lr"]
    if profile.extra.get("lr_decay", "staircase") == "cosine":
        return torch.optim.lr_scheduler.LambdaLR(
            optimizer, lambda step: 0.5 * (1 + math.cos(math.pi * min(step, total) / total))
        )
    batch_size = loader.batch_size or 1
    return torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: max(0.7 ** (step * batch_size // decay_samples), 1e-5 / base)
    )


def train_classifier(model, loader, profile, ckpt, device, progress) -> None:
    optimizer = torch.optim.Adam(model.parameters(), lr=profile.task_lr)
    scheduler = decaying_lr(optimizer, profile, loader, profile.task_epochs, 200_000)

    def train_step(data) -> float:
        model.train()
        data = data.to(device)
        logits, reg = model(data.pos, data.batch, return_regularizer=True)
        loss = F.cross_entropy(logits, data.y) + 0.001 * reg
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        scheduler.step()
        return loss.item()

    fit(
        train_step,
        loader,
        profile.task_epochs,
        ckpt,
        {"model": model, "optimizer": optimizer, "scheduler": scheduler},
        desc=f"train {Path(ckpt).stem}",
        progress=progress,
    )


def train_sampler(
    sampler: SampleNet,
    task: PointNet,
    loader: DataLoader,
    profile: Profile,
    ckpt: Path,
    device,
    progress: bool,
    temperature: Optional[TemperatureProfile] = None,
) -> None:
    optimizer = torch.optim.Adam(sampler.parameters(), lr=profile.sampler_lr)
    scheduler = decaying_lr(optimizer, profile, loader, profile.sampler_epochs, 600_000)
    progressive = sampler.progressive
    weights = dict(PROGRESSIVE_LOSS if progressive else FIXED_LOSS)
    if temperature is not None and not temperature.learned:
        weights["lmbda"] = 0.0  # the paper's profile study fixes sigma instead of learning it

    def task_loss(out, y) -> Tensor:
        logits, reg = task(out.pos, out.batch, return_regularizer=True)
        return F.cross_entropy(logits, y) + 0.001 * reg

    def train_step(data) -> float:
        sampler.train()
        data = data.to(device)
        out = sampler(data.pos, data.batch)
        if progressive:
            loss = progressive_loss(
                lambda part: task_loss(part, data.y),
                out,
                data.pos,
                data.batch,
                profile.control_sizes,
                **weights,
            )
        else:
            loss = samplenet_loss(task_loss(out, data.y), out, data.pos, data.batch, **weights)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        scheduler.step()
        return loss.item()

    def epoch_start(epoch: int) -> None:
        if temperature is not None:
            temperature.apply(sampler.projection, epoch)

    fit(
        train_step,
        loader,
        profile.sampler_epochs,
        ckpt,
        {"sampler": sampler, "optimizer": optimizer, "scheduler": scheduler},
        desc=f"train {ckpt.stem}",
        on_epoch_start=epoch_start,
        progress=progress,
    )
    sampler.save(ckpt.with_suffix(".sampler.pt"))


def sampled(sampler: SampleNet, m: int, mode: str = "sampled") -> Callable:
    r"""A :obj:`sample(pos, batch) -> (pos, batch)` of the sampler's first :obj:`m` points:
    its hard samples, its simplified points, or their soft projection (Fig. 6)."""

    def sample(pos: Tensor, batch: Tensor):
        out = sampler(pos, batch, num_samples=m)
        if mode == "sampled":
            return out.pos, out.batch
        part = out.prefix(m)
        q, qb = part.simplified, part.simplified_batch
        if mode == "simplified":
            return q, qb
        return sampler.projection(pos, q, batch, qb).pos, qb

    return sample


def main(argv: Optional[list[str]] = None) -> dict:
    parser = common_parser(__doc__.split("\n")[0], PROFILES)
    parser.add_argument(
        "--temperature-study",
        action="store_true",
        help="also train SampleNet-Progressive with each temperature profile (paper Table 1)",
    )
    args = parser.parse_args(argv)
    profile = resolve_profile(args, PROFILES)
    device = resolve_device(args.device)
    out_dir = Path(args.out or f"runs/classification-{args.profile}")
    ckpt_dir = out_dir / "checkpoints"
    progress = not args.no_progress
    started = time.time()
    seed_everything(args.seed)

    data_kwargs = dict(
        num_points=profile.num_points, seed=args.seed, samples_per_class=profile.samples_per_class
    )
    train_set = get_dataset(args.dataset, args.data_root, "train", **data_kwargs)
    test_set = get_dataset(
        args.dataset,
        args.data_root,
        "test",
        **{**data_kwargs, "samples_per_class": profile.test_samples_per_class},
    )
    num_classes = len(train_set.classes)
    train_loader = DataLoader(train_set, profile.batch_size, shuffle=True, drop_last=True)
    task_loader = DataLoader(
        train_set,
        profile.extra.get("task_batch_size", profile.batch_size),
        shuffle=True,
        drop_last=True,
    )
    test_loader = DataLoader(test_set, profile.batch_size)
    print(
        f"{args.dataset}: {len(train_set)} training / {len(test_set)} test clouds, "
        f"{num_classes} classes, {profile.num_points} points; profile {args.profile}"
    )

    # 1. Task networks on complete clouds.
    pointnet = classifier(num_classes, profile, transforms=True).to(device)
    vanilla = classifier(num_classes, profile, transforms=False).to(device)
    for name, model in (("pointnet", pointnet), ("pointnet_vanilla", vanilla)):
        train_classifier(model, task_loader, profile, ckpt_dir / f"{name}.pt", device, progress)
        freeze(model)
    complete = accuracy(pointnet, test_loader, device)
    complete_vanilla = accuracy(vanilla, test_loader, device)
    print(f"complete clouds: PointNet {complete:.3f}, vanilla PointNet {complete_vanilla:.3f}")

    # 2. Samplers against the frozen task networks.
    fixed, progressive = train_samplers(
        sampler_factory(profile, K, device),
        # The progressive sampler trains against vanilla PointNet, as the authors' did.
        lambda sampler, ckpt: train_sampler(
            sampler,
            vanilla if sampler.progressive else pointnet,
            train_loader,
            profile,
            ckpt,
            device,
            progress,
        ),
        profile.train_sizes,
        profile.num_points,
        ckpt_dir,
    )

    # 3. Accuracy against the sample size.
    results: dict[str, dict[int, float]] = {}
    baselines = baseline_samplers(args.seed)
    for m in profile.sizes:
        for name, fn in baselines.items():
            results.setdefault(name, {})[m] = accuracy(pointnet, test_loader, device, subset(fn, m))
        for name in ("snet", "samplenet"):
            if (name, m) in fixed:
                results.setdefault(name, {})[m] = accuracy(
                    pointnet, test_loader, device, sampled(fixed[name, m], m)
                )
        results.setdefault("fps_vanilla", {})[m] = accuracy(
            vanilla, test_loader, device, subset(baselines["fps"], m)
        )
        for mode in ("sampled", "simplified", "projected"):
            key = "samplenet_progressive" + ("" if mode == "sampled" else f"_{mode}")
            results.setdefault(key, {})[m] = accuracy(
                vanilla, test_loader, device, sampled(progressive, m, mode)
            )

    extra = run_metadata(args, profile, started)
    extra["complete_vanilla"] = complete_vanilla
    if args.temperature_study:
        extra["temperature_study"] = temperature_study(
            args, profile, vanilla, train_loader, test_loader, ckpt_dir, device, progress
        )
    data = write_results(
        out_dir,
        "classification",
        "accuracy",
        True,
        complete,
        results,
        num_points=profile.num_points,
        **extra,
    )
    plot_metric_vs_ratio(
        data, profile.num_points, out_dir / "accuracy.png", title=f"Classification ({args.dataset})"
    )
    render_samples(test_set, fixed, progressive, profile, out_dir / "samples.png", device)
    print(results_table(data, profile.num_points))
    print(
        f"wrote {out_dir}/results.json, results.md, accuracy.png, samples.png "
        f"({time.time() - started:.0f} s)"
    )
    return data


def subset(sample: Callable[[Tensor, Tensor, int], Tensor], m: int) -> Callable:
    r"""A baseline :obj:`sample(pos, batch, m) -> index` as :obj:`(pos, batch) -> (pos,
    batch)` of the selected points."""

    def select(pos: Tensor, batch: Tensor):
        index = sample(pos, batch, m)
        return pos[index], batch[index]

    return select


def temperature_study(
    args, profile, vanilla, train_loader, test_loader, ckpt_dir, device, progress
) -> dict[str, dict[str, float]]:
    r"""SampleNet-Progressive trained with each temperature profile (Table 1)."""
    table = {}
    for kind in TemperatureProfile.KINDS:
        schedule = TemperatureProfile(
            kind, start=1.0, end=1e-3, num_epochs=max(1, profile.sampler_epochs)
        )
        sampler = SampleNet(
            profile.num_points, k=K, progressive=True, learn_temperature=schedule.learned
        ).to(device)
        train_sampler(
            sampler,
            vanilla,
            train_loader,
            profile,
            ckpt_dir / f"progressive_temperature_{kind}.pt",
            device,
            progress,
            temperature=schedule,
        )
        sampler.eval()
        table[kind] = {
            str(m): accuracy(vanilla, test_loader, device, sampled(sampler, m))
            for m in profile.sizes
        }
    return table


def render_samples(test_set, fixed, progressive, profile, path, device) -> None:
    r"""One test cloud with its FPS and SampleNet samples at the smallest trained size."""
    m = min(profile.train_sizes)
    data = test_set[0].to(device)
    batch = torch.zeros(data.pos.size(0), dtype=torch.long, device=device)
    fps_index = baseline_samplers(0)["fps"](data.pos, batch, m)
    panels = [
        ("input", data.pos.cpu().numpy(), None),
        (f"FPS, {m} points", data.pos.cpu().numpy(), data.pos[fps_index].cpu().numpy()),
    ]
    with torch.no_grad():
        if ("samplenet", m) in fixed:
            out = fixed["samplenet", m](data.pos, batch)
            panels.append((f"SampleNet, {m} points", data.pos.cpu().numpy(), out.pos.cpu().numpy()))
        out = progressive(data.pos, batch, num_samples=m)
        panels.append((f"Progressive, {m} points", data.pos.cpu().numpy(), out.pos.cpu().numpy()))
    render_clouds(panels, path)


if __name__ == "__main__":
    main()
