r"""SampleNet's losses on PyG batches: Chamfer terms with batch vectors, the simplification
loss, and the full and progressive objectives (paper §3, Eqs. 1-11)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Optional

import torch
from torch import Tensor
from torch_geometric.utils import scatter

from tg_samplenet.nn.output import SampleNetOutput
from tg_samplenet.nn.weighted_gather import gather_rows
from tg_samplenet.ops.batch import rank_in_cloud
from tg_samplenet.ops.checks import (
    InputError,
    InputTypeError,
    check_choice,
    check_cloud_batch,
    check_int,
    check_like,
    check_number,
    check_points,
    check_positive_int,
    check_references,
)

__all__ = [
    "nn_squared_distance",
    "average_nn_distance",
    "max_nn_distance",
    "chamfer_distance",
    "simplification_loss",
    "samplenet_loss",
    "progressive_loss",
]


def _check_pair(
    x: Tensor,
    y: Tensor,
    batch_x: Optional[Tensor],
    batch_y: Optional[Tensor],
    names: tuple[str, str, str, str],
    num_clouds: Any = None,
) -> tuple[Tensor, Tensor, int]:
    x_name, y_name, batch_x_name, batch_y_name = names
    check_points(x, x_name, dim=None)
    check_points(y, y_name, dim=None)
    check_like(x, y, x_name, y_name)
    batch_x, clouds_x = check_cloud_batch(batch_x, x, batch_x_name, pos_name=x_name)
    batch_y, clouds_y = check_cloud_batch(batch_y, y, batch_y_name, pos_name=y_name)
    implied = max(clouds_x, clouds_y)
    if num_clouds is None:
        return batch_x, batch_y, implied
    if check_int(num_clouds, "num_clouds", minimum=0) < implied:
        raise InputError(
            "num_clouds",
            f"num_clouds={num_clouds} is smaller than the batch vectors imply ({implied} clouds)",
        )
    return batch_x, batch_y, num_clouds


def _per_cloud(value: Tensor, batch: Tensor, num_clouds: int, reduce: str) -> Tensor:
    # Mean or max per cloud; NaN for a cloud without entries.
    out = scatter(value, batch, 0, num_clouds, reduce)
    present = torch.bincount(batch, minlength=num_clouds) > 0
    return torch.where(present, out, float("nan"))


def _reduce(value: Tensor, present: Tensor, reduction: str, names: tuple[str, str]) -> Tensor:
    # Reduces per-cloud values over the clouds that hold points (gaps in ids left out).
    if reduction == "none":
        return torch.where(present, value, float("nan"))
    value = value[present]
    if reduction == "sum":
        return value.sum()
    if value.numel() == 0:
        raise InputError(
            names[0],
            f"{names[0]} and {names[1]} hold no points: the mean over no clouds is undefined",
        )
    return value.mean()


def _nn_squared(src: Tensor, dst: Tensor, batch_src: Tensor, batch_dst: Tensor, B: int) -> Tensor:
    index = torch.ops.tg_samplenet.knn(dst, src, 1, batch_dst, batch_src, B)[0][:, 0]
    return (src - gather_rows(dst, index)).pow(2).sum(-1)


_NN_NAMES = ("src", "dst", "batch_src", "batch_dst")


def nn_squared_distance(
    src: Tensor,
    dst: Tensor,
    batch_src: Optional[Tensor] = None,
    batch_dst: Optional[Tensor] = None,
) -> Tensor:
    r"""Squared distance from each point of :obj:`src` to its nearest point of :obj:`dst` in
    the same cloud, :math:`\min_{\mathbf{y} \in Y_i} \|\mathbf{x} - \mathbf{y}\|^2`, with a
    gradient to both.

    Args:
        src (torch.Tensor): Points :obj:`[N, D]`.
        dst (torch.Tensor): Points :obj:`[M, D]` of the same dtype, in every cloud of
            :obj:`src`.
        batch_src (torch.Tensor, optional): Sorted batch vector of :obj:`src`.
            (default: :obj:`None`)
        batch_dst (torch.Tensor, optional): Sorted batch vector of :obj:`dst`.
            (default: :obj:`None`)

    :rtype: :class:`torch.Tensor` of shape :obj:`[N]`
    """
    batch_src, batch_dst, B = _check_pair(src, dst, batch_src, batch_dst, _NN_NAMES)
    check_references(batch_dst, batch_src, B, "dst", "src")
    return _nn_squared(src, dst, batch_src, batch_dst, B)


def average_nn_distance(
    src: Tensor,
    dst: Tensor,
    batch_src: Optional[Tensor] = None,
    batch_dst: Optional[Tensor] = None,
    num_clouds: Optional[int] = None,
) -> Tensor:
    r"""The average nearest-neighbour loss of Eq. (2), per cloud:
    :math:`L_a(X, Y) = \frac{1}{|X|} \sum_{\mathbf{x} \in X} \min_{\mathbf{y} \in Y}
    \|\mathbf{x} - \mathbf{y}\|_2^2`, with the arguments of :func:`nn_squared_distance`
    (NaN for a cloud without points in :obj:`src`).

    Args:
        num_clouds (int, optional): The number of clouds :math:`B`, at least the largest
            batch id plus one. (default: :obj:`None`)

    :rtype: :class:`torch.Tensor` of shape :obj:`[B]`
    """
    batch_src, batch_dst, B = _check_pair(src, dst, batch_src, batch_dst, _NN_NAMES, num_clouds)
    check_references(batch_dst, batch_src, B, "dst", "src")
    return _per_cloud(_nn_squared(src, dst, batch_src, batch_dst, B), batch_src, B, "mean")


def max_nn_distance(
    src: Tensor,
    dst: Tensor,
    batch_src: Optional[Tensor] = None,
    batch_dst: Optional[Tensor] = None,
    num_clouds: Optional[int] = None,
) -> Tensor:
    r"""The maximal nearest-neighbour loss of Eq. (3), per cloud:
    :math:`L_m(X, Y) = \max_{\mathbf{x} \in X} \min_{\mathbf{y} \in Y}
    \|\mathbf{x} - \mathbf{y}\|_2^2`, with the arguments of :func:`average_nn_distance`.

    :rtype: :class:`torch.Tensor` of shape :obj:`[B]`
    """
    batch_src, batch_dst, B = _check_pair(src, dst, batch_src, batch_dst, _NN_NAMES, num_clouds)
    check_references(batch_dst, batch_src, B, "dst", "src")
    return _per_cloud(_nn_squared(src, dst, batch_src, batch_dst, B), batch_src, B, "max")


_REDUCTIONS = ("mean", "sum", "none")


def chamfer_distance(
    x: Tensor,
    y: Tensor,
    batch_x: Optional[Tensor] = None,
    batch_y: Optional[Tensor] = None,
    reduction: str = "mean",
) -> Tensor:
    r"""The symmetric Chamfer distance with squared distances,
    :math:`L_a(X, Y) + L_a(Y, X)`, per cloud, reduced over the clouds that hold points.

    Args:
        x (torch.Tensor): Points :obj:`[N, D]`.
        y (torch.Tensor): Points :obj:`[M, D]` of the same dtype, in the same clouds.
        batch_x (torch.Tensor, optional): Sorted batch vector of :obj:`x`.
            (default: :obj:`None`)
        batch_y (torch.Tensor, optional): Sorted batch vector of :obj:`y`.
            (default: :obj:`None`)
        reduction (str, optional): :obj:`"mean"`, :obj:`"sum"` or :obj:`"none"` (per cloud,
            NaN for absent ids). (default: :obj:`"mean"`)
    """
    check_choice(reduction, "reduction", _REDUCTIONS)
    batch_x, batch_y, B = _check_pair(x, y, batch_x, batch_y, ("x", "y", "batch_x", "batch_y"))
    check_references(batch_y, batch_x, B, "y", "x")
    check_references(batch_x, batch_y, B, "x", "y")
    value = scatter(_nn_squared(x, y, batch_x, batch_y, B), batch_x, 0, B, "mean") + scatter(
        _nn_squared(y, x, batch_y, batch_x, B), batch_y, 0, B, "mean"
    )
    present = torch.bincount(batch_x, minlength=B) > 0
    return _reduce(value, present, reduction, ("x", "y"))


def _check_weights(**weights: Any) -> list[float]:
    return [check_number(value, name, minimum=0.0) for name, value in weights.items()]


def simplification_loss(
    simplified: Tensor,
    pos: Tensor,
    simplified_batch: Optional[Tensor] = None,
    batch: Optional[Tensor] = None,
    beta: float = 1.0,
    gamma: float = 1.0,
    delta: float = 0.0,
    reduction: str = "mean",
) -> Tensor:
    r"""The simplification loss of Eq. (4), per cloud, reduced over the clouds:

    .. math::
        L_s(Q, P) = L_a(Q, P) + \beta L_m(Q, P) + (\gamma + \delta |Q|) L_a(P, Q)

    Args:
        simplified (torch.Tensor): Simplified points :math:`Q`, :obj:`[M, D]`.
        pos (torch.Tensor): Input points :math:`P`, :obj:`[N, D]`, in the same clouds.
        simplified_batch (torch.Tensor, optional): Sorted batch vector of :math:`Q`.
            (default: :obj:`None`)
        batch (torch.Tensor, optional): Sorted batch vector of :math:`P`.
            (default: :obj:`None`)
        beta (float, optional): :math:`\beta \geq 0`. (default: :obj:`1.0`)
        gamma (float, optional): :math:`\gamma \geq 0`. (default: :obj:`1.0`)
        delta (float, optional): :math:`\delta \geq 0`. (default: :obj:`0.0`)
        reduction (str, optional): :obj:`"mean"`, :obj:`"sum"` or :obj:`"none"`.
            (default: :obj:`"mean"`)
    """
    weights = _check_weights(beta=beta, gamma=gamma, delta=delta)
    check_choice(reduction, "reduction", _REDUCTIONS)
    names = ("simplified", "pos", "simplified_batch", "batch")
    simplified_batch, batch, B = _check_pair(simplified, pos, simplified_batch, batch, names)
    check_references(batch, simplified_batch, B, "pos", "simplified")
    check_references(simplified_batch, batch, B, "simplified", "pos")
    value = _simplification(simplified, pos, simplified_batch, batch, B, weights)
    present = torch.bincount(batch, minlength=B) > 0
    return _reduce(value, present, reduction, ("simplified", "pos"))


def _simplification(
    simplified: Tensor,
    pos: Tensor,
    simplified_batch: Tensor,
    batch: Tensor,
    B: int,
    weights: Sequence[float],
    to_input: Optional[Tensor] = None,
) -> Tensor:
    # Per-cloud L_s (0 for clouds without points). to_input, each q's squared distance to P,
    # may be given: a progressive loss computes it once for all prefixes.
    if to_input is None:
        to_input = _nn_squared(simplified, pos, simplified_batch, batch, B)
    beta, gamma, delta = weights
    size = torch.bincount(simplified_batch, minlength=B).to(pos.dtype)
    to_simplified = _nn_squared(pos, simplified, batch, simplified_batch, B)
    return (
        scatter(to_input, simplified_batch, 0, B, "mean")
        + beta * scatter(to_input, simplified_batch, 0, B, "max")
        + (gamma + delta * size) * scatter(to_simplified, batch, 0, B, "mean")
    )


def _check_output(out: Any, pos: Tensor, batch: Optional[Tensor]) -> tuple[Tensor, Tensor, int]:
    if not isinstance(out, SampleNetOutput):
        raise InputTypeError("out", f"out must be a SampleNetOutput (got {type(out).__name__})")
    names = ("out.simplified", "pos", "out.simplified_batch", "batch")
    simplified_batch, batch, B = _check_pair(
        out.simplified, pos, out.simplified_batch, batch, names
    )
    B = max(B, out.counts.numel())
    check_references(batch, simplified_batch, B, "pos", "out.simplified")
    check_references(simplified_batch, batch, B, "out.simplified", "pos")
    return simplified_batch, batch, B


def samplenet_loss(
    task_loss: Tensor,
    out: SampleNetOutput,
    pos: Tensor,
    batch: Optional[Tensor] = None,
    alpha: float = 30.0,
    lmbda: float = 1.0,
    beta: float = 1.0,
    gamma: float = 1.0,
    delta: float = 0.0,
) -> Tensor:
    r"""SampleNet's objective, Eq. (10):
    :math:`L = L_{task}(R) + \alpha L_s(Q, P) + \lambda \sigma`.

    The :math:`\sigma` term is dropped without projection. The defaults are the authors'
    classification settings (others: :obj:`~tg_samplenet.training.PAPER_LOSS_WEIGHTS`).

    Args:
        task_loss (torch.Tensor): :math:`L_{task}` computed on :obj:`out.pos`, one value.
        out (SampleNetOutput): The sampler's training output.
        pos (torch.Tensor): Input points :obj:`[N, 3]`.
        batch (torch.Tensor, optional): Their batch vector. (default: :obj:`None`)
        alpha (float, optional): :math:`\alpha \geq 0`. (default: :obj:`30.0`)
        lmbda (float, optional): :math:`\lambda`. (default: :obj:`1.0`)
        beta (float, optional): :math:`\beta`. (default: :obj:`1.0`)
        gamma (float, optional): :math:`\gamma`. (default: :obj:`1.0`)
        delta (float, optional): :math:`\delta`. (default: :obj:`0.0`)
    """
    _check_task_loss(task_loss)
    alpha, lmbda, *weights = _check_weights(
        alpha=alpha, lmbda=lmbda, beta=beta, gamma=gamma, delta=delta
    )
    simplified_batch, batch, B = _check_output(out, pos, batch)
    value = _simplification(out.simplified, pos, simplified_batch, batch, B, weights)
    present = torch.bincount(batch, minlength=B) > 0
    loss = task_loss + alpha * _reduce(value, present, "mean", ("out.simplified", "pos"))
    if out.sigma is not None and lmbda != 0:
        loss = loss + lmbda * out.sigma
    return loss


def _check_task_loss(task_loss: Any):
    if not isinstance(task_loss, Tensor) or not torch.is_floating_point(task_loss):
        raise InputTypeError(
            "task_loss", f"task_loss must be a floating-point tensor (got {task_loss!r:.60})"
        )
    if task_loss.numel() != 1:
        raise InputError(
            "task_loss", f"task_loss must be a single value (got shape {list(task_loss.shape)})"
        )


def progressive_loss(
    task_loss_fn: Callable[[SampleNetOutput], Tensor],
    out: SampleNetOutput,
    pos: Tensor,
    batch: Optional[Tensor] = None,
    control_sizes: Optional[Sequence[int]] = None,
    alpha: float = 30.0,
    lmbda: float = 1.0,
    beta: float = 1.0,
    gamma: float = 0.5,
    delta: float = 1.0 / 30.0,
    reduction: str = "sum",
) -> Tensor:
    r"""SampleNet-Progressive's objective, Eq. (11): the task and simplification losses of
    the first :math:`c` points of every cloud for each control size :math:`c`:

    .. math::
        L = \sum_{c \in C_s} \left( L_{task}(R_{1:c}) + \alpha L_s(Q_{1:c}, P) \right)
        + \lambda \sigma

    Args:
        task_loss_fn (callable): Maps a :class:`SampleNetOutput` (one prefix) to its task loss.
        out (SampleNetOutput): The sampler's training output with :math:`m = n` points.
        pos (torch.Tensor): Input points :obj:`[N, 3]`.
        batch (torch.Tensor, optional): Their batch vector. (default: :obj:`None`)
        control_sizes (list of int, optional): :math:`C_s`. (default: :obj:`None`, the
            powers of two up to :obj:`m`)
        alpha (float, optional): :math:`\alpha`. (default: :obj:`30.0`)
        lmbda (float, optional): :math:`\lambda`. (default: :obj:`1.0`)
        beta (float, optional): :math:`\beta`. (default: :obj:`1.0`)
        gamma (float, optional): :math:`\gamma`. (default: :obj:`0.5`)
        delta (float, optional): :math:`\delta`. (default: :obj:`1/30`)
        reduction (str, optional): :obj:`"sum"` over sizes (the paper's) or :obj:`"mean"`.
            (default: :obj:`"sum"`)
    """
    if not callable(task_loss_fn):
        raise InputTypeError(
            "task_loss_fn", f"task_loss_fn must be callable (got {type(task_loss_fn).__name__})"
        )
    check_choice(reduction, "reduction", ("sum", "mean"))
    alpha, lmbda, *weights = _check_weights(
        alpha=alpha, lmbda=lmbda, beta=beta, gamma=gamma, delta=delta
    )
    simplified_batch, batch, B = _check_output(out, pos, batch)
    m = int(out.counts.max()) if out.counts.numel() else 0
    if control_sizes is None:
        control_sizes = [2**i for i in range(1, m.bit_length()) if 2**i <= m]
    elif isinstance(control_sizes, (str, bytes)) or not isinstance(control_sizes, Sequence):
        raise InputTypeError(
            "control_sizes",
            f"control_sizes must be a sequence of ints (got {type(control_sizes).__name__})",
        )
    control_sizes = [check_positive_int(size, "control_sizes") for size in control_sizes]
    if len(control_sizes) == 0:
        raise InputError("control_sizes", "progressive_loss needs at least one control size")
    present = torch.bincount(batch, minlength=B) > 0
    if not bool(present.any()):
        raise InputError("pos", "pos holds no points: the loss over no clouds is undefined")
    # A simplified point's nearest input point does not depend on the prefix: search once.
    rank = rank_in_cloud(simplified_batch, B)
    used = rank < max(control_sizes)
    simplified, simplified_batch, rank = out.simplified[used], simplified_batch[used], rank[used]
    to_input = _nn_squared(simplified, pos, simplified_batch, batch, B)
    total = pos.new_zeros(())
    for size in control_sizes:
        part = out.prefix(size)
        keep = rank < size
        simplification = _simplification(
            simplified[keep], pos, simplified_batch[keep], batch, B, weights, to_input[keep]
        )
        total = total + task_loss_fn(part) + alpha * simplification[present].mean()
    if reduction == "mean":
        total = total / len(control_sizes)
    if out.sigma is not None and lmbda != 0:
        total = total + lmbda * out.sigma
    return total
