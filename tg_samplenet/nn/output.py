r"""What :class:`~tg_samplenet.SampleNet` returns: the sample, the simplified points the
losses need, and a way to carry any per-point tensor through the same selection."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

import torch
from torch import Tensor

from tg_samplenet.nn.weighted_gather import weighted_gather
from tg_samplenet.ops.batch import rank_in_cloud

__all__ = ["SampleNetOutput"]


@dataclass
class SampleNetOutput:
    r"""What :class:`SampleNet` returns for a batch of :math:`B` clouds.

    Attributes:
        pos (torch.Tensor): :obj:`[M, 3]`, what the task should consume: soft-projected points
            in training mode (differentiable; the simplified points themselves with
            :obj:`skip_projection=True`), :obj:`pos[index]` in eval mode.
        index (torch.LongTensor): :obj:`[M]` indices into the input :obj:`pos`, grouped by
            cloud in batch order. In eval mode they are unique within each cloud. In training
            mode they are each output point's nearest input point (repeats possible).
        batch (torch.LongTensor): :obj:`[M]` batch vector of the output points.
        counts (torch.LongTensor): :obj:`[B]` output points per cloud.
        simplified (torch.Tensor): :obj:`[B' * m, 3]` the simplified points
            :math:`\mathbf{Q}`, :obj:`m = num_out_points` per non-empty cloud, in the
            network's order (the losses need them).
        simplified_batch (torch.LongTensor): :obj:`[B' * m]` batch vector of
            :obj:`simplified`.
        weights (torch.Tensor, optional): :obj:`[M, k]` soft-projection weights (training
            mode with projection only).
        neighbors (torch.LongTensor, optional): :obj:`[M, k]` their neighbour indices.
        sigma (torch.Tensor, optional): The projection's :math:`\sigma = t^2 + \sigma_{\min}`
            (:obj:`None` without projection); its projection loss.
        straight_through (bool): Training output of a :obj:`straight_through` sampler:
            :obj:`pos` and :meth:`carry` give the hard sample's values with the soft
            projection's gradient. (default: :obj:`False`)
    """

    pos: Tensor
    index: Tensor
    batch: Tensor
    counts: Tensor
    simplified: Tensor
    simplified_batch: Tensor
    weights: Optional[Tensor] = None
    neighbors: Optional[Tensor] = None
    sigma: Optional[Tensor] = field(default=None)
    straight_through: bool = False

    def carry(self, src: Tensor) -> Tensor:
        r"""Takes any per-point tensor :obj:`src` :obj:`[N, *]` of the input (features,
        normals, colours) through the same selection: gathered at :obj:`index` in eval mode
        (and in training with :obj:`skip_projection=True`), mixed with the soft-projection
        weights in training, so that gradients reach :obj:`src` and the sampler. Integer
        tensors are gathered at the highest-weight neighbour (:obj:`index`) in both modes.
        See :func:`~tg_samplenet.nn.weighted_gather.weighted_gather`.

        :rtype: :class:`torch.Tensor` of shape :obj:`[M, *]`
        """
        if self.weights is None or self.neighbors is None:
            return weighted_gather(src, self.index)
        mixed = weighted_gather(src, self.neighbors, self.weights)
        if self.straight_through and torch.is_floating_point(src):
            return weighted_gather(src, self.index) + (mixed - mixed.detach())
        return mixed

    def prefix(self, size: int) -> SampleNetOutput:
        r"""The first :obj:`size` output points of each cloud (a progressive sampler's
        ordered output makes every prefix a sample). Simplified points are cut alike."""
        B = self.counts.numel()
        keep = rank_in_cloud(self.batch, B) < size
        keep_q = rank_in_cloud(self.simplified_batch, B) < size
        return SampleNetOutput(
            pos=self.pos[keep],
            index=self.index[keep],
            batch=self.batch[keep],
            counts=self.counts.clamp(max=size),
            simplified=self.simplified[keep_q],
            simplified_batch=self.simplified_batch[keep_q],
            weights=None if self.weights is None else self.weights[keep],
            neighbors=None if self.neighbors is None else self.neighbors[keep],
            sigma=self.sigma,
            straight_through=self.straight_through,
        )
