r"""A trained SampleNet behind :func:`torch_geometric.nn.fps`'s signature, so existing PyG code
(PointNet++'s :obj:`SAModule`, Point Transformer's :obj:`TransitionDown`, ...) can swap
:obj:`fps` for a learned sampler unchanged."""

from __future__ import annotations

from typing import Optional

import torch
from torch import Tensor

from tg_samplenet.nn.sampler import SampleNet

__all__ = ["SampleNetFPS"]


class SampleNetFPS:
    r"""Wraps a trained :class:`~tg_samplenet.SampleNet` as a function with the signature of
    :func:`torch_geometric.nn.fps`:

    .. code-block:: python

        from tg_samplenet import SampleNet, SampleNetFPS

        fps = SampleNetFPS(SampleNet.load("sampler.pt"))
        idx = fps(pos, batch, ratio=0.25)   # as torch_geometric.nn.fps(pos, batch, 0.25)

    It runs the sampler in eval mode without gradients and returns its hard-sampled
    indices: unique within each cloud, grouped by cloud in batch order, and exactly as many
    per cloud as :func:`~torch_geometric.nn.fps` returns
    (:math:`\lceil n_i \cdot r \rceil`, computed in float32). SampleNet is deterministic, so
    :obj:`random_start` has no effect.

    Args:
        sampler (SampleNet): A trained sampler. A progressive one serves every ratio well; a
            fixed-size one is completed by farthest point sampling past its :obj:`m` points.
    """

    def __init__(self, sampler: SampleNet):
        if not isinstance(sampler, SampleNet):
            raise TypeError(f"SampleNetFPS wraps a SampleNet (got {type(sampler).__name__})")
        self.sampler = sampler

    def __call__(
        self,
        x: Tensor,
        batch: Optional[Tensor] = None,
        ratio: float = 0.5,
        random_start: bool = True,
        batch_size: Optional[int] = None,
    ) -> Tensor:
        r"""
        Args:
            x (torch.Tensor): Points :math:`\mathbf{X} \in \mathbb{R}^{N \times 3}`.
            batch (torch.Tensor, optional): Sorted batch vector
                :math:`\mathbf{b} \in {\{ 0, \ldots, B-1\}}^N`. (default: :obj:`None`)
            ratio (float, optional): Sampling ratio in :math:`(0, 1]`. (default: :obj:`0.5`)
            random_start (bool, optional): Ignored (kept for signature compatibility).
                (default: :obj:`True`)
            batch_size (int, optional): The number of clouds :math:`B`.
                (default: :obj:`None`)

        :rtype: :class:`torch.LongTensor`
        """
        was_training = self.sampler.training
        self.sampler.eval()
        try:
            with torch.no_grad():
                return self.sampler(x, batch, ratio=ratio, num_clouds=batch_size).index
        finally:
            self.sampler.train(was_training)

    def __repr__(self) -> str:
        return f"{self.__class__.__name__}({self.sampler})"
