r"""Evaluation measures of the three SampleNet tasks: classification accuracy, rotation
error and sampling consistency for registration, and the normalised reconstruction error.

Every function returns a tensor on the input's device (0-dimensional for a mean; call
:obj:`.item()` for a Python number), so evaluation loops need no device synchronisation.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from tg_samplenet.tasks.rotations import rotate_points, rotation_angle

__all__ = [
    "accuracy",
    "per_class_mean",
    "per_class_accuracy",
    "rotation_errors",
    "mean_rotation_error",
    "rotation_error_auc",
    "sampling_consistency",
    "normalized_reconstruction_error",
]


def _reduce(values: Tensor, reduction: str) -> Tensor:
    if reduction == "mean":
        return values.mean()
    if reduction == "none":
        return values
    raise ValueError(f"reduction must be 'mean' or 'none' (got {reduction!r})")


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


def per_class_mean(values: Tensor, labels: Tensor, num_classes: int | None = None) -> Tensor:
    r"""The mean of :obj:`values` over the samples of each class.

    Classes without samples get NaN, so :obj:`out.nanmean()` is the mean over the classes
    present.

    Args:
        values (torch.Tensor): One number per sample, :obj:`[B]`.
        labels (torch.Tensor): The class of each sample, :obj:`[B]`.
        num_classes (int, optional): The number of classes :math:`C`.
            (default: :obj:`labels.max() + 1`)

    :rtype: :class:`torch.Tensor` :obj:`[C]`
    """
    if values.dim() != 1 or labels.dim() != 1 or values.numel() != labels.numel():
        raise ValueError(
            f"values and labels must be 1-D of the same length (got {list(values.shape)} "
            f"and {list(labels.shape)})"
        )
    if labels.dtype.is_floating_point:
        raise TypeError(f"labels must be integers (got {labels.dtype})")
    if labels.numel() > 0 and int(labels.min()) < 0:
        raise ValueError("labels must be non-negative")
    largest = int(labels.max()) + 1 if labels.numel() > 0 else 0
    if num_classes is None:
        num_classes = largest
    elif num_classes < largest:
        raise ValueError(f"labels hold class {largest - 1} but num_classes is {num_classes}")
    values = values if values.is_floating_point() else values.float()
    sums = values.new_zeros(num_classes).index_add_(0, labels, values)
    counts = torch.bincount(labels, minlength=num_classes).to(values.dtype)
    return sums / counts  # 0 / 0 = NaN for absent classes


def per_class_accuracy(pred: Tensor, target: Tensor, num_classes: int | None = None) -> Tensor:
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


def rotation_errors(rotation_est: Tensor, rotation_gt: Tensor) -> Tensor:
    r"""The geodesic angle in degrees between each estimated and true rotation,
    :func:`~tg_samplenet.rotations.rotation_angle`.

    This is half of what the authors' registration code reports (it doubles the angle; see
    :func:`~tg_samplenet.rotations.rotation_angle`).

    Args:
        rotation_est (torch.Tensor): Estimated rotations :obj:`[B, 3, 3]`.
        rotation_gt (torch.Tensor): True rotations :obj:`[B, 3, 3]`.

    :rtype: :class:`torch.Tensor` :obj:`[B]`
    """
    if rotation_est.shape != rotation_gt.shape:
        raise ValueError(
            f"rotation_est and rotation_gt must have one shape (got "
            f"{list(rotation_est.shape)} and {list(rotation_gt.shape)})"
        )
    return rotation_angle(rotation_est, rotation_gt, degrees=True)


def mean_rotation_error(rotation_est: Tensor, rotation_gt: Tensor) -> Tensor:
    r"""The mean rotation error (MRE) in degrees: the mean of :func:`rotation_errors`.

    :rtype: :class:`torch.Tensor` (0-dim)
    """
    return rotation_errors(rotation_est, rotation_gt).mean()


def rotation_error_auc(errors: Tensor, max_degrees: float = 180.0, step: float = 0.5) -> Tensor:
    r"""The area under the curve of the fraction of pairs whose rotation error is at most
    :math:`\tau`, for :math:`\tau = 0, \text{step}, \ldots` below :obj:`max_degrees`,
    normalised to :math:`[0, 1]` (the authors' registration AUC, computed on whatever errors
    are passed in).

    Args:
        errors (torch.Tensor): Rotation errors in degrees, :obj:`[B]`.
        max_degrees (float, optional): The end of the threshold range (excluded).
            (default: :obj:`180.0`)
        step (float, optional): The threshold spacing. (default: :obj:`0.5`)

    :rtype: :class:`torch.Tensor` (0-dim)
    """
    if errors.dim() != 1 or errors.numel() == 0:
        raise ValueError(f"errors must be a non-empty 1-D tensor (got {list(errors.shape)})")
    if not (step > 0 and max_degrees > 0):
        raise ValueError(f"step and max_degrees must be positive (got {step}, {max_degrees})")
    thresholds = torch.arange(0.0, max_degrees, step, dtype=errors.dtype, device=errors.device)
    return (errors[None, :] <= thresholds[:, None]).float().mean()


def sampling_consistency(
    template_pos: Tensor,
    source_pos: Tensor,
    rotation_gt: Tensor,
    template_batch: Tensor | None = None,
    source_batch: Tensor | None = None,
    reduction: str = "mean",
    chamfer: Callable[..., Tensor] | None = None,
) -> Tensor:
    r"""How consistently a sampler picks points on a registration pair: the Chamfer distance
    between the sampled template and the sampled source rotated back into the template's
    frame,

    .. math::
        \mathrm{CD}\big(\mathbf{Q}_0,\; \mathbf{R}_{gt}^{\top}\mathbf{Q}_1\big),

    where the source is the template rotated by :math:`\mathbf{R}_{gt}`. It is zero when
    both clouds are sampled at the same surface points.

    Args:
        template_pos (torch.Tensor): Sampled template points :obj:`[M0, 3]`.
        source_pos (torch.Tensor): Sampled source points :obj:`[M1, 3]`.
        rotation_gt (torch.Tensor): True rotations :obj:`[B, 3, 3]` from template to source.
        template_batch (torch.Tensor, optional): Batch vector of the template samples.
            (default: :obj:`None`)
        source_batch (torch.Tensor, optional): Batch vector of the source samples.
            (default: :obj:`None`)
        reduction (str, optional): :obj:`"mean"` over the pairs or :obj:`"none"` for
            :obj:`[B]`. (default: :obj:`"mean"`)
        chamfer (callable, optional): The Chamfer distance, called as
            :obj:`chamfer(x, y, batch_x, batch_y, reduction="none")` and returning one value
            per cloud. (default: :func:`tg_samplenet.losses.chamfer_distance`)

    :rtype: :class:`torch.Tensor`
    """
    if chamfer is None:
        from tg_samplenet.losses import chamfer_distance as chamfer
    if rotation_gt.dim() == 2:
        rotation_gt = rotation_gt.unsqueeze(0)
    num_pairs = 1
    if source_batch is not None and source_batch.numel() > 0:
        num_pairs = int(source_batch[-1]) + 1
    if num_pairs != rotation_gt.size(0):
        raise ValueError(
            f"the source holds {num_pairs} cloud(s) but rotation_gt holds "
            f"{rotation_gt.size(0)} rotation(s)"
        )
    rotated_back = rotate_points(source_pos, rotation_gt.transpose(-1, -2), source_batch)
    distances = chamfer(template_pos, rotated_back, template_batch, source_batch, reduction="none")
    return _reduce(distances, reduction)


def normalized_reconstruction_error(
    cd_sampled: Tensor, cd_full: Tensor, reduction: str = "mean"
) -> Tensor:
    r"""The normalised reconstruction error (NRE) of the reconstruction task: for each
    cloud :math:`P`, the Chamfer distance of the reconstruction from the sampled cloud
    divided by that of the reconstruction from the full cloud, then averaged over clouds,

    .. math::
        \mathrm{NRE} = \frac{1}{B}\sum_{b=1}^{B}
        \frac{\mathrm{CD}(\mathrm{AE}(Q_b), P_b)}{\mathrm{CD}(\mathrm{AE}(P_b), P_b)}.

    The ratio is taken per cloud and then averaged, as the authors' evaluation does (not the
    ratio of the means). It is 1 when sampling costs nothing.

    Args:
        cd_sampled (torch.Tensor): :math:`\mathrm{CD}(\mathrm{AE}(Q_b), P_b)` per cloud,
            :obj:`[B]`.
        cd_full (torch.Tensor): :math:`\mathrm{CD}(\mathrm{AE}(P_b), P_b)` per cloud,
            :obj:`[B]`, positive.
        reduction (str, optional): :obj:`"mean"` or :obj:`"none"` for the per-cloud ratios.
            (default: :obj:`"mean"`)

    :rtype: :class:`torch.Tensor`
    """
    if cd_sampled.dim() != 1 or cd_sampled.shape != cd_full.shape:
        raise ValueError(
            f"cd_sampled and cd_full must be 1-D of one length (got "
            f"{list(cd_sampled.shape)} and {list(cd_full.shape)})"
        )
    if cd_full.numel() == 0:
        raise ValueError("cd_sampled and cd_full are empty")
    if bool((cd_full <= 0).any()):
        raise ValueError("cd_full must be positive: a perfect reconstruction has no ratio")
    return _reduce(cd_sampled / cd_full, reduction)
