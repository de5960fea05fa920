r"""The steps of farthest point sampling continued from a large selected set, run on the few
points that can be picked instead of on all of them: SampleNet's completion of its matched
points at large :math:`N`.

When few points are added to a large selected set :math:`S` (SampleNet completes the few
repeats among thousands of matches), only points far from :math:`S` can be picked. Given
every point's distance :math:`d_p` to :math:`S`:

1. FPS runs on the candidates alone: the points of each cloud with the
   :obj:`CANDIDATES_PER_PICK` :math:`\times` (new points) largest distances.
2. Distances only shrink as points are added, so a point left out never exceeds its
   :math:`d_p`. If every :math:`d_p` left out is below the value of the last pick, no step
   could have picked it: the picks are those of FPS over all points. Otherwise the points
   whose distance reaches that value join the candidates and FPS reruns (rare).

Each step then costs a pass over the candidates, not over the :math:`N` points. The
candidates keep their index order and the arithmetic is that of
:func:`~tg_samplenet.ops.farthest_point.farthest_point_sampling`'s dense steps, so the picks
are that function's, ties to the lowest index included.
"""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["pruned_fps_steps"]

# Candidates of the first round per cloud: CANDIDATES_PER_PICK per new point, at least
# MIN_CANDIDATES.
CANDIDATES_PER_PICK = 16
MIN_CANDIDATES = 256


def lower_distances(
    planes: Tensor, dist: Tensor, far: Tensor, arange: Tensor, d: Tensor, diff: Tensor
):
    r"""One farthest-point step on :obj:`[B, L]` tables, in place: :obj:`dist` becomes its
    minimum with the squared distances to the points :obj:`far` (:obj:`[B]`) of the
    coordinate planes :obj:`planes` (:obj:`[D, B, L]`), and the picked points get
    :obj:`-1`. :obj:`arange` is :obj:`torch.arange(B)`; :obj:`d` and :obj:`diff` are
    scratch tables shaped like :obj:`dist` (made once per sampling, not per step)."""
    new = planes[:, arange, far].unsqueeze(-1)  # [D, B, 1]
    torch.sub(planes[0], new[0], out=d).square_()
    for axis in range(1, planes.size(0)):
        torch.sub(planes[axis], new[axis], out=diff)
        d.addcmul_(diff, diff)
    torch.minimum(dist, d, out=dist)
    dist[arange, far] = -1.0


def _dense_steps(planes: Tensor, dist: Tensor, steps: int) -> tuple[Tensor, Tensor]:
    # FPS on [B, L] tables (-inf padding, -1 chosen): the picks [B, steps] and the value of
    # each pick [B, steps].
    B = dist.size(0)
    arange = torch.arange(B, device=dist.device)
    d, diff = torch.empty_like(dist), torch.empty_like(dist)
    picked = torch.empty((B, steps), dtype=torch.long, device=dist.device)
    value = torch.empty((B, steps), dtype=dist.dtype, device=dist.device)
    for step in range(steps):
        best, far = dist.max(dim=1)
        picked[:, step], value[:, step] = far, best
        lower_distances(planes, dist, far, arange, d, diff)
    return picked, value


def pruned_fps_steps(
    pos: Tensor, batch: Tensor, dist: Tensor, counts: Tensor, num_clouds: int
) -> Tensor:
    r"""Farthest point sampling steps from the distances :obj:`dist` of all points to the
    selected set, examining only the points that can be picked.

    Args:
        pos (torch.Tensor): Points :obj:`[N, D]`.
        batch (torch.LongTensor): Sorted batch vector :obj:`[N]`.
        dist (torch.Tensor): Squared distance of every point to the selected points of its
            cloud :obj:`[N]`, :obj:`-1` for the selected points themselves. Every cloud with
            new points has selected points (finite distances).
        counts (torch.LongTensor): New points per cloud :obj:`[B]`, at most the unselected
            points of each cloud.
        num_clouds (int): The number of clouds :math:`B`.

    :rtype: :class:`torch.LongTensor` with :obj:`counts.sum()` new indices into :obj:`pos`,
        grouped by cloud in batch order, in the order they were picked.
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
        picked, value = _dense_steps(coords.permute(2, 0, 1).contiguous(), table, steps)
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
