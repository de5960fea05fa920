r"""SampleNet as a :class:`torch_geometric.nn.pool.select.Select` of PyG's pooling API."""

from __future__ import annotations

from typing import Optional

import torch
from torch import Tensor
from torch_geometric.nn.pool.select import Select, SelectOutput

from tg_samplenet.nn.output import SampleNetOutput
from tg_samplenet.nn.sampler import SampleNet
from tg_samplenet.ops.checks import InputError, InputTypeError, check_positive_int, check_ratio

__all__ = ["SampleNetSelect", "SampleNetSelectOutput"]


def check_sampler_and_size(
    owner: object, sampler: SampleNet, ratio: Optional[float], num_samples: Optional[int]
) -> Optional[float]:
    r"""Checks a module's :obj:`sampler` and its :obj:`ratio` or :obj:`num_samples` (not
    both); returns the ratio."""
    name = type(owner).__name__
    if not isinstance(sampler, SampleNet):
        raise InputTypeError("sampler", f"{name} wraps a SampleNet (got {type(sampler).__name__})")
    if ratio is not None and num_samples is not None:
        raise InputError("ratio", f"{name} takes ratio or num_samples, not both")
    if num_samples is not None:
        check_positive_int(num_samples, "num_samples")
    return None if ratio is None else check_ratio(ratio)


def sampler_and_size_repr(owner) -> str:
    r"""The :obj:`__repr__` of such a module."""
    if owner.ratio is not None:
        size = f"ratio={owner.ratio}"
    else:
        size = f"num_samples={owner.num_samples or owner.sampler.num_out_points}"
    return f"{type(owner).__name__}({owner.sampler}, {size})"


class SampleNetSelectOutput(SelectOutput):
    r"""A :class:`~torch_geometric.nn.pool.select.SelectOutput` that also keeps the
    sampler's own output, which SampleNet's losses need.

    Attributes:
        node_index (torch.LongTensor): The :math:`k` neighbours of each output point
            :obj:`[M * k]` in training, the selected input points :obj:`[M]` in eval.
        num_nodes (int): The number of input points :math:`N`.
        cluster_index (torch.LongTensor): The output point of each entry of
            :obj:`node_index`.
        num_clusters (int): The number of output points :math:`M`.
        weight (torch.Tensor, optional): The soft-projection weights :obj:`[M * k]` in
            training, else :obj:`None`.
        sample (SampleNetOutput): What :class:`~tg_samplenet.SampleNet` returned.
    """

    def __init__(
        self,
        node_index: Tensor,
        num_nodes: int,
        cluster_index: Tensor,
        num_clusters: int,
        weight: Optional[Tensor],
        sample: SampleNetOutput,
    ):
        super().__init__(node_index, num_nodes, cluster_index, num_clusters, weight)
        self.sample = sample

    def carry(self, src: Tensor) -> Tensor:
        r"""Pools a per-point tensor :obj:`src` :obj:`[N, *]` onto the output points, as
        :obj:`scatter(src[node_index] * weight, cluster_index, reduce="sum")`.

        :rtype: :class:`torch.Tensor` of shape :obj:`[M, *]`
        """
        return self.sample.carry(src)  # the same [M, k] tables, unflattened


class SampleNetSelect(Select):
    r"""The learned sampler of the `"SampleNet: Differentiable Point Cloud Sampling"
    <https://arxiv.org/abs/1912.03663>`_ paper as a PyG node selection (`"Understanding
    Pooling in Graph Neural Networks" <https://arxiv.org/abs/1905.05178>`_).

    Input points are assigned to output points (clusters):

    .. math::
        \mathbf{C}_{i,m} = \begin{cases} w_{m,j} & \text{if } \mathbf{p}_i
        \text{ is the } j\text{-th neighbour of } \mathbf{q}_m \text{ (training)} \\
        1 & \text{if } \mathbf{p}_i \text{ is the } m\text{-th sampled point (eval)}
        \end{cases}

    with the soft-projection weights :math:`w_{m,j}` of the :math:`k` nearest input points
    of each simplified point :math:`\mathbf{q}_m`.

    .. code-block:: python

        select = SampleNetSelect(SampleNet(num_out_points=64))
        out = select(pos, batch)
        x_pooled = out.carry(x)            # [M, F], as PyG's scatter of the output
        pos_pooled = out.sample.pos        # soft-projected in training
        loss = samplenet_loss(task_loss(x_pooled, pos_pooled), out.sample, pos, batch)

    Args:
        sampler (SampleNet): The sampler (trained jointly, or trained and frozen).
        ratio (float, optional): Sample :math:`\lceil n_i \cdot r \rceil` points per cloud,
            like :func:`~torch_geometric.nn.fps`. (default: :obj:`None`)
        num_samples (int, optional): Sample :math:`\min(c, n_i)` points per cloud.
            (default: :obj:`None`, the sampler's :obj:`num_out_points`)

    Shapes:
        - **input:** points :math:`(N, 3)`, batch vector :math:`(N)` (optional)
        - **output:** :class:`SampleNetSelectOutput` with :obj:`node_index`,
          :obj:`cluster_index` and :obj:`weight` :math:`(M \cdot k)` in training and
          :math:`(M)` in eval
    """

    def __init__(
        self,
        sampler: SampleNet,
        ratio: Optional[float] = None,
        num_samples: Optional[int] = None,
    ):
        super().__init__()
        ratio = check_sampler_and_size(self, sampler, ratio, num_samples)
        self.sampler = sampler
        self.ratio = ratio
        self.num_samples = num_samples

    def reset_parameters(self):
        self.sampler.reset_parameters()

    def forward(
        self,
        pos: Tensor,
        batch: Optional[Tensor] = None,
        num_clouds: Optional[int] = None,
    ) -> SampleNetSelectOutput:
        r"""
        Args:
            pos (torch.Tensor): Points :obj:`[N, 3]`.
            batch (torch.Tensor, optional): Sorted batch vector
                :math:`\mathbf{b} \in {\{ 0, \ldots, B-1\}}^N`. (default: :obj:`None`)
            num_clouds (int, optional): The number of clouds :math:`B`. (default: :obj:`None`)
        """
        sample = self.sampler(pos, batch, self.ratio, self.num_samples, num_clouds)
        M = sample.index.numel()
        if sample.weights is None or sample.neighbors is None:  # eval, or no projection
            cluster = torch.arange(M, device=pos.device)
            return SampleNetSelectOutput(sample.index, pos.size(0), cluster, M, None, sample)
        k = sample.neighbors.size(1)
        cluster = torch.arange(M, device=pos.device).repeat_interleave(k)
        return SampleNetSelectOutput(
            sample.neighbors.reshape(-1),
            pos.size(0),
            cluster,
            M,
            sample.weights.reshape(-1),
            sample,
        )

    def __repr__(self) -> str:
        return sampler_and_size_repr(self)
