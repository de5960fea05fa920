r"""SampleNet's losses on PyG batches: Chamfer terms with batch vectors, the simplification
loss, and the full and progressive objectives (paper §3, Eqs. 1-11)."""

from __future__ import annotations

from typing import Callable, Optional, Sequence

import torch
from torch import Tensor
from torch_geometric.utils import scatter

from tg_samplenet.nn.output import SampleNetOutput
from tg_samplenet.ops.batch import rank_in_cloud
from tg_samplenet.ops.neighbors import nearest_index

__all__ = [
    "nn_squared_distance",
    "average_nn_distance",
    "max_nn_distance",
    "chamfer_distance",
    "simplification_loss",
    "samplenet_loss",
    "progressive_loss",
]


def _batch(x: Tensor, batch: Optional[Tensor]) -> Tensor:
    return x.new_zeros(x.size(0), dtype=torch.long) if batch is None else batch


def _num_clouds(*batches: Tensor) -> int:
    return max((int(b.max()) + 1 if b.numel() else 0) for b in batches)


def nn_squared_distance(
    src: Tensor,
    dst: Tensor,
    batch_src: Optional[Tensor] = None,
    batch_dst: Optional[Tensor] = None,
) -> Tensor:
    r"""Squared distance from each point of :obj:`src` to its nearest point of :obj:`dst` in
    the same cloud, :math:`\min_{\mathbf{y} \in Y_i} \|\mathbf{x} - \mathbf{y}\|^2`. The
    search carries no gradient; the distance is recomputed so that both inputs get one.

    :rtype: :class:`torch.Tensor` of shape :obj:`[N_src]`
    """
    batch_src, batch_dst = _batch(src, batch_src), _batch(dst, batch_dst)
    index = nearest_index(dst, src, batch_dst, batch_src)
    return (src - dst[index]).pow(2).sum(-1)


def average_nn_distance(
    src: Tensor,
    dst: Tensor,
    batch_src: Optional[Tensor] = None,
    batch_dst: Optional[Tensor] = None,
    num_clouds: Optional[int] = None,
) -> Tensor:
    r"""The average nearest-neighbour loss of Eq. (2), per cloud:
    :math:`L_a(X, Y) = \frac{1}{|X|} \sum_{\mathbf{x} \in X} \min_{\mathbf{y} \in Y}
    \|\mathbf{x} - \mathbf{y}\|_2^2`.

    :rtype: :class:`torch.Tensor` of shape :obj:`[B]`
    """
    batch_src, batch_dst = _batch(src, batch_src), _batch(dst, batch_dst)
    B = num_clouds or _num_clouds(batch_src, batch_dst)
    return scatter(nn_squared_distance(src, dst, batch_src, batch_dst), batch_src, 0, B, "mean")


def max_nn_distance(
    src: Tensor,
    dst: Tensor,
    batch_src: Optional[Tensor] = None,
    batch_dst: Optional[Tensor] = None,
    num_clouds: Optional[int] = None,
) -> Tensor:
    r"""The maximal nearest-neighbour loss of Eq. (3), per cloud:
    :math:`L_m(X, Y) = \max_{\mathbf{x} \in X} \min_{\mathbf{y} \in Y}
    \|\mathbf{x} - \mathbf{y}\|_2^2`.

    :rtype: :class:`torch.Tensor` of shape :obj:`[B]`
    """
    batch_src, batch_dst = _batch(src, batch_src), _batch(dst, batch_dst)
    B = num_clouds or _num_clouds(batch_src, batch_dst)
    return scatter(nn_squared_distance(src, dst, batch_src, batch_dst), batch_src, 0, B, "max")


def _reduce(value: Tensor, reduction: str) -> Tensor:
    if reduction == "mean":
        return value.mean()
    if reduction == "sum":
        return value.sum()
    if reduction == "none":
        return value
    raise ValueError(f"reduction must be 'mean', 'sum' or 'none' (got {reduction!r})")


