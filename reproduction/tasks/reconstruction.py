r"""The reconstruction task of SampleNet (paper §4.3): the point-cloud autoencoder
(:mod:`tg_samplenet.models`), the reconstruction error, the normalised reconstruction error
(NRE) overall and per class, and its evaluation on the points a sampler keeps."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Callable, Optional, Union

import torch
from torch import Tensor

from reproduction.tasks.metrics import per_class_mean, reduce_values
from tg_samplenet.losses import chamfer_distance
from tg_samplenet.models import PointCloudAE, ReconstructionOutput

__all__ = [
    "PointCloudAE",
    "ReconstructionOutput",
    "reconstruction_errors",
    "normalized_reconstruction_error",
    "nre_summary",
    "evaluate_reconstruction",
]


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
    return reduce_values(cd_sampled / cd_full, reduction)


def reconstruction_errors(
    ae: PointCloudAE, pos: Tensor, batch: Tensor, target: Tensor, target_batch: Tensor
) -> Tensor:
    r"""The Chamfer distance between the reconstruction of each cloud of :obj:`pos` and its
    complete cloud :obj:`target`, :obj:`[B]`; its mean is the autoencoder's training loss
    and the sampler's reconstruction task loss."""
    out = ae(pos, batch)
    return chamfer_distance(out.pos, target, out.batch, target_batch, reduction="none")


def nre_summary(
    cd_sampled: Tensor, cd_complete: Tensor, labels: Tensor, classes: Sequence[str]
) -> tuple[float, dict[str, float]]:
    r"""The NRE over all clouds and per class: each cloud's ratio
    :math:`\mathrm{CD}(\mathrm{AE}(Q), P) / \mathrm{CD}(\mathrm{AE}(P), P)` first, then the
    mean (the authors' evaluation), not the ratio of the mean errors.

    :rtype: :obj:`(overall, {class: value})`
    """
    ratios = normalized_reconstruction_error(cd_sampled, cd_complete, reduction="none")
    by_class = per_class_mean(ratios, labels, len(classes))
    return float(ratios.mean()), {c: float(v) for c, v in zip(classes, by_class, strict=True)}


def evaluate_reconstruction(
    ae: PointCloudAE,
    loader,
    device: Optional[Union[str, torch.device]] = None,
    sample: Optional[Callable[[Tensor, Tensor], tuple[Tensor, Tensor]]] = None,
) -> tuple[Tensor, Tensor]:
    r"""The reconstruction error (:func:`reconstruction_errors`) of every cloud of
    :obj:`loader` from the points that :obj:`sample(pos, batch) -> (pos, batch)` keeps (all
    points when :obj:`None`), and the labels.

    :rtype: :obj:`(errors [B], labels [B])` on the CPU
    """
    errors, labels = [], []
    with torch.no_grad():
        for data in loader:
            data = data.to(device) if device is not None else data
            pos, batch = (data.pos, data.batch) if sample is None else sample(data.pos, data.batch)
            errors.append(reconstruction_errors(ae, pos, batch, data.pos, data.batch))
            labels.append(data.y)
    return torch.cat(errors).cpu(), torch.cat(labels).cpu()
