r"""The classification task of SampleNet (paper §4.1): the PointNet classifier (with and
without its transform nets, :mod:`tg_samplenet.models`), its training loss, the instance
accuracy and its evaluation on the points a sampler keeps."""

from __future__ import annotations

from typing import Callable, Optional, Union

import torch
import torch.nn.functional as F
from torch import Tensor

from reproduction.tasks.metrics import per_class_mean
from tg_samplenet.models import PointNet, TNet, orthogonality_regularizer

__all__ = [
    "TNet",
    "PointNet",
    "orthogonality_regularizer",
    "classification_loss",
    "accuracy",
    "per_class_accuracy",
    "evaluate_accuracy",
]


def classification_loss(
    model: PointNet,
    pos: Tensor,
    batch: Optional[Tensor],
    target: Tensor,
    regularizer_weight: float = 0.001,
) -> Tensor:
    r"""The classification task loss, the cross entropy of :obj:`model`'s logits plus the
    feature-transform regulariser (see :class:`PointNet`):

    .. math::
        \mathcal{L} = \mathrm{CE}(\text{model}(\mathbf{P}), y) + w \, \mathcal{R}.

    Args:
        model (PointNet): The classifier.
        pos (torch.Tensor): Points :obj:`[N, 3]` (complete, sampled or soft-projected).
        batch (torch.Tensor, optional): Their sorted batch vector.
        target (torch.Tensor): The labels :obj:`[B]`.
        regularizer_weight (float, optional): :math:`w`. (default: :obj:`0.001`)

    :rtype: :class:`torch.Tensor` (0-dim)
    """
    logits, regularizer = model(pos, batch, return_regularizer=True)
    return F.cross_entropy(logits, target) + regularizer_weight * regularizer


def _predictions(pred: Tensor, target: Tensor) -> Tensor:
    if not isinstance(pred, Tensor) or not isinstance(target, Tensor):
        raise TypeError("pred and target must be torch.Tensors")
    if target.dim() != 1 or target.dtype.is_floating_point:
        raise ValueError(
            f"target must be a 1-D integer tensor of labels (got shape {list(target.shape)}, "
            f"dtype {target.dtype})"
        )
    if pred.dim() == 2:
        pred = pred.argmax(dim=-1)
    elif pred.dim() != 1 or pred.dtype.is_floating_point:
        raise ValueError(
            f"pred must be logits [B, C] or integer labels [B] (got shape "
            f"{list(pred.shape)}, dtype {pred.dtype})"
        )
    if pred.numel() != target.numel():
        raise ValueError(
            f"pred and target describe different numbers of samples "
            f"({pred.numel()} and {target.numel()})"
        )
    if target.numel() == 0:
        raise ValueError("pred and target are empty")
    return pred


def accuracy(pred: Tensor, target: Tensor) -> Tensor:
    r"""The fraction of correct predictions (the paper's overall instance accuracy).

    Args:
        pred (torch.Tensor): Logits or scores :obj:`[B, C]` (the arg-max is the prediction)
            or predicted labels :obj:`[B]`.
        target (torch.Tensor): True labels :obj:`[B]`.

    :rtype: :class:`torch.Tensor` (0-dim, in :math:`[0, 1]`)
    """
    pred = _predictions(pred, target)
    return (pred == target).float().mean()


def per_class_accuracy(pred: Tensor, target: Tensor, num_classes: Optional[int] = None) -> Tensor:
    r"""The accuracy on the samples of each class (NaN for classes without samples);
    :obj:`per_class_accuracy(...).nanmean()` is the mean class accuracy.

    Args:
        pred (torch.Tensor): Logits :obj:`[B, C]` or predicted labels :obj:`[B]`.
        target (torch.Tensor): True labels :obj:`[B]`.
        num_classes (int, optional): The number of classes. (default: :obj:`None`, from the
            logits' width when given logits, else :obj:`target.max() + 1`)

    :rtype: :class:`torch.Tensor` :obj:`[C]`
    """
    if num_classes is None and isinstance(pred, Tensor) and pred.dim() == 2:
        num_classes = pred.size(1)
    pred = _predictions(pred, target)
    return per_class_mean((pred == target).float(), target, num_classes)


def evaluate_accuracy(
    model: torch.nn.Module,
    loader,
    device: Optional[Union[str, torch.device]] = None,
    sample: Optional[Callable[[Tensor, Tensor], tuple[Tensor, Tensor]]] = None,
) -> float:
    r"""The instance accuracy of :obj:`model` over :obj:`loader`, on the points that
    :obj:`sample(pos, batch) -> (pos, batch)` keeps of each batch (all points when
    :obj:`None`). Correct predictions are counted as integers, so the result is exactly
    :math:`\text{correct} / \text{total}`.

    :rtype: :class:`float`
    """
    correct = total = 0
    with torch.no_grad():
        for data in loader:
            data = data.to(device) if device is not None else data
            pos, batch = (data.pos, data.batch) if sample is None else sample(data.pos, data.batch)
            pred = model(pos, batch).argmax(-1)
            correct += int((pred == data.y).sum())
            total += data.num_graphs
    return correct / max(total, 1)
