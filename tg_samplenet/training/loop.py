r"""The resumable training loop (an atomic checkpoint after every epoch, exact resuming), the
learning-rate schedules and seeding."""

from __future__ import annotations

import math
import os
import random
from pathlib import Path
from typing import Any, Callable, Iterable, Optional, Union

import numpy as np
import torch
from tqdm.auto import tqdm

from tg_samplenet.io import atomic_save
from tg_samplenet.ops.checks import InputError, check_int
from tg_samplenet.training.distributed import (
    all_reduce_mean,
    broadcast_checkpoint,
    data_parallel,
    is_main_process,
    set_epoch,
)

__all__ = [
    "LR_SCHEDULES",
    "fit",
    "learning_rate_schedule",
    "rng_state",
    "seed_everything",
    "set_rng_state",
]

LR_SCHEDULES = ("constant", "cosine", "staircase")


def seed_everything(seed: int):
    r"""Seeds Python's, NumPy's and PyTorch's random generators."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def rng_state() -> dict[str, Any]:
    r"""The state of every random generator the training touches (for exact resuming)."""
    name, keys, position, has_gauss, gauss = np.random.get_state()
    state = {
        "python": random.getstate(),
        # As a tensor, so that checkpoints load with torch.load(weights_only=True).
        "numpy": (name, torch.from_numpy(keys.astype(np.int64)), position, has_gauss, gauss),
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]):
    r"""Restores what :func:`rng_state` returned."""
    random.setstate(state["python"])
    name, keys, position, has_gauss, gauss = state["numpy"]
    np.random.set_state((name, keys.numpy().astype(np.uint32), position, has_gauss, gauss))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def learning_rate_schedule(
    optimizer: torch.optim.Optimizer,
    kind: str,
    num_steps: int,
    batch_size: int = 1,
    decay_samples: int = 200_000,
    min_lr: float = 1e-5,
    hold_steps: int = 0,
) -> Optional[torch.optim.lr_scheduler.LRScheduler]:
    r"""A per-step learning-rate schedule, stepped after every optimiser step.

    .. math::
        \eta_{\text{cosine}}(s) &= \tfrac{\eta_0}{2}\left(1 + \cos\left(\pi
            \tfrac{\min(s, S)}{S}\right)\right) \\
        \eta_{\text{staircase}}(s) &= \max\left(\eta_0 \cdot 0.7^{\lfloor s b / D
            \rfloor}, \eta_{\min}\right)

    at step :math:`s = \max(t - H, 0)` of optimiser step :math:`t`. The staircase is the
    authors' (x0.7 every :math:`D` samples).

    Args:
        optimizer (torch.optim.Optimizer): The optimiser; its first group's rate is
            :math:`\eta_0`.
        kind (str): :obj:`"constant"` (no scheduler), :obj:`"cosine"` or
            :obj:`"staircase"`.
        num_steps (int): :math:`S`, the optimiser steps of the whole run.
        batch_size (int, optional): :math:`b`, samples per step. (default: :obj:`1`)
        decay_samples (int, optional): :math:`D`. (default: :obj:`200000`)
        min_lr (float, optional): :math:`\eta_{\min}` of the staircase. (default: :obj:`1e-5`)
        hold_steps (int, optional): :math:`H`, steps at :math:`\eta_0` before the schedule
            starts, e.g. while other parameters warm up. (default: :obj:`0`)

    :rtype: :class:`torch.optim.lr_scheduler.LambdaLR`, or :obj:`None` for
        :obj:`"constant"`
    """
    if kind not in LR_SCHEDULES:
        raise InputError("kind", f"kind must be one of {LR_SCHEDULES} (got {kind!r})")
    hold = check_int(hold_steps, "hold_steps", minimum=0)
    if kind == "constant":
        return None
    total = max(1, num_steps)
    if kind == "cosine":

        def factor(step: int) -> float:
            return 0.5 * (1 + math.cos(math.pi * min(step, total) / total))

    else:
        floor = min_lr / optimizer.param_groups[0]["lr"]

        def factor(step: int) -> float:
            return max(0.7 ** (step * batch_size // decay_samples), floor)

    return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda t: factor(max(t - hold, 0)))


def fit(
    step: Callable[[Any], float],
    loader: Iterable,
    num_epochs: int,
    checkpoint: Optional[Union[str, os.PathLike]],
    state: dict[str, Any],
    desc: str = "train",
    on_epoch_start: Optional[Callable[[int], None]] = None,
    progress: bool = True,
) -> list[float]:
    r"""Runs :obj:`step` on every batch of :obj:`loader` for :obj:`num_epochs` epochs.

    After each epoch it writes :obj:`checkpoint` atomically (the state dicts of
    :obj:`state`, the epoch, the loss history and the random generators); an existing one is
    resumed after its last epoch, as the uninterrupted run. Under torchrun rank 0 writes it
    and the losses are averaged over the ranks.

    Args:
        step (callable): Trains on one batch and returns its loss as a float.
        loader (iterable): The training batches.
        num_epochs (int): Total number of epochs.
        checkpoint (str or Path, optional): Checkpoint file; :obj:`None` trains without
            one.
        state (dict): Objects with :meth:`state_dict` / :meth:`load_state_dict` to save.
        desc (str, optional): Progress-bar label. (default: :obj:`"train"`)
        on_epoch_start (callable, optional): Called with the epoch index before each epoch.
            (default: :obj:`None`)
        progress (bool, optional): Show a tqdm bar. (default: :obj:`True`)

    :rtype: the mean loss of each epoch, :obj:`list[float]`
    """
    checkpoint = Path(checkpoint) if checkpoint is not None else None
    history: list[float] = []
    start = 0
    saved = broadcast_checkpoint(checkpoint)
    if saved is not None:
        for name, obj in state.items():
            obj.load_state_dict(saved["state"][name])
        start, history = saved["epoch"], list(saved["history"])
        set_rng_state(saved["rng"])

    show = progress and is_main_process()
    bar = tqdm(range(start, num_epochs), desc=desc, disable=not show, leave=False)
    for epoch in bar:
        if on_epoch_start is not None:
            on_epoch_start(epoch)
        set_epoch(loader, epoch)
        losses = []
        for number, batch in enumerate(loader, 1):
            try:
                losses.append(step(batch))
            except FloatingPointError as error:
                raise FloatingPointError(f"{error} (epoch {epoch + 1}, batch {number})") from None
        history.append(all_reduce_mean(float(np.mean(losses)) if losses else float("nan")))
        bar.set_postfix(loss=f"{history[-1]:.4g}")
        if checkpoint is not None and is_main_process():
            atomic_save(
                {
                    "epoch": epoch + 1,
                    "history": history,
                    "state": {name: obj.state_dict() for name, obj in state.items()},
                    "rng": rng_state(),
                },
                checkpoint,
            )
    return history


def fit_model(
    model: torch.nn.Module,
    loss_fn: Callable[[Any], torch.Tensor],
    loader: Iterable,
    *,
    epochs: int,
    lr: float,
    checkpoint: Optional[Union[str, os.PathLike]] = None,
    lr_schedule: str = "constant",
    decay_samples: int = 200_000,
    device: Optional[Union[str, torch.device]] = None,
    on_epoch_start: Optional[Callable[[int], None]] = None,
    progress: bool = True,
    desc: str = "train",
) -> list[float]:
    r"""Trains :obj:`model` with Adam on :obj:`loss_fn(data)` with a
    :func:`learning_rate_schedule`, through the resumable :func:`fit`; under torchrun
    data-parallel (:func:`~tg_samplenet.training.distributed.data_parallel`).

    Args:
        model (torch.nn.Module): The model, put in training mode before every step.
        loss_fn (callable): Maps a batch to the scalar loss.
        loader (iterable): The training batches (anything with :meth:`to`).
        epochs (int): Total number of epochs.
        lr (float): Adam's initial learning rate.
        checkpoint (str or Path, optional): Resumable checkpoint. (default: :obj:`None`)
        lr_schedule (str, optional): :obj:`"constant"`, :obj:`"cosine"` or
            :obj:`"staircase"`. (default: :obj:`"constant"`)
        decay_samples (int, optional): The staircase's step in samples.
            (default: :obj:`200000`)
        device (torch.device, optional): Where the batches go. (default: :obj:`None`, where
            they are)
        on_epoch_start (callable, optional): Called with the epoch index before each epoch.
            (default: :obj:`None`)
        progress (bool, optional): Show a tqdm bar. (default: :obj:`True`)
        desc (str, optional): Progress-bar label. (default: :obj:`"train"`)

    :rtype: the mean loss of each epoch, :obj:`list[float]`
    """
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    num_steps = epochs * len(loader)  # type: ignore[arg-type]
    batches = getattr(loader, "batch_sampler", None)  # a DistributedBatchSampler's is global
    batch_size = getattr(loader, "batch_size", None) or getattr(batches, "batch_size", None) or 1
    scheduler = learning_rate_schedule(optimizer, lr_schedule, num_steps, batch_size, decay_samples)
    state: dict[str, Any] = {"model": model, "optimizer": optimizer}
    if scheduler is not None:
        state["scheduler"] = scheduler

    with data_parallel(model, loss_fn, getattr(batches, "loss_scale", 1.0)) as objective:
        step = training_step(model, objective, optimizer, scheduler, device)
        return fit(step, loader, epochs, checkpoint, state, desc, on_epoch_start, progress)


def first_non_finite_gradient(model: torch.nn.Module) -> Optional[str]:
    r"""The name of the first parameter of :obj:`model` whose gradient holds NaN or infinity,
    or :obj:`None` (one host sync)."""
    named = [(name, p.grad) for name, p in model.named_parameters() if p.grad is not None]
    if not named:
        return None
    finite = torch.stack([torch.isfinite(grad).all() for _, grad in named])
    if bool(finite.all()):
        return None
    return named[int((~finite).nonzero()[0])][0]


def training_step(
    model: torch.nn.Module,
    objective: Callable[[Any], torch.Tensor],
    optimizer: torch.optim.Optimizer,
    scheduler: Optional[Any] = None,
    device: Optional[Union[str, torch.device]] = None,
) -> Callable[[Any], float]:
    r"""One optimisation step of :obj:`objective(data)` as a function of a batch, for
    :func:`fit`; it returns the loss."""

    def step(data) -> float:
        model.train()
        if device is not None:
            data = data.to(device)
        loss = objective(data)
        value = loss.item()
        if not math.isfinite(value):
            raise FloatingPointError(f"the training loss is {value}; no step was taken")
        optimizer.zero_grad()
        loss.backward()
        bad = first_non_finite_gradient(model)
        if bad is not None:
            raise FloatingPointError(
                f"the gradient of {bad} is not finite (the loss was {value:.6g}); no step was taken"
            )
        optimizer.step()
        if scheduler is not None:
            scheduler.step()
        return value

    return step
