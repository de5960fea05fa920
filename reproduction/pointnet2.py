r"""What ``examples/pointnet2_samplenet.py`` runs on PointNet++ with learned sampling
(:mod:`reproduction.tasks.pointnet2`): the joint training of the network with its samplers,
its timing, and the drop-in of a progressive sampler for the fps model's fps."""

from __future__ import annotations

import copy
import math
import time
from dataclasses import asdict
from pathlib import Path

import torch
from torch import Tensor
from torch.utils.benchmark import Timer

from reproduction.config import PointNet2Profile
from reproduction.samplers import make_sampler
from reproduction.tasks.pointnet2 import PointNet2, evaluate_pointnet2, joint_loss, swap_fps
from tg_samplenet import SampleNetFPS
from tg_samplenet.ops import fps
from tg_samplenet.training import fit, learning_rate_schedule
from tg_samplenet.training.distributed import all_reduce_sum, data_parallel, is_distributed

__all__ = [
    "build_pointnet2",
    "optimizer_and_loss",
    "train_pointnet2",
    "accuracy",
    "seconds_per_epoch",
    "ms_per_batch",
    "dropin",
]


def build_pointnet2(num_classes: int, profile: PointNet2Profile, learned: bool) -> PointNet2:
    r"""PointNet++ at the profile's sizes, with fps or with one SampleNet per set
    abstraction (:func:`~reproduction.samplers.make_sampler`)."""
    return PointNet2(
        num_classes,
        profile.num_points,
        profile.task_width,
        profile.ratios,
        profile.radii,
        (lambda m: make_sampler(profile, m)) if learned else None,
        profile.straight_through,
    )


def optimizer_and_loss(model: PointNet2, profile: PointNet2Profile, steps: int):
    r"""Adam with the samplers at :obj:`sampler_lr` (the paper's rate: at the task's,
    :math:`t` fell only from 1 to 0.68 in 700 steps and the soft centres stayed local
    averages), its schedule over :obj:`steps` steps, and the objective of a batch."""
    learned = [p for name, p in model.named_parameters() if ".sampler." in name]
    task = [p for name, p in model.named_parameters() if ".sampler." not in name]
    groups = [{"params": task, "lr": profile.task_lr}]
    groups += [{"params": learned, "lr": profile.sampler_lr}] if learned else []
    optimizer = torch.optim.Adam(groups)
    scheduler = learning_rate_schedule(optimizer, profile.lr_schedule, steps)
    weights = asdict(profile.fixed_loss)
    return optimizer, scheduler, lambda data: joint_loss(model, data, **weights)


def train_pointnet2(model, loader, profile, ckpt: Path, device, progress) -> list[float]:
    r"""Trains (or resumes) :obj:`model`; returns the loss per epoch. Under torchrun it trains
    data-parallel (:func:`~tg_samplenet.training.distributed.data_parallel`: synchronised
    BatchNorm, gradients averaged over the ranks) on a
    :func:`~tg_samplenet.training.distributed.training_loader`, and only rank 0 writes
    :obj:`ckpt`."""
    steps = profile.task_epochs * len(loader)
    optimizer, scheduler, loss_fn = optimizer_and_loss(model, profile, steps)
    state = {"model": model, "optimizer": optimizer}
    state.update({"scheduler": scheduler} if scheduler is not None else {})
    with data_parallel(model, loss_fn, _loss_scale(loader)) as objective:
        step = _training_step(model, objective, optimizer, scheduler, device)
        desc = f"train {ckpt.stem}"
        return fit(step, loader, profile.task_epochs, ckpt, state, desc, None, progress)


def _loss_scale(loader) -> float:
    # A rank's share of an unevenly split global batch (DistributedBatchSampler.loss_scale).
    return getattr(getattr(loader, "batch_sampler", None), "loss_scale", 1.0)


