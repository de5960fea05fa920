r"""Farthest point sampling that can continue from an already chosen set, batched over clouds
of any sizes, and the per-cloud sample counts shared by every sampler."""

from __future__ import annotations

from typing import Optional

import torch
from torch import Tensor

from tg_samplenet.backend import cloud_ptr, nearest

__all__ = ["sample_counts", "farthest_point_sampling", "rank_in_cloud"]


def sample_counts(
    sizes: Tensor,
    num_samples: Optional[int] = None,
    ratio: Optional[float] = None,
) -> Tensor:
    r"""Number of points to sample from each cloud.

    With :obj:`ratio`, this is :math:`\lceil n_i \cdot r \rceil` computed in float32, exactly
    as :func:`torch_geometric.nn.fps` (and :obj:`torch_cluster`) compute it: for example
    :math:`n = 25, r = 0.6` gives 16, not 15. Otherwise it is :math:`\min(m, n_i)`.

    Args:
        sizes (torch.LongTensor): Points per cloud :obj:`[B]`.
        num_samples (int, optional): The requested count :math:`m`. (default: :obj:`None`)
        ratio (float, optional): The sampling ratio, which wins over :obj:`num_samples`.
            (default: :obj:`None`)

    :rtype: :class:`torch.LongTensor` of shape :obj:`[B]`
    """
    if ratio is not None:
        return torch.ceil(sizes.to(torch.float32) * ratio).long().clamp(max=sizes)
    if num_samples is None:
        raise ValueError("sample_counts needs num_samples or ratio")
    return sizes.clamp(max=num_samples)


def rank_in_cloud(batch: Tensor, num_clouds: int) -> Tensor:
    r"""Position of each element within its cloud (0 for the first), for a sorted batch
    vector.

    :rtype: :class:`torch.LongTensor` of shape :obj:`[N]`
    """
    ptr = cloud_ptr(batch, num_clouds)
    return torch.arange(batch.numel(), device=batch.device) - ptr[batch]


def farthest_point_sampling(
    pos: Tensor,
    batch: Tensor,
    counts: Tensor,
    selected: Optional[Tensor] = None,
    random_start: bool = False,
    generator: Optional[torch.Generator] = None,
) -> Tensor:
    r"""Farthest point sampling (`"PointNet++" <https://arxiv.org/abs/1706.02413>`_) that
    *continues* from an already selected set, as SampleNet's inference completes its matched
    points:

    .. math::
        p_{\text{next}} = \operatorname*{arg\,max}_{p \in P_i \setminus S_i}
        \min_{s \in S_i} \| p - s \|^2

    All clouds advance together, one step per new point, on a dense :obj:`[B, N_max]`
    distance table: the Python loop runs over steps, never over clouds. A cloud with an
    empty :math:`S_i` starts from its first point (or a random one).

    Args:
        pos (torch.Tensor): Points :obj:`[N, 3]`.
        batch (torch.LongTensor): Sorted batch vector :obj:`[N]`.
        counts (torch.LongTensor): How many *new* points to pick per cloud, :obj:`[B]`; at
            most the number of unselected points of that cloud.
        selected (torch.LongTensor, optional): Indices into :obj:`pos` already chosen,
            :math:`S`. They are never picked again. (default: :obj:`None`)
        random_start (bool, optional): Start clouds with an empty :math:`S_i` at a random
            point. (default: :obj:`False`)
        generator (torch.Generator, optional): Random source for :obj:`random_start`.
            (default: :obj:`None`)

    :rtype: :class:`torch.LongTensor` with :obj:`counts.sum()` new indices into :obj:`pos`,
        grouped by cloud in batch order, in the order they were picked.
    """
    from torch_geometric.utils import to_dense_batch

    B = counts.numel()
    steps = int(counts.max()) if B > 0 else 0
    if steps == 0:
        return torch.empty(0, dtype=torch.long, device=pos.device)

    ptr = cloud_ptr(batch, B)
    dense, valid = to_dense_batch(pos.detach(), batch, batch_size=B)  # [B, Nmax, 3]
    rank = torch.arange(batch.numel(), device=pos.device) - ptr[batch]

    # Distance of every point to the selected set: +inf where a cloud has none yet, so the
    # first argmax picks the cloud's first point; -inf marks padding, -1 chosen points.
    dist = torch.full(valid.shape, float("inf"), dtype=dense.dtype, device=pos.device)
    seeded = torch.zeros(B, dtype=torch.bool, device=pos.device)
    if selected is not None and selected.numel() > 0:
        seeded[batch[selected]] = True
        query = seeded[batch].nonzero().view(-1)
        near = nearest(pos[selected], pos[query], batch[selected], batch[query])
        d = (pos[query].detach() - pos[selected][near].detach()).pow(2).sum(-1)
        dist[batch[query], rank[query]] = d
        dist[batch[selected], rank[selected]] = -1.0
    dist = dist.masked_fill(~valid, float("-inf"))

    arange = torch.arange(B, device=pos.device)
    first = dist.argmax(dim=1)
    if random_start:
        sizes = ptr[1:] - ptr[:-1]
        rnd = torch.rand(B, generator=generator).to(pos.device)
        start = (rnd * sizes).long().clamp(max=(sizes - 1).clamp(min=0))
        first = torch.where(seeded, first, start)

    picked = torch.empty((B, steps), dtype=torch.long, device=pos.device)
    for step in range(steps):
        far = first if step == 0 else dist.argmax(dim=1)
        picked[:, step] = far
        d = (dense - dense[arange, far].unsqueeze(1)).pow(2).sum(-1)
        dist = torch.minimum(dist, d)
        dist[arange, far] = -1.0

    keep = torch.arange(steps, device=pos.device).unsqueeze(0) < counts.unsqueeze(1)
    return (picked + ptr[:-1].unsqueeze(1))[keep]
