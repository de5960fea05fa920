r"""What :class:`~tg_samplenet.SampleNet` returns."""

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
        pos (torch.Tensor): :obj:`[M, 3]`, what the task consumes: soft-projected points in
            training (simplified points with :obj:`skip_projection=True`), :obj:`pos[index]`
            in eval mode.
        index (torch.LongTensor): :obj:`[M]` indices into the input, grouped by cloud: unique
            within each cloud in eval mode, nearest input points in training.
        batch (torch.LongTensor): :obj:`[M]` batch vector of the output points.
        counts (torch.LongTensor): :obj:`[B]` output points per cloud.
        simplified (torch.Tensor): :obj:`[B' * m, 3]` the simplified points
            :math:`\mathbf{Q}`, :obj:`m` per non-empty cloud.
        simplified_batch (torch.LongTensor): :obj:`[B' * m]` batch vector of
            :obj:`simplified`.
        weights (torch.Tensor, optional): :obj:`[M, k]` soft-projection weights (training
            with projection only).
        neighbors (torch.LongTensor, optional): :obj:`[M, k]` their neighbour indices.
        sigma (torch.Tensor, optional): The projection's :math:`\sigma`, its loss.
        straight_through (bool): Output of a :obj:`straight_through` sampler in training.
            (default: :obj:`False`)
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
        r"""Takes a per-point tensor :obj:`src` :obj:`[N, *]` through the same selection:
        gathered at :obj:`index` in eval mode, mixed with the soft-projection weights in
        training (:func:`~tg_samplenet.nn.weighted_gather`).

        :rtype: :class:`torch.Tensor` of shape :obj:`[M, *]`
        """
        if self.weights is None or self.neighbors is None:
            return weighted_gather(src, self.index)
        mixed = weighted_gather(src, self.neighbors, self.weights)
        if self.straight_through and torch.is_floating_point(src):
            return weighted_gather(src, self.index) + (mixed - mixed.detach())
        return mixed

    def prefix(self, size: int) -> SampleNetOutput:
        r"""The first :obj:`size` output and simplified points of each cloud."""
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
