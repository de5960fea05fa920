r"""What ``examples/pointnet2_samplenet.py`` runs for one seed: PointNet++ with fps in its
first set abstraction (keeping 1/2 or 1/8 of the points as centres), with a learned sampler
there trained jointly from scratch, the trained fps model upgraded with a learned sampler
(:func:`~tg_samplenet.training.upgrade_fps`), the same fine-tuning with fps as a control,
and the inference time of each model."""

from __future__ import annotations

import copy
import math
import warnings
from pathlib import Path
from typing import Any, Optional

import torch
import torch.nn.functional as F
from torch.utils.benchmark import Timer

from reproduction.config import PointNet2Profile
from reproduction.tasks.pointnet2 import PointNet2, QuickFPS, evaluate_pointnet2, set_fps
from tg_samplenet import SampleNet
from tg_samplenet.ops import fps
from tg_samplenet.training import fit_model, seed_everything, upgrade_fps

__all__ = ["ROWS", "fastest_fps", "training_dtype", "run_seed", "ms_per_batch"]

# The rows of the study, by first-layer ratio.
ROWS = ("fps", "joint", "upgraded", "fps fine-tuned")


def fastest_fps(data, ratio: float, device) -> tuple[str, Any]:
    r"""The faster of torch-quickfps (where installed) and :func:`tg_samplenet.ops.fps` on
    :obj:`data` at :obj:`ratio`: :obj:`(name, fps callable)`."""
    candidates = {"tg_samplenet.ops.fps": fps}
    try:
        candidates["torch_quickfps"] = QuickFPS()
    except ImportError:
        pass
    pos, batch = data.pos.to(device), data.batch.to(device)
    times = {
        name: Timer("f(pos, batch, ratio)", globals=dict(f=f, pos=pos, batch=batch, ratio=ratio))
        .blocked_autorange(min_run_time=0.5)
        .median
        for name, f in candidates.items()
    }
    name = min(times, key=times.get)
    return name, candidates[name]


def training_dtype(profile: PointNet2Profile, device) -> Optional[torch.dtype]:
    r"""The dtype PointNet++'s MLPs train in: :obj:`torch.bfloat16` where the profile asks
    for it and :obj:`device` computes it natively (AVX-512 BF16 or AMX on a CPU), else
    :obj:`None` (float32)."""
    if not profile.bf16_training:
        return None
    device = torch.device(device)
    if device.type == "cuda":
        supported = torch.cuda.is_bf16_supported()
    else:
        supported = device.type == "cpu" and torch.ops.mkldnn._is_mkldnn_bf16_supported()
    if not supported:
        message = f"{device} computes bfloat16 slowly or not at all: training in float32"
        warnings.warn(message, stacklevel=2)
        return None
    return torch.bfloat16


@torch.no_grad()
def ms_per_batch(model: PointNet2, data, device) -> float:
    r"""The median inference time of one batch, in milliseconds (eval mode, no gradients)."""
    model.eval()
    pos, batch = data.pos.to(device), data.batch.to(device)
    timer = Timer("model(pos, batch)", globals=dict(model=model, pos=pos, batch=batch))
    return timer.blocked_autorange(min_run_time=1.0).median * 1e3


def _task_loss(model):
    return lambda data: F.nll_loss(model(data.pos, data.batch), data.y)


def _sampler(profile: PointNet2Profile, num_points: int, ratio: float) -> SampleNet:
    # The first layer's sampler: it learns a share of the centres, farthest point sampling
    # continued from them completes the rest.
    centres = math.ceil(num_points * ratio)
    kwargs = {}
    if profile.sampler_point_channels is not None:
        kwargs["point_channels"] = profile.sampler_point_channels
    if profile.sampler_head_channels is not None:
        kwargs["head_channels"] = profile.sampler_head_channels
    return SampleNet(
        max(1, math.ceil(centres * profile.learned_share)),
        k=profile.k,
        initial_temperature=profile.initial_temperature,
        head_norm=False,
        **kwargs,
    )


