r"""A PyG transform that samples a point cloud with a trained SampleNet."""

from __future__ import annotations

import re
from typing import Optional

from torch import Tensor
from torch_geometric.data import Batch, Data
from torch_geometric.transforms import BaseTransform

from tg_samplenet.nn.sampler import SampleNet
from tg_samplenet.nn.select import check_sampler_and_size, sampler_and_size_repr
from tg_samplenet.nn.weighted_gather import weighted_gather
from tg_samplenet.ops.checks import InputError, InputTypeError

__all__ = ["SampleNetSampling"]


class SampleNetSampling(BaseTransform):
    r"""Samples the points of a :class:`~torch_geometric.data.Data` object with a trained
    :class:`~tg_samplenet.SampleNet` (`"SampleNet: Differentiable Point Cloud Sampling"
    <https://arxiv.org/abs/1912.03663>`_), like
    :class:`~torch_geometric.transforms.FixedPoints` samples them at random.

    It keeps the eval-mode sample (:meth:`SampleNet.sample`) of every per-point attribute,
    by :class:`~torch_geometric.transforms.FixedPoints`'s rule.

    .. code-block:: python

        from torch_geometric.datasets import ModelNet
        from tg_samplenet import SampleNet
        from tg_samplenet.transforms import SampleNetSampling

        sampler = SampleNet.load("sampler.pt")
        dataset = ModelNet(root, transform=SampleNetSampling(sampler, num_samples=64))

    Args:
        sampler (SampleNet): A trained sampler (on any device).
        ratio (float, optional): Keep :math:`\lceil n \cdot r \rceil` points.
            (default: :obj:`None`)
        num_samples (int, optional): Points to keep, :math:`\min(m, n)`. (default:
            :obj:`None`, the sampler's :obj:`num_out_points`)
    """

    def __init__(
        self,
        sampler: SampleNet,
        ratio: Optional[float] = None,
        num_samples: Optional[int] = None,
    ):
        ratio = check_sampler_and_size(self, sampler, ratio, num_samples)
        self.sampler = sampler
        self.num_samples = num_samples
        self.ratio = ratio

    def forward(self, data: Data) -> Data:
        if isinstance(data, Batch) or not isinstance(data, Data):
            raise InputTypeError(
                "data",
                f"SampleNetSampling transforms one Data object (got {type(data).__name__}); "
                "apply it in the data set, or sample a Batch with SampleNet directly",
            )
        if getattr(data, "pos", None) is None:
            raise InputError("data", "SampleNetSampling needs data.pos (the points to sample)")
        num_nodes = data.num_nodes
        device = next(self.sampler.parameters()).device
        index = self.sampler.sample(data.pos.to(device), None, self.ratio, self.num_samples)
        index = index.to(data.pos.device)

        for key, value in data.items():
            if key == "num_nodes":
                data.num_nodes = index.numel()
            elif re.search("edge", key):
                continue
            elif isinstance(value, Tensor) and value.dim() > 0 and value.size(0) == num_nodes != 1:
                data[key] = weighted_gather(value, index.to(value.device))
        return data

    def __repr__(self) -> str:
        return sampler_and_size_repr(self)