def _training_step(model, objective, optimizer, scheduler, device):
    # One Adam step on a batch, for tg_samplenet.training.fit; returns the loss.
    def step(data) -> float:
        model.train()
        loss = objective(data.to(device))
        value = loss.item()
        if not math.isfinite(value):
            raise FloatingPointError(f"the training loss is {value}; no step was taken")
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        if scheduler is not None:
            scheduler.step()
        return value

    return step


def seconds_per_epoch(model, loader, profile, device, batches: int = 5) -> float:
    r"""Training seconds per epoch from :obj:`batches` timed steps (after one untimed) on a
    copy of :obj:`model`, so that both models are timed alike even when resumed (under
    torchrun, data-parallel steps on each rank's share; the time of rank 0)."""
    model = copy.deepcopy(model)
    optimizer, _, loss_fn = optimizer_and_loss(model, profile, 1)
    with torch.random.fork_rng(), data_parallel(model, loss_fn, _loss_scale(loader)) as objective:
        step = _training_step(model, objective, optimizer, None, device)
        data = [d for _, d in zip(range(batches + 1), loader)]
        step(data[0])
        started = time.perf_counter()
        for d in data[1:]:
            step(d)
        if torch.device(device).type == "cuda":
            torch.cuda.synchronize(device)
        elapsed = time.perf_counter() - started
    return elapsed / (len(data) - 1) * len(loader)


def accuracy(model: PointNet2, loader, shard, device, sample=None, whole: bool = False) -> float:
    r"""The test accuracy of :func:`~reproduction.tasks.pointnet2.evaluate_pointnet2` over
    :obj:`loader`; under torchrun each rank counts the correct predictions on its
    :obj:`shard` (:func:`~tg_samplenet.training.distributed.shard_loader`) and the counts add up, so
    the value is the single process's. With :obj:`whole` every rank evaluates every batch:
    for fps, which draws each cloud's random start from one generator across calls."""
    if whole or not is_distributed():
        return evaluate_pointnet2(model, loader, device, sample)
    n = len(shard.dataset)
    correct = round(evaluate_pointnet2(model, shard, device, sample) * n) if n else 0
    return all_reduce_sum(correct) / len(loader.dataset)


@torch.no_grad()
def ms_per_batch(model: PointNet2, data) -> float:
    model.eval()
    timer = Timer("model(pos, batch)", globals=dict(model=model, pos=data.pos, batch=data.batch))
    return timer.blocked_autorange(min_run_time=1.0).median * 1e3


def shrunk(sample, ratio: float):
    r"""A :obj:`(pos, batch) -> (pos, batch)` of the points that :obj:`sample` keeps."""

    def pick(pos: Tensor, batch: Tensor):
        index = sample(pos, batch, ratio)
        return pos[index], batch[index]

    return pick


def dropin(model, sampler, loader, shard, profile, device) -> dict[str, dict[int, float]]:
    r"""The fps model's :func:`accuracy` with fps and with :obj:`sampler` swapped in for the
    fps of both layers, per first-layer ratio; and on inputs shrunk to :obj:`profile.sizes`."""
    rows: dict[str, dict[int, float]] = {}
    for ratio in profile.dropin_ratios:
        model.sa1_module.ratio, kept = ratio, math.ceil(profile.num_points * ratio)
        for name, swapped in (("dropin_fps", None), ("dropin_samplenet", sampler)):
            swap_fps(model, swapped)
            whole = swapped is None  # fps draws random starts
            rows.setdefault(name, {})[kept] = accuracy(model, loader, shard, device, None, whole)
    model.sa1_module.ratio = profile.ratios[0]
    swap_fps(model, None)
    for m in profile.sizes:
        for name, sample in (("input_fps", fps), ("input_progressive", SampleNetFPS(sampler))):
            pick = shrunk(sample, m / profile.num_points)
            whole = sample is fps
            rows.setdefault(name, {})[m] = accuracy(model, loader, shard, device, pick, whole)
    return rows
