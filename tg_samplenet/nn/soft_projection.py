r"""SampleNet's soft projection: a differentiable relaxation of nearest-neighbour selection."""

from __future__ import annotations

import math
from typing import NamedTuple, Optional

import torch
from torch import Tensor
from torch.nn import Parameter

from tg_samplenet.nn.weighted_gather import gather_rows, weighted_gather
from tg_samplenet.ops.checks import (
    InputError,
    check_bool,
    check_cloud_batch,
    check_like,
    check_number,
    check_points,
    check_positive_int,
    check_references,
    readable,
)
from tg_samplenet.ops.scaling import cloud_exponents, power_of_two

__all__ = ["SoftProjection", "SoftProjectionOutput"]


class SoftProjectionOutput(NamedTuple):
    r"""What :class:`SoftProjection` returns for :math:`M` query points.

    Attributes:
        pos (torch.Tensor): Projected points :math:`\mathbf{r}`, :obj:`[M, D]`.
        weights (torch.Tensor): Softmax weights over the neighbours, :obj:`[M, k]`; 0 on
            padding slots (clouds with fewer than :obj:`k` points).
        neighbors (torch.LongTensor): Indices of the :obj:`k` nearest input points,
            :obj:`[M, k]`, nearest first.
    """

    pos: Tensor
    weights: Tensor
    neighbors: Tensor

    def carry(self, src: Tensor) -> Tensor:
        r"""Projects a per-point tensor :obj:`src` :obj:`[N, *]` with the same weights
        (:func:`~tg_samplenet.nn.weighted_gather`)."""
        return weighted_gather(src, self.neighbors, self.weights)


class SoftProjection(torch.nn.Module):
    r"""The soft projection from the `"SampleNet: Differentiable Point Cloud Sampling"
    <https://arxiv.org/abs/1912.03663>`_ paper. Each query point :math:`\mathbf{q}` (a
    simplified point) is replaced by a weighted average of its :math:`k` nearest neighbours
    :math:`\mathcal{N}(\mathbf{q})` in the input cloud:

    .. math::
        \mathbf{r} = \sum_{i \in \mathcal{N}(\mathbf{q})} w_i \mathbf{p}_i, \qquad
        w_i = \frac{\exp(-\|\mathbf{q} - \mathbf{p}_i\|^2 / \sigma)}
        {\sum_{j \in \mathcal{N}(\mathbf{q})} \exp(-\|\mathbf{q} - \mathbf{p}_j\|^2 / \sigma)}

    with :math:`\sigma = t^2 + \sigma_{\min}` for a learned temperature :math:`t` (additive,
    unlike the authors' :obj:`max(t^2, min_sigma)`, so that :math:`t` keeps a gradient).
    Gradients reach :math:`\mathbf{q}`, :math:`\mathbf{p}` and :math:`t`.

    Args:
        k (int, optional): Number of neighbours :math:`k`. (default: :obj:`7`)
        initial_temperature (float, optional): Initial :math:`t`, finite. (default: :obj:`1.0`)
        min_sigma (float, optional): The lower bound :math:`\sigma_{\min} \geq 0` (positive
            if :math:`t = 0`). (default: :obj:`1e-4`)
        learn_temperature (bool, optional): If :obj:`False`, :math:`t` is a buffer set from
            outside (see :mod:`tg_samplenet.temperature`). (default: :obj:`True`)

    Shapes:
        - **input:** input points :math:`(N, D)`, query points :math:`(M, D)` (any
          :math:`D \geq 1`, usually 3), batch vectors :math:`(N)` and :math:`(M)` (optional)
        - **output:** :class:`SoftProjectionOutput` with :obj:`pos` :math:`(M, D)`,
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
        self.k = check_positive_int(k, "k")
        self.initial_temperature = check_number(initial_temperature, "initial_temperature")
        self.min_sigma = check_number(min_sigma, "min_sigma", minimum=0.0)
        check_bool(learn_temperature, "learn_temperature")
        temperature = torch.tensor(self.initial_temperature)
        if not float(temperature.pow(2) + self.min_sigma) > 0:
            raise InputError(
                "initial_temperature",
                f"initial_temperature={self.initial_temperature} with min_sigma="
                f"{self.min_sigma} gives sigma = t^2 + min_sigma = 0, where the softmax is "
                "undefined: give min_sigma > 0 or a non-zero initial_temperature",
            )
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
        r"""Sets :math:`t` so that :math:`\sigma` equals :obj:`sigma` (at least
        :math:`\sigma_{\min}`)."""
        sigma = check_number(sigma, "sigma", positive=True)
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
            pos (torch.Tensor): Input points :math:`\mathbf{P}`, :obj:`[N, D]`, finite.
            query (torch.Tensor): Query (simplified) points :math:`\mathbf{Q}`,
                :obj:`[M, D]`, of the dtype of :obj:`pos`.
            batch (torch.Tensor, optional): Sorted batch vector of :obj:`pos`.
                (default: :obj:`None`)
            query_batch (torch.Tensor, optional): Sorted batch vector of :obj:`query`.
                (default: :obj:`None`)
            hard (bool, optional): Use one-hot weights on the nearest neighbour instead of
                the softmax (no gradient to :math:`t`). (default: :obj:`False`)
        """
        check_points(query, "query", dim=None)
        check_points(pos, "pos", allow_empty=query.size(0) == 0, dim=None)
        check_like(pos, query, "pos", "query")
        batch, clouds = check_cloud_batch(batch, pos, "batch")
        query_batch, query_clouds = check_cloud_batch(
            query_batch, query, "query_batch", pos_name="query"
        )
        num_clouds = max(clouds, query_clouds)
        check_references(batch, query_batch, num_clouds, "pos", "query")
        check_bool(hard, "hard")
        sigma = self.sigma
        check_sigma(sigma)
        return soft_project(pos, query, batch, query_batch, num_clouds, self.k, sigma, hard)

    def __repr__(self) -> str:
        learned = isinstance(self.temperature, Parameter)
        return (
            f"{self.__class__.__name__}(k={self.k}, "
            f"temperature={self.temperature.item():.4g}, learned={learned})"
        )


