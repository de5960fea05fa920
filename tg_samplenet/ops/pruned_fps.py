r"""Farthest point sampling continued from a large selected set on the few points that can be
picked: FPS runs on the points of each cloud farthest from the set, and reruns with more of them
in the rare case that a point left out could have been picked. The picks, ties included, are
those of FPS over all points."""

from __future__ import annotations

from typing import Optional

import torch
from torch import Tensor

__all__ = ["dense_steps", "pruned_fps_steps"]

# First-round candidates per cloud: CANDIDATES_PER_PICK per new point, at least MIN_CANDIDATES.
CANDIDATES_PER_PICK = 16
MIN_CANDIDATES = 256


def dense_steps(
    planes: Tensor, dist: Tensor, steps: int, first: Optional[Tensor] = None
) -> tuple[Tensor, Tensor]:
    r"""Farthest point sampling in place on the distances :obj:`dist` :obj:`[B, L]`
    (:obj:`-inf` padding, :obj:`-1` chosen) of the points :obj:`planes` :obj:`[D, B, L]`,
    from the points :obj:`first` if given: the picks and their distances (but that of a
    given first pick), both :obj:`[B, steps]`."""
    B = dist.size(0)
    arange = torch.arange(B, device=dist.device)
    d, diff = torch.empty_like(dist), torch.empty_like(dist)
    picked = torch.empty((B, steps), dtype=torch.long, device=dist.device)
    value = torch.empty((B, steps), dtype=dist.dtype, device=dist.device)
    for step in range(steps):
        best, far = dist.max(dim=1)
        if step == 0 and first is not None:
            far = first
        picked[:, step], value[:, step] = far, best
        new = planes[:, arange, far].unsqueeze(-1)  # [D, B, 1]
        torch.sub(planes[0], new[0], out=d).square_()
        for axis in range(1, planes.size(0)):
            torch.sub(planes[axis], new[axis], out=diff)
            d.addcmul_(diff, diff)
        torch.minimum(dist, d, out=dist)
        dist[arange, far] = -1.0
    return picked, value


def pruned_fps_steps(
    pos: Tensor, batch: Tensor, dist: Tensor, counts: Tensor, num_clouds: int
) -> Tensor:
    r"""Farthest point sampling steps of :obj:`counts[i]` new points per cloud from
    :obj:`dist` :obj:`[N]`, each point's squared distance to the selected points of its cloud
    (:obj:`-1` for those; every cloud with new points has some).

    :rtype: :class:`torch.LongTensor` of :obj:`counts.sum()` indices, by cloud, in pick order
    """
    from torch_geometric.utils import to_dense_batch

    B, device = num_clouds, pos.device
    steps = int(counts.max()) if B > 0 else 0
    if steps == 0:
        return torch.empty(0, dtype=torch.long, device=device)
    active = (counts > 0)[batch] & (dist >= 0)
    score = torch.where(active, dist, float("-inf"))

    # The first candidates: the largest distances of each cloud.
    want = (CANDIDATES_PER_PICK * counts).clamp(min=MIN_CANDIDATES)
    table = to_dense_batch(score, batch, float("-inf"), batch_size=B)[0]
    top = table.topk(min(int(want.max()), table.size(1)), dim=1).values
    floor = top.gather(1, (want.clamp(max=top.size(1)) - 1).unsqueeze(1)).view(-1)
    candidate = active & (score >= floor[batch])

    while True:
        index = candidate.nonzero().view(-1)  # in index order: ties go to the lowest
        part, part_batch = dist[index], batch[index]
        table, valid = to_dense_batch(part, part_batch, float("-inf"), batch_size=B)
        coords = to_dense_batch(pos[index], part_batch, 0.0, batch_size=B)[0]
        picked, value = dense_steps(coords.permute(2, 0, 1).contiguous(), table, steps)
        # A point left out could only have been picked if its distance reaches the value
        # of its cloud's last pick.
        last = value.gather(1, (counts - 1).clamp(min=0).unsqueeze(1)).view(-1)
        outside = torch.where(candidate, float("-inf"), score)
        worst = score.new_full((B,), float("-inf")).scatter_reduce(0, batch, outside, "amax")
        redo = (counts > 0) & (worst >= last) & (worst > float("-inf"))
        if not bool(redo.any()):
            break
        candidate = candidate | (active & redo[batch] & (score >= last[batch]))

    size = valid.sum(1)
    keep = torch.arange(steps, device=device).unsqueeze(0) < counts.unsqueeze(1)
    return index[(picked + (size.cumsum(0) - size).unsqueeze(1))[keep]]