def run_seed(
    seed: int,
    num_classes: int,
    train_loader,
    val_loader,
    profile: PointNet2Profile,
    ckpt_dir: Path,
    device,
    progress: bool,
    stage,
    dtype: Optional[torch.dtype] = None,
) -> tuple[dict[str, dict[float, dict[str, float]]], str]:
    r"""Every row of the study for one seed, :obj:`{row: {first-layer ratio: {"accuracy",
    "ms_per_batch"}}}`, and the name of the fps the fps models were timed with. The MLPs
    train in :obj:`dtype` (:func:`training_dtype`; :obj:`None`: float32). Each stage resumes
    from its checkpoint in :obj:`ckpt_dir`."""
    weights = profile.fixed_loss
    rows: dict[str, dict[float, dict[str, float]]] = {name: {} for name in ROWS}
    models: dict[tuple[str, float], PointNet2] = {}
    # Every fps, in training and timing, is the fastest installed (as a user would pick).
    timing_batch = next(iter(val_loader))
    name, fast = fastest_fps(timing_batch, profile.ratios[0], device)

    def build(ratio: float) -> PointNet2:
        ratios = (ratio, profile.ratios[1])
        model = PointNet2(num_classes, profile.task_width, ratios, training_dtype=dtype)
        set_fps(model, fast)
        return model.to(device)

    for ratio in profile.first_ratios:
        stage(f"seed {seed}: PointNet++ with fps, first layer keeps {ratio:g}")
        seed_everything(seed)
        model = models["fps", ratio] = build(ratio)
        fit_model(
            model, _task_loss(model), train_loader, epochs=profile.task_epochs,
            lr=profile.task_lr, lr_schedule="cosine", device=device, progress=progress,
            checkpoint=ckpt_dir / f"fps_{ratio:g}_seed{seed}.pt", desc=f"fps {ratio:g}",
        )  # fmt: skip

        stage(f"seed {seed}: PointNet++ trained jointly with a learned sampler, {ratio:g}")
        seed_everything(seed)
        model = models["joint", ratio] = build(ratio)
        upgrade_fps(
            model, {model.sa1_module: _sampler(profile, profile.num_points, ratio)},
            _task_loss(model), train_loader,
            epochs=profile.imitate_epochs + profile.task_epochs,
            imitate_epochs=profile.imitate_epochs, lr=profile.sampler_lr, train_model=True,
            model_lr=profile.task_lr, loss_weights=weights, device=device, progress=progress,
            checkpoint=ckpt_dir / f"joint_{ratio:g}_seed{seed}.pt",
        )  # fmt: skip

    trained = models["fps", profile.first_ratios[0]]
    for ratio in profile.first_ratios:
        stage(f"seed {seed}: the fps model upgraded with a learned sampler, {ratio:g}")
        seed_everything(seed)
        model = models["upgraded", ratio] = copy.deepcopy(trained)
        model.sa1_module.ratio = ratio
        upgrade_fps(
            model, {model.sa1_module: _sampler(profile, profile.num_points, ratio)},
            _task_loss(model), train_loader,
            epochs=profile.imitate_epochs + profile.finetune_epochs,
            imitate_epochs=profile.imitate_epochs, lr=profile.sampler_lr, train_model=True,
            model_lr=profile.finetune_lr, loss_weights=weights, device=device,
            progress=progress, checkpoint=ckpt_dir / f"upgraded_{ratio:g}_seed{seed}.pt",
        )  # fmt: skip

        stage(f"seed {seed}: the fps model fine-tuned as long with fps (control), {ratio:g}")
        seed_everything(seed)
        model = models["fps fine-tuned", ratio] = copy.deepcopy(trained)
        model.sa1_module.ratio = ratio
        fit_model(
            model, _task_loss(model), train_loader, epochs=profile.finetune_epochs,
            lr=profile.finetune_lr, lr_schedule="cosine", device=device, progress=progress,
            checkpoint=ckpt_dir / f"finetuned_{ratio:g}_seed{seed}.pt", desc="fine-tune fps",
        )  # fmt: skip

    stage(f"seed {seed}: accuracy and inference time of every model")
    for (row, ratio), model in models.items():
        seed_everything(seed)  # fps draws random starts
        accuracy = evaluate_pointnet2(model, val_loader, device)
        rows[row][ratio] = dict(
            accuracy=accuracy, ms_per_batch=ms_per_batch(model, timing_batch, device)
        )
    return rows, name