def check_sigma(sigma: Tensor):
    r"""Checks that :math:`\sigma` is finite and positive. One host sync on CUDA."""
    sigma = sigma.detach()
    if readable(sigma) and not bool(torch.isfinite(sigma) & (sigma > 0)):
        raise InputError(
            "temperature",
            f"temperature gives sigma = {sigma.item()}: the soft projection needs a finite "
            "sigma > 0 (has the learned temperature diverged?)",
        )


def soft_project(
    pos: Tensor,
    query: Tensor,
    batch: Tensor,
    query_batch: Tensor,
    num_clouds: int,
    k: int,
    sigma: Tensor,
    hard: bool = False,
) -> SoftProjectionOutput:
    r"""The soft projection of :class:`SoftProjection` for checked input. Distances are taken
    on clouds scaled by an exact power of two :math:`s`, and the logits

    .. math::
        -\left(\|\mathbf{q} - \mathbf{p}_i\|^2 - \min_j \|\mathbf{q} - \mathbf{p}_j\|^2
        \right) / \sigma

    are shifted so that tied nearest neighbours add exactly zero to :math:`\sigma`'s gradient.
    """
    neighbors, mask = torch.ops.tg_samplenet.knn(pos, query, k, batch, query_batch, num_clouds)
    grouped = gather_rows(pos, neighbors)  # [M, k, D]
    work = torch.promote_types(pos.dtype, torch.float32)
    with torch.no_grad():
        parts = [(pos.detach().to(work), batch), (query.detach().to(work), query_batch)]
        exponent = cloud_exponents(parts, num_clouds)[query_batch]
        scale = power_of_two(-exponent, work).unsqueeze(1)  # [M, 1]
    # Scaled offsets s * (p_i - q): s is an exact power of two; gradients reach p and q.
    offset = grouped.to(work) * scale.unsqueeze(1) - (query.to(work) * scale).unsqueeze(1)
    dist = offset.pow(2).sum(-1)  # [M, k]; padding slots repeat slot 0, so stay finite
    if hard:
        best = dist.masked_fill(~mask, float("inf")).argmin(1, keepdim=True)
        weights = torch.zeros_like(dist).scatter_(1, best, 1.0)
    else:
        with torch.no_grad():
            nearest = dist.masked_fill(~mask, float("inf")).amin(1, keepdim=True)
            unscale = torch.ldexp(torch.ones_like(exponent, dtype=torch.float64), 2 * exponent)
        # 1 / (s^2 sigma) in float64, saturating instead of overflowing.
        beta = (unscale.unsqueeze(1) / sigma.double()).clamp(max=torch.finfo(torch.float64).max)
        logits = (nearest - dist).double() * beta
        weights = torch.softmax(logits.masked_fill(~mask, float("-inf")), dim=1)
    weights = weights.to(pos.dtype)
    out = (weights.unsqueeze(-1) * grouped).sum(1)
    return SoftProjectionOutput(out, weights, neighbors)
