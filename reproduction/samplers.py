r"""The learned samplers of the examples: built (:func:`make_sampler`) and trained
(:func:`train_sampler`, :func:`train_samplers`) as a profile says against a frozen task
network, and evaluated behind two signatures: :obj:`sample(pos, batch, m) -> index` (as the
baselines) and :obj:`points(pos, batch) -> (pos, batch)` (what a task network consumes)."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any, Callable, Optional

from torch import Tensor

from reproduction.config import Profile
from reproduction.progress import Stages
from tg_samplenet import LossWeights, SampleNet, TemperatureSchedule, fit_sampler
from tg_samplenet.ops import distinct_sample
from tg_samplenet.ops.checks import check_choice, check_int

__all__ = [
    "PROGRESSIVE_MODES",
    "TEMPERATURE_SCHEDULES",
    "gather_sample",
    "learned_samplers",
    "loss_weights",
    "make_sampler",
    "num_sampler_stages",
    "progressive_points",
    "samplenet_indices",
    "temperature_study",
    "train_sampler",
    "train_samplers",
]

IndexSampler = Callable[[Tensor, Tensor, int], Tensor]
PointSampler = Callable[[Tensor, Tensor], tuple[Tensor, Tensor]]
TaskLoss = Callable[[Any, Any], Tensor]
Inputs = Callable[[Any], tuple[Tensor, Tensor, int]]

# What SampleNet-Progressive's first m points are evaluated as: the paper's three (Fig. 6),
# and this library's learned prefix followed by farthest points (docs/real-data-study.md).
PROGRESSIVE_MODES = ("sampled", "simplified", "projected", "prefix")
# What the temperature study trains SampleNet-Progressive with (paper Table 1).
TEMPERATURE_SCHEDULES = TemperatureSchedule.KINDS


def make_sampler(profile: Profile, m: int, device: Any = "cpu", **kwargs: Any) -> SampleNet:
    r"""A :class:`~tg_samplenet.SampleNet` of :obj:`m` outputs on :obj:`device` with the
    profile's :obj:`k`, its widths and initial temperature where it sets them (the defaults
    otherwise) and, unless :obj:`skip_projection=True` (S-NET has no projection), its
    :obj:`residual_gradient`; :obj:`kwargs` go to the constructor and override these."""
    settings = {
        "initial_temperature": profile.initial_temperature,
        "point_channels": profile.sampler_point_channels,
        "head_channels": profile.sampler_head_channels,
    }
    settings = {name: value for name, value in settings.items() if value is not None}
    if profile.residual_gradient and not kwargs.get("skip_projection", False):
        settings["residual_gradient"] = True
    return SampleNet(m, k=profile.k, **{**settings, **kwargs}).to(device)


def loss_weights(profile: Profile, sampler: SampleNet) -> LossWeights:
    r"""The profile's loss weights for :obj:`sampler`: those of SampleNet-Progressive (with
    :obj:`progressive_alpha` where set), of the fixed-size SampleNet (:obj:`projected_loss`
    where set) or of S-NET."""
    if sampler.progressive:
        if profile.progressive_alpha is not None:
            return replace(profile.progressive_loss, alpha=profile.progressive_alpha)
        return profile.progressive_loss
    if not sampler.skip_projection and profile.projected_loss is not None:
        return profile.projected_loss
    return profile.fixed_loss


def train_sampler(
    sampler: SampleNet,
    profile: Profile,
    task_loss: TaskLoss,
    loader: Any,
    checkpoint: Path,
    device: Any,
    progress: bool = True,
    inputs: Optional[Inputs] = None,
    temperature: Optional[TemperatureSchedule] = None,
) -> SampleNet:
    r"""Trains (or resumes) one sampler with :func:`~tg_samplenet.fit_sampler` and the
    profile's epochs, learning rate and schedule, loss weights (those of
    SampleNet-Progressive for a progressive sampler) and control sizes; :obj:`inputs` (how
    a batch becomes :obj:`(pos, batch, num_clouds)`) and :obj:`temperature` (a schedule
    instead of the learned temperature) go to :func:`~tg_samplenet.fit_sampler`. Returns it
    in eval mode; the trained sampler is saved beside :obj:`checkpoint` as
    :obj:`*.sampler.pt`."""
    fit_sampler(
        sampler,
        task_loss,
        loader,
        epochs=profile.sampler_epochs,
        lr=profile.sampler_lr,
        loss_weights=loss_weights(profile, sampler),
        control_sizes=profile.control_sizes,
        reduction=profile.progressive_reduction,
        temperature=temperature,
        lr_schedule=profile.lr_schedule,
        decay_samples=profile.sampler_decay_samples,
        **({} if inputs is None else {"inputs": inputs}),
        checkpoint=checkpoint,
        device=device,
        progress=progress,
        desc=f"train {checkpoint.stem}",
    )
    return sampler


def num_sampler_stages(profile: Profile) -> int:
    r"""How many samplers :func:`train_samplers` trains: SampleNet and S-NET per trained
    size, and one SampleNet-Progressive."""
    return 2 * len(profile.train_sizes) + 1


def train_samplers(
    profile: Profile,
    task_loss: TaskLoss,
    loader: Any,
    checkpoints: Path,
    device: Any,
    progress: bool = True,
    inputs: Optional[Inputs] = None,
    progressive_task_loss: Optional[TaskLoss] = None,
    stages: Optional[Stages] = None,
) -> tuple[dict[tuple[str, int], SampleNet], SampleNet]:
    r"""The samplers every example trains, in this order: for each of the profile's
    :obj:`train_sizes` :math:`m`, SampleNet and S-NET (:obj:`skip_projection=True`), then
    one SampleNet-Progressive of :obj:`progressive_points` outputs (trained with
    :obj:`progressive_task_loss` when given), each built by :func:`make_sampler`. Each
    resumes from :obj:`checkpoints/<name>_<m>.pt` (:obj:`samplenet_progressive.pt`) and
    counts as one of the run's :obj:`stages` (:func:`num_sampler_stages` of them).

    :rtype: :obj:`({(name, m): sampler}, progressive)`, all in eval mode
    """
    epochs = f"{profile.sampler_epochs} epochs"
    fixed = {}
    for m in profile.train_sizes:
        for name, label, skip in (("samplenet", "SampleNet", False), ("snet", "S-NET", True)):
            if stages is not None:
                stages(f"train {label}, m = {m} ({epochs})")
            sampler = make_sampler(profile, m, device, skip_projection=skip)
            checkpoint = checkpoints / f"{name}_{m}.pt"
            fixed[name, m] = train_sampler(
                sampler, profile, task_loss, loader, checkpoint, device, progress, inputs
            )
    size = profile.progressive_points or profile.num_points
    if stages is not None:
        stages(f"train SampleNet-Progressive, every m up to {size} ({epochs})")
    progressive = make_sampler(profile, size, device, progressive=True)
    train_sampler(
        progressive,
        profile,
        progressive_task_loss or task_loss,
        loader,
        checkpoints / "samplenet_progressive.pt",
        device,
        progress,
        inputs,
    )
    return fixed, progressive


def samplenet_indices(sampler: SampleNet) -> IndexSampler:
    r"""A trained sampler (in eval mode) as :obj:`sample(pos, batch, m) -> index`: its first
    :math:`m` hard samples."""
    return lambda pos, batch, m: sampler(pos, batch, num_samples=m).index


def learned_samplers(
    fixed: dict[tuple[str, int], SampleNet], m: int, progressive: Optional[SampleNet] = None
) -> dict[str, IndexSampler]:
    r"""What :func:`train_samplers` returned, as :obj:`sample(pos, batch, m) -> index` for
    size :obj:`m`: S-NET and SampleNet where one was trained for :obj:`m`, and the first
    :obj:`m` points of :obj:`progressive` when given."""
    samplers = {
        name: samplenet_indices(fixed[name, m])
        for name in ("snet", "samplenet")
        if (name, m) in fixed
    }
    if progressive is not None:
        samplers["samplenet_progressive"] = samplenet_indices(progressive)
    return samplers


def gather_sample(sample: IndexSampler, m: int) -> PointSampler:
    r"""Turns :obj:`sample(pos, batch, m) -> index` into :obj:`(pos, batch) -> (pos[index],
    batch[index])` with :math:`m` points per cloud."""

    def gather(pos: Tensor, batch: Tensor) -> tuple[Tensor, Tensor]:
        index = sample(pos, batch, m)
        return pos[index], batch[index]

    return gather


def progressive_points(
    sampler: SampleNet, m: int, mode: str = "sampled", prefix: int = 32
) -> PointSampler:
    r"""The first :obj:`m` points of a (progressive) sampler in eval mode as
    :obj:`(pos, batch) -> (pos, batch)`: its hard samples (:obj:`"sampled"`), its
    simplified points (:obj:`"simplified"`, not on the surface) or their soft projection
    (:obj:`"projected"`), as the paper's Fig. 6 compares them; or (:obj:`"prefix"`) its
    first :obj:`min(m, prefix)` simplified points matched to distinct input points, then
    farthest point sampling continued from them up to :obj:`m`
    (:func:`~tg_samplenet.ops.distinct_sample`, the inference step of
    :obj:`SampleNet(matching="distinct", max_matched=prefix)`): on real scans the learned
    points beyond the first few dozen cover a shape worse than farthest points do
    (``docs/real-data-study.md``)."""
    mode = check_choice(mode, "mode", PROGRESSIVE_MODES)
    prefix = check_int(prefix, "prefix", 0)

    def points(pos: Tensor, batch: Tensor) -> tuple[Tensor, Tensor]:
        out = sampler(pos, batch, num_samples=m)
        if mode == "sampled":
            return out.pos, out.batch
        if mode == "prefix":
            q, q_batch = out.simplified, out.simplified_batch
            index = distinct_sample(pos, batch, q, q_batch, out.counts, max_matched=prefix)
            return pos[index], batch[index]
        part = out.prefix(m)
        q, q_batch = part.simplified, part.simplified_batch
        if mode == "simplified":
            return q, q_batch
        return sampler.projection(pos, q, batch, q_batch).pos, q_batch

    return points


def temperature_study(
    profile: Profile,
    task_loss: TaskLoss,
    loader: Any,
    evaluate: Callable[[PointSampler], float],
    checkpoints: Path,
    device: Any,
    progress: bool = True,
    stages: Optional[Stages] = None,
) -> dict[str, dict[str, float]]:
    r"""The paper's Table 1: a SampleNet-Progressive trained with each of the
    :data:`TEMPERATURE_SCHEDULES` (learned, linear rectified, exponential, constant; from
    :math:`t = 1` to :math:`10^{-3}` over the profile's epochs), each scored by
    :obj:`evaluate(points)` on its first :math:`m` points for every size of the profile.
    Each resumes from :obj:`checkpoints/progressive_temperature_<kind>.pt` and counts as one
    of the run's :obj:`stages`.

    :rtype: :obj:`{kind: {m: value}}`
    """
    table = {}
    for kind in TEMPERATURE_SCHEDULES:
        if stages is not None:
            epochs = f"{profile.sampler_epochs} epochs"
            stages(f"train SampleNet-Progressive, temperature schedule {kind} ({epochs})")
        schedule = TemperatureSchedule(kind, 1.0, 1e-3, max(1, profile.sampler_epochs))
        size = profile.progressive_points or profile.num_points
        sampler = make_sampler(
            profile, size, device, progressive=True, learn_temperature=schedule.learned
        )
        checkpoint = checkpoints / f"progressive_temperature_{kind}.pt"
        train_sampler(
            sampler, profile, task_loss, loader, checkpoint, device, progress, temperature=schedule
        )
        table[kind] = {str(m): evaluate(progressive_points(sampler, m)) for m in profile.sizes}
    return table