def chamfer_distance(
    x: Tensor,
    y: Tensor,
    batch_x: Optional[Tensor] = None,
    batch_y: Optional[Tensor] = None,
    reduction: str = "mean",
) -> Tensor:
    r"""The symmetric Chamfer distance with squared distances,
    :math:`L_a(X, Y) + L_a(Y, X)`, per cloud, then reduced over clouds.

    Args:
        x (torch.Tensor): Points :obj:`[N, D]`.
        y (torch.Tensor): Points :obj:`[M, D]`.
        batch_x (torch.Tensor, optional): Sorted batch vector of :obj:`x`.
            (default: :obj:`None`)
        batch_y (torch.Tensor, optional): Sorted batch vector of :obj:`y`.
            (default: :obj:`None`)
        reduction (str, optional): :obj:`"mean"`, :obj:`"sum"` or :obj:`"none"` (per cloud,
            :obj:`[B]`). (default: :obj:`"mean"`)
    """
    batch_x, batch_y = _batch(x, batch_x), _batch(y, batch_y)
    B = _num_clouds(batch_x, batch_y)
    value = average_nn_distance(x, y, batch_x, batch_y, B) + average_nn_distance(
        y, x, batch_y, batch_x, B
    )
    return _reduce(value, reduction)


def simplification_loss(
    simplified: Tensor,
    pos: Tensor,
    simplified_batch: Optional[Tensor] = None,
    batch: Optional[Tensor] = None,
    beta: float = 1.0,
    gamma: float = 1.0,
    delta: float = 0.0,
    reduction: str = "mean",
) -> Tensor:
    r"""The simplification loss of Eq. (4), per cloud, then reduced over clouds:

    .. math::
        L_s(Q, P) = L_a(Q, P) + \beta L_m(Q, P) + (\gamma + \delta |Q|) L_a(P, Q)

    Args:
        simplified (torch.Tensor): Simplified points :math:`Q`, :obj:`[M, 3]`.
        pos (torch.Tensor): Input points :math:`P`, :obj:`[N, 3]`.
        simplified_batch (torch.Tensor, optional): Sorted batch vector of :math:`Q`.
            (default: :obj:`None`)
        batch (torch.Tensor, optional): Sorted batch vector of :math:`P`.
            (default: :obj:`None`)
        beta (float, optional): :math:`\beta`. (default: :obj:`1.0`)
        gamma (float, optional): :math:`\gamma`. (default: :obj:`1.0`)
        delta (float, optional): :math:`\delta`. (default: :obj:`0.0`)
        reduction (str, optional): :obj:`"mean"`, :obj:`"sum"` or :obj:`"none"`.
            (default: :obj:`"mean"`)
    """
    simplified_batch, batch = _batch(simplified, simplified_batch), _batch(pos, batch)
    to_input = nn_squared_distance(simplified, pos, simplified_batch, batch)
    return _reduce(
        _simplification(to_input, simplified, pos, simplified_batch, batch, beta, gamma, delta),
        reduction,
    )


def _simplification(
    to_input: Tensor,
    simplified: Tensor,
    pos: Tensor,
    simplified_batch: Tensor,
    batch: Tensor,
    beta: float,
    gamma: float,
    delta: float,
) -> Tensor:
    # Per-cloud L_s given each q's squared distance to P, which La(Q, P) and Lm(Q, P) share
    # and which a progressive loss computes once for all prefixes of Q.
    B = _num_clouds(simplified_batch, batch)
    size = torch.bincount(simplified_batch, minlength=B).to(pos.dtype)
    return (
        scatter(to_input, simplified_batch, 0, B, "mean")
        + beta * scatter(to_input, simplified_batch, 0, B, "max")
        + (gamma + delta * size) * average_nn_distance(pos, simplified, batch, simplified_batch, B)
    )


