r"""A trained SampleNet behind :func:`torch_geometric.nn.fps`'s signature."""

from __future__ import annotations

import warnings
from typing import Optional

import torch
from torch import Tensor

from tg_samplenet.nn.sampler import SampleNet
from tg_samplenet.ops.checks import InputTypeError

__all__ = ["SampleNetFPS"]

# Samplers stay float32 for these: half precision turns near neighbours into ties.
_LOW_PRECISION = (torch.float16, torch.bfloat16)


class SampleNetFPS(torch.nn.Module):
    r"""A trained :class:`~tg_samplenet.SampleNet` (`"SampleNet: Differentiable Point Cloud
    Sampling" <https://arxiv.org/abs/1912.03663>`_) with the signature of
    :func:`torch_geometric.nn.fps`, as a submodule of the model it serves.

    .. code-block:: python

        from tg_samplenet import SampleNet, SampleNetFPS

        fps = SampleNetFPS(SampleNet.load("sampler.pt"))
        idx = fps(pos, batch, ratio=0.25)   # as torch_geometric.nn.fps(pos, batch, 0.25)

        model.sa1_module.fps = SampleNetFPS(SampleNet.load("sa1.pt"))  # one per layer

    It returns the eval-mode sample (:meth:`SampleNet.sample`): indices unique within each
    cloud, :math:`\lceil n_i \cdot r \rceil` per cloud as :func:`~torch_geometric.nn.fps`;
    :obj:`random_start` has no effect. Positions :obj:`[N, 3]` of any floating dtype are
    cast to the sampler's, which stays float32 under :obj:`model.half()`. Asking for more
    points than the sampler learned warns: the rest is farthest point sampling.

    Args:
        sampler (SampleNet): A trained sampler, in whichever mode.

    Shapes:
        - **input:** points :math:`(N, 3)`, batch vector :math:`(N)` (optional)
        - **output:** indices :math:`(\sum_i \lceil n_i \cdot r \rceil)`
    """

    def __init__(self, sampler: SampleNet):
        super().__init__()
        if not isinstance(sampler, SampleNet):
            raise InputTypeError(
                "sampler", f"SampleNetFPS wraps a SampleNet (got {type(sampler).__name__})"
            )
        self.sampler = sampler
        self._warned_sizes: set[int] = set()
        self._keep_sampler_precision()

    def reset_parameters(self):
        self.sampler.reset_parameters()

    def _apply(self, fn, recurse: bool = True):
        super()._apply(fn, recurse)
        self._keep_sampler_precision()
        return self

    def _keep_sampler_precision(self):
        if next(self.sampler.parameters()).dtype in _LOW_PRECISION:
            self.sampler.float()

    # fps's signature spelled out; warns here so that the warning points at the caller.
    def __call__(
        self,
        x: Tensor,
        batch: Optional[Tensor] = None,
        ratio: float = 0.5,
        random_start: bool = True,
        batch_size: Optional[int] = None,
    ) -> Tensor:
        index = super().__call__(x, batch, ratio, random_start, batch_size)
        if index.numel() > 0:
            most = index.numel() if batch is None else int(torch.bincount(batch[index]).max())
            self._warn_past_learned(most, ratio)
        return index

    def forward(
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
            random_start (bool, optional): Ignored. (default: :obj:`True`)
            batch_size (int, optional): The number of clouds :math:`B`. (default: :obj:`None`)

        :rtype: :class:`torch.LongTensor`
        """
        return self.sampler.sample(x, batch, ratio=ratio, num_clouds=batch_size)

    def _warn_past_learned(self, asked: int, ratio: float):
        learned = self.sampler.num_out_points
        if asked > learned and asked not in self._warned_sizes:
            self._warned_sizes.add(asked)
            warnings.warn(
                f"SampleNetFPS: asked for {asked} points per cloud (ratio={ratio}) from a "
                f"sampler that learned {learned}; the other {asked - learned} are plain "
                f"farthest point sampling. Train a sampler of more outputs (a progressive one "
                f"of m = n serves every ratio).",
                UserWarning,
                stacklevel=3,
            )

    def __repr__(self) -> str:
        return f"{self.__class__.__name__}({self.sampler})"
