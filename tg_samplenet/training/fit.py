r"""Training a SampleNet for any frozen task network, given only its task loss."""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Optional, Sequence, Union

import torch
from torch import Tensor

from tg_samplenet.losses import progressive_loss, samplenet_loss
from tg_samplenet.nn.output import SampleNetOutput
from tg_samplenet.nn.sampler import SampleNet
from tg_samplenet.ops.checks import (
    InputError,
    InputTypeError,
    check_choice,
    check_number,
    check_positive_int,
)
from tg_samplenet.temperature import TemperatureSchedule
from tg_samplenet.training.distributed import barrier, is_main_process
from tg_samplenet.training.loop import fit_model

__all__ = ["LossWeights", "PAPER_LOSS_WEIGHTS", "default_inputs", "fit_sampler", "freeze"]

PathLike = Union[str, os.PathLike]


@dataclass(frozen=True)
class LossWeights:
    r"""The weights of SampleNet's objective (paper Eqs. 4, 10 and 11):

    .. math::
        L = L_{task}(R) + \alpha \left(L_a(Q, P) + \beta L_m(Q, P)
        + (\gamma + \delta |Q|) L_a(P, Q)\right) + \lambda \sigma

    The authors' values per task are in :obj:`PAPER_LOSS_WEIGHTS`.

    Args:
        alpha (float): :math:`\alpha`, the simplification loss.
        lmbda (float): :math:`\lambda`, the temperature term.
        gamma (float): :math:`\gamma`.
        delta (float): :math:`\delta`.
        beta (float, optional): :math:`\beta`. (default: :obj:`1.0`)
    """

    alpha: float
    lmbda: float
    gamma: float
    delta: float
    beta: float = 1.0


#: The authors' loss weights per task (from their code).
PAPER_LOSS_WEIGHTS = {
    "classification": LossWeights(alpha=30.0, lmbda=1.0, gamma=1.0, delta=0.0),
    "classification_progressive": LossWeights(alpha=30.0, lmbda=1.0, gamma=0.5, delta=1 / 30),
    "registration": LossWeights(alpha=0.01, lmbda=0.01, gamma=1.0, delta=0.0),
    "reconstruction": LossWeights(alpha=0.01, lmbda=1e-4, gamma=0.0, delta=1 / 64),
}


def freeze(module: torch.nn.Module) -> torch.nn.Module:
    r"""Puts a task network in eval mode without gradients to its parameters; returns it."""
    module.eval()
    for p in module.parameters():
        p.requires_grad_(False)
    return module


def default_inputs(data: Any) -> tuple[Tensor, Tensor, int]:
    r"""What a sampler samples from a PyG :class:`~torch_geometric.data.Batch`:
    :obj:`(data.pos, data.batch, data.num_graphs)`."""
    return data.pos, data.batch, data.num_graphs


def _check_first_batch(loader: Iterable, inputs: Callable[[Any], tuple[Tensor, Tensor, int]]):
    try:
        first = next(iter(loader))
    except StopIteration:
        raise InputError("loader", "loader yields no batches: nothing to train on") from None
    try:
        pos, batch, _ = inputs(first)
    except (AttributeError, KeyError, TypeError, ValueError) as error:
        raise InputError(
            "loader",
            f"loader yields {type(first).__name__} batches that inputs() cannot read ({error}): "
            "fit_sampler trains on PyG batches with pos and batch (a "
            "torch_geometric.loader.DataLoader), or give inputs(data) -> (pos, batch, "
            "num_clouds) for other batches",
        ) from error
    if not isinstance(pos, Tensor) or not isinstance(batch, Tensor):
        raise InputError(
            "loader", "inputs(data) must return (pos, batch, num_clouds) with tensors pos and batch"
        )