def samplenet_loss(
    task_loss: Tensor,
    out: SampleNetOutput,
    pos: Tensor,
    batch: Optional[Tensor] = None,
    alpha: float = 30.0,
    lmbda: float = 1.0,
    beta: float = 1.0,
    gamma: float = 1.0,
    delta: float = 0.0,
) -> Tensor:
    r"""SampleNet's objective, Eq. (10):
    :math:`L = L_{task}(R) + \alpha L_s(Q, P) + \lambda \sigma`.

    The :math:`\sigma` term is dropped when :obj:`out` carries none (S-NET mode). The
    defaults are the authors' classification settings; see
    :obj:`tg_samplenet.PAPER_SETTINGS` for the other tasks.

    Args:
        task_loss (torch.Tensor): :math:`L_{task}` computed on :obj:`out.pos`.
        out (SampleNetOutput): The sampler's training output.
        pos (torch.Tensor): Input points :obj:`[N, 3]`.
        batch (torch.Tensor, optional): Their batch vector. (default: :obj:`None`)
        alpha (float, optional): :math:`\alpha`. (default: :obj:`30.0`)
        lmbda (float, optional): :math:`\lambda`. (default: :obj:`1.0`)
        beta (float, optional): :math:`\beta`. (default: :obj:`1.0`)
        gamma (float, optional): :math:`\gamma`. (default: :obj:`1.0`)
        delta (float, optional): :math:`\delta`. (default: :obj:`0.0`)
    """
    loss = task_loss + alpha * simplification_loss(
        out.simplified, pos, out.simplified_batch, batch, beta, gamma, delta
    )
    if out.sigma is not None and lmbda != 0:
        loss = loss + lmbda * out.sigma
    return loss


def progressive_loss(
    task_loss_fn: Callable[[SampleNetOutput], Tensor],
    out: SampleNetOutput,
    pos: Tensor,
    batch: Optional[Tensor] = None,
    control_sizes: Optional[Sequence[int]] = None,
    alpha: float = 30.0,
    lmbda: float = 1.0,
    beta: float = 1.0,
    gamma: float = 0.5,
    delta: float = 1.0 / 30.0,
    reduction: str = "sum",
) -> Tensor:
    r"""SampleNet-Progressive's objective, Eq. (11): for each control size :math:`c`, the
    task and simplification losses of the first :math:`c` points of every cloud, combined
    over sizes, plus one :math:`\lambda \sigma` term:

    .. math::
        L = \sum_{c \in C_s} \left( L_{task}(R_{1:c}) + \alpha L_s(Q_{1:c}, P) \right)
        + \lambda \sigma

    Args:
        task_loss_fn (callable): Maps a :class:`SampleNetOutput` (one prefix, see
            :meth:`SampleNetOutput.prefix`) to its task loss.
        out (SampleNetOutput): The sampler's training output with :math:`m = n` points.
        pos (torch.Tensor): Input points :obj:`[N, 3]`.
        batch (torch.Tensor, optional): Their batch vector. (default: :obj:`None`)
        control_sizes (list of int, optional): :math:`C_s`. (default: :obj:`None`, which
            means the powers of two up to :obj:`m`)
        alpha (float, optional): :math:`\alpha`. (default: :obj:`30.0`)
        lmbda (float, optional): :math:`\lambda`. (default: :obj:`1.0`)
        beta (float, optional): :math:`\beta`. (default: :obj:`1.0`)
        gamma (float, optional): :math:`\gamma`. (default: :obj:`0.5`)
        delta (float, optional): :math:`\delta`. (default: :obj:`1/30`)
        reduction (str, optional): :obj:`"sum"` over sizes as in the paper and the authors'
            classification code, or :obj:`"mean"` as their reconstruction code.
            (default: :obj:`"sum"`)
    """
    if reduction not in ("sum", "mean"):
        raise ValueError(f"reduction must be 'sum' or 'mean' (got {reduction!r})")
    m = int(out.counts.max()) if out.counts.numel() else 0
    if control_sizes is None:
        control_sizes = [2**i for i in range(1, m.bit_length()) if 2**i <= m]
    if len(control_sizes) == 0:
        raise ValueError("progressive_loss needs at least one control size")
    batch = _batch(pos, batch)
    # A simplified point's nearest input point does not depend on the prefix it is in.
    to_input = nn_squared_distance(out.simplified, pos, out.simplified_batch, batch)
    rank = rank_in_cloud(out.simplified_batch, out.counts.numel())
    total = pos.new_zeros(())
    for size in control_sizes:
        part = out.prefix(size)
        simplification = _simplification(
            to_input[rank < size],
            part.simplified,
            pos,
            part.simplified_batch,
            batch,
            beta,
            gamma,
            delta,
        )
        total = total + task_loss_fn(part) + alpha * simplification.mean()
    if reduction == "mean":
        total = total / len(control_sizes)
    if out.sigma is not None and lmbda != 0:
        total = total + lmbda * out.sigma
    return total
