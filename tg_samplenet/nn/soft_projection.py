r"""The soft projection of SampleNet: a differentiable relaxation of nearest-neighbour
selection."""

from __future__ import annotations

import math
from typing import NamedTuple, Optional

import torch
from torch import Tensor
from torch.nn import Parameter

from tg_samplenet.ops.checks import check_batch, check_points, check_same_device
from tg_samplenet.ops.neighbors import padded_knn

__all__ = ["SoftProjection", "SoftProjectionOutput"]


class SoftProjectionOutput(NamedTuple):
    r"""What :class:`SoftProjection` returns for :math:`M` query points.

    Attributes:
        pos (torch.Tensor): Projected points :math:`\mathbf{r}`, :obj:`[M, 3]`.
        weights (torch.Tensor): Softmax weights over the neighbours, :obj:`[M, k]`; 0 on
            padding slots (clouds with fewer than :obj:`k` points).
        neighbors (torch.LongTensor): Indices of the :obj:`k` nearest input points,
            :obj:`[M, k]`, nearest first.
    """

    pos: Tensor
    weights: Tensor
    neighbors: Tensor

    def carry(self, src: Tensor) -> Tensor:
        r"""Projects any per-point tensor :obj:`src` :obj:`[N, *]` with the same weights:
        :math:`\sum_i w_i \, \mathbf{s}_i`. Integer tensors (labels) cannot be mixed and
        take the value of the highest-weight neighbour instead."""
        if not torch.is_floating_point(src):
            return src[self.neighbors.gather(1, self.weights.argmax(1, keepdim=True)).view(-1)]
        w = self.weights.view(*self.weights.shape, *([1] * (src.dim() - 1)))
        return (w * src[self.neighbors]).sum(1)


class SoftProjection(torch.nn.Module):
    r"""The soft projection from the `"SampleNet: Differentiable Point Cloud Sampling"
    <https://arxiv.org/abs/1912.03663>`_ paper. Each query point :math:`\mathbf{q}` (a
    simplified point) is replaced by a weighted average of its :math:`k` nearest neighbours
    :math:`\mathcal{N}(\mathbf{q})` in the input cloud:

    .. math::
        \mathbf{r} = \sum_{i \in \mathcal{N}(\mathbf{q})} w_i \mathbf{p}_i, \qquad
        w_i = \frac{\exp(-\|\mathbf{q} - \mathbf{p}_i\|^2 / \sigma)}
        {\sum_{j \in \mathcal{N}(\mathbf{q})} \exp(-\|\mathbf{q} - \mathbf{p}_j\|^2 / \sigma)}

    with :math:`\sigma = t^2 + \sigma_{\min}` for a learned temperature :math:`t`. As
    :math:`t \to 0` the weights become one-hot on the nearest neighbour, which is what
    inference uses. The neighbour search carries no gradient; gradients reach
    :math:`\mathbf{q}`, :math:`\mathbf{p}` and :math:`t` through the recomputed distances.

    The authors' code bounds :math:`\sigma` with a hard :obj:`max(t^2, min_sigma)`, which
    gives :math:`t` zero gradient once the bound is reached. The additive bound used here
    keeps :math:`\partial \sigma / \partial t = 2t` everywhere.

    Args:
        k (int, optional): Number of neighbours :math:`k`. (default: :obj:`7`)
        initial_temperature (float, optional): Initial :math:`t`. (default: :obj:`1.0`)
        min_sigma (float, optional): The lower bound :math:`\sigma_{\min}`.
            (default: :obj:`1e-4`)
        learn_temperature (bool, optional): If :obj:`False`, :math:`t` is a buffer set from
            outside (see :mod:`tg_samplenet.temperature`). (default: :obj:`True`)

    Shapes:
        - **input:** input points :math:`(N, 3)`, query points :math:`(M, 3)`, batch
          vectors :math:`(N)` and :math:`(M)` (optional)
        - **output:** :class:`SoftProjectionOutput` with :obj:`pos` :math:`(M, 3)`,
          :obj:`weights` and :obj:`neighbors` :math:`(M, k)`
    """

    def __init__(
        self,
        k: int = 7,
        initial_temperature: float = 1.0,
        min_sigma: float = 1e-4,
        learn_temperature: bool = True,
    ):
        super().__init__()
        if not isinstance(k, int) or k < 1:
            raise ValueError(f"k must be an integer >= 1 (got {k!r})")
        if min_sigma < 0:
            raise ValueError(f"min_sigma must be >= 0 (got {min_sigma})")
        self.k = k
        self.initial_temperature = float(initial_temperature)
        self.min_sigma = float(min_sigma)
        temperature = torch.tensor(self.initial_temperature)
        if learn_temperature:
            self.temperature = Parameter(temperature)
        else:
            self.register_buffer("temperature", temperature)
        self.reset_parameters()

    def reset_parameters(self):
        with torch.no_grad():
            self.temperature.fill_(self.initial_temperature)

    @property
    def sigma(self) -> Tensor:
        r"""The squared temperature :math:`\sigma = t^2 + \sigma_{\min}` (a scalar tensor)."""
        return self.temperature.pow(2) + self.min_sigma

    def set_sigma(self, sigma: float):
        r"""Sets :math:`t` so that :math:`\sigma` equals :obj:`sigma` (for fixed profiles)."""
        with torch.no_grad():
            self.temperature.fill_(math.sqrt(max(sigma - self.min_sigma, 0.0)))

    def projection_loss(self) -> Tensor:
        r"""The projection loss :math:`\mathcal{L}_{proj} = \sigma` of Eq. (10)."""
        return self.sigma

    def forward(
        self,
        pos: Tensor,
        query: Tensor,
        batch: Optional[Tensor] = None,
        query_batch: Optional[Tensor] = None,
        hard: bool = False,
    ) -> SoftProjectionOutput:
        r"""
        Args:
            pos (torch.Tensor): Input points :math:`\mathbf{P}`, :obj:`[N, 3]`.
            query (torch.Tensor): Query (simplified) points :math:`\mathbf{Q}`, :obj:`[M, 3]`.
            batch (torch.Tensor, optional): Sorted batch vector of :obj:`pos`.
                (default: :obj:`None`)
            query_batch (torch.Tensor, optional): Sorted batch vector of :obj:`query`.
                (default: :obj:`None`)
            hard (bool, optional): Use one-hot weights on the nearest neighbour instead of
                the softmax (no gradient to :math:`t`). (default: :obj:`False`)
        """
        check_points(query, "query")
        # Nothing to project onto is an error only when there is something to project.
        check_points(pos, "pos", allow_empty=query.size(0) == 0)
        check_same_device(pos, query)
        batch = check_batch(batch, pos, "batch")
        query_batch = check_batch(query_batch, query, "query_batch")

        neighbors, mask = padded_knn(pos, query, self.k, batch, query_batch)
        grouped = pos[neighbors]  # [M, k, 3]
        dist = (grouped - query.unsqueeze(1)).pow(2).sum(-1)
        if hard:
            weights = torch.zeros_like(dist).scatter_(
                1, dist.masked_fill(~mask, float("inf")).argmin(1, keepdim=True), 1.0
            )
        else:
            logits = (-dist / self.sigma).masked_fill(~mask, float("-inf"))
            weights = torch.softmax(logits, dim=1)
        out = (weights.unsqueeze(-1) * grouped).sum(1)
        return SoftProjectionOutput(out, weights, neighbors)

    def __repr__(self) -> str:
        learned = isinstance(self.temperature, Parameter)
        return (
            f"{self.__class__.__name__}(k={self.k}, "
            f"temperature={self.temperature.item():.4g}, learned={learned})"
        )