def fit_sampler(
    sampler: SampleNet,
    task_loss: Callable[[SampleNetOutput, Any], Tensor],
    loader: Iterable,
    *,
    epochs: int,
    lr: float,
    loss_weights: Optional[LossWeights] = None,
    control_sizes: Optional[Sequence[int]] = None,
    reduction: str = "sum",
    temperature: Optional[TemperatureSchedule] = None,
    lr_schedule: str = "constant",
    decay_samples: int = 600_000,
    inputs: Callable[[Any], tuple[Tensor, Tensor, int]] = default_inputs,
    checkpoint: Optional[PathLike] = None,
    out: Optional[PathLike] = None,
    device: Optional[Union[str, torch.device]] = None,
    progress: bool = True,
    desc: str = "train sampler",
) -> list[float]:
    r"""Trains :obj:`sampler` (SampleNet, S-NET or SampleNet-Progressive) against a frozen
    task network, as in the `"SampleNet: Differentiable Point Cloud Sampling"
    <https://arxiv.org/abs/1912.03663>`_ paper: each step minimises

    .. math::
        L = L_{task}(\text{out}) + \alpha L_s(Q, P) + \lambda \sigma

    (:func:`~tg_samplenet.samplenet_loss`, or :func:`~tg_samplenet.progressive_loss`) with
    Adam, resumable from :obj:`checkpoint` (:func:`~tg_samplenet.training.loop.fit_model`).

    .. code-block:: python

        freeze(classifier)

        def task_loss(out, data):  # out: the sampler's output on data
            return F.cross_entropy(classifier(out.pos, out.batch), data.y)

        sampler = SampleNet(32)
        fit_sampler(sampler, task_loss, loader, epochs=100, lr=1e-2,
                    checkpoint="runs/sampler.pt")
        sampler.eval()  # hard samples: sampler(pos, batch).index

    Args:
        sampler (SampleNet): The sampler to train.
        task_loss (callable): :obj:`task_loss(out, data) -> Tensor`, the task network's
            loss on the sampler's output :obj:`out` for the batch :obj:`data`.
        loader (iterable): The training batches.
        epochs (int): Total number of epochs.
        lr (float): Adam's initial learning rate.
        loss_weights (LossWeights, optional): :math:`\alpha, \lambda, \beta, \gamma,
            \delta`. (default: :obj:`None`, the losses' defaults)
        control_sizes (Sequence[int], optional): The control sizes :math:`C_s` of a
            progressive sampler. (default: :obj:`None`, the powers of two up to :math:`m`)
        reduction (str, optional): :obj:`"sum"` or :obj:`"mean"` over the control sizes.
            (default: :obj:`"sum"`)
        temperature (TemperatureSchedule, optional): A schedule of :math:`\sigma` per epoch
            (one not learned drops the :math:`\lambda\sigma` term). (default: :obj:`None`)
        lr_schedule (str, optional): :obj:`"constant"`, :obj:`"cosine"` or
            :obj:`"staircase"`. (default: :obj:`"constant"`)
        decay_samples (int, optional): The staircase's step in samples.
            (default: :obj:`600000`)
        inputs (callable, optional): :obj:`inputs(data) -> (pos, batch, num_clouds)`, the
            clouds to sample from a batch. (default: :func:`default_inputs`)
        checkpoint (str or Path, optional): Resumable training state. (default: :obj:`None`)
        out (str or Path, optional): Where the trained sampler is saved (if older than
            :obj:`checkpoint`). (default: :obj:`None`, the checkpoint's name with suffix
            :obj:`.sampler.pt`)
        device (torch.device, optional): Where the batches go. (default: :obj:`None`, the
            sampler's device)
        progress (bool, optional): Show a tqdm bar. (default: :obj:`True`)
        desc (str, optional): Progress-bar label. (default: :obj:`"train sampler"`)

    :rtype: the mean loss of each epoch, :obj:`list[float]` (the sampler in eval mode)
    """
    if not isinstance(sampler, SampleNet):
        raise InputTypeError(
            "sampler", f"sampler must be a SampleNet (got {type(sampler).__name__})"
        )
    if not callable(task_loss):
        raise InputTypeError("task_loss", "task_loss must be callable as task_loss(out, data)")
    epochs = check_positive_int(epochs, "epochs")
    lr = check_number(lr, "lr", positive=True)
    check_choice(reduction, "reduction", ("sum", "mean"))
    if control_sizes is not None:
        if isinstance(control_sizes, (str, bytes)) or not hasattr(control_sizes, "__iter__"):
            raise InputTypeError("control_sizes", "control_sizes must be a sequence of ints")
        control_sizes = [check_positive_int(size, "control_sizes") for size in control_sizes]
        if not control_sizes:
            raise InputError("control_sizes", "control_sizes needs at least one size")
    _check_first_batch(loader, inputs)
    weights: dict[str, float] = {} if loss_weights is None else asdict(loss_weights)
    if temperature is not None and not temperature.learned:
        weights["lmbda"] = 0.0
    if device is None:
        device = next(sampler.parameters()).device

    # A progressive sampler projects only the points its largest control size uses.
    largest = max(control_sizes) if sampler.progressive and control_sizes else None

    def loss_fn(data) -> Tensor:
        pos, batch, num_clouds = inputs(data)
        result = sampler(pos, batch, num_samples=largest, num_clouds=num_clouds)
        if sampler.progressive:
            return progressive_loss(
                lambda part: task_loss(part, data),
                result,
                pos,
                batch,
                control_sizes,
                reduction=reduction,
                **weights,
            )
        return samplenet_loss(task_loss(result, data), result, pos, batch, **weights)

    def epoch_start(epoch: int) -> None:
        if temperature is not None:
            temperature.apply(sampler.projection, epoch)

    history = fit_model(
        sampler, loss_fn, loader, epochs=epochs, lr=lr, checkpoint=checkpoint,
        lr_schedule=lr_schedule, decay_samples=decay_samples, device=device,
        on_epoch_start=epoch_start, progress=progress, desc=desc,
    )  # fmt: skip
    sampler.eval()
    if out is None and checkpoint is not None:
        out = Path(checkpoint).with_suffix(".sampler.pt")
    if out is not None and is_main_process():
        out = Path(out)
        trained = Path(checkpoint) if checkpoint is not None else None
        stale = trained is None or not trained.exists() or not out.exists()
        if not stale:
            stale = out.stat().st_mtime_ns < trained.stat().st_mtime_ns
        if stale:
            sampler.save(out)
    barrier()  # the saved sampler is there before any rank goes on
    return history
