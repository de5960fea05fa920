r"""PointNet++ (`"PointNet++: Deep Hierarchical Feature Learning on Point Sets in a Metric
Space" <https://arxiv.org/abs/1706.02413>`_) built as PyG's
``examples/pointnet2_classification.py`` builds it (set abstraction with
:class:`~torch_geometric.nn.PointNetConv`, a radius ball, :func:`global_max_pool`), with a
swappable :obj:`fps` per set-abstraction layer or a SampleNet trained jointly in its place.

Radius and fps come from this library's back-end, so the model runs on PyG 2.8 without pyg-lib,
where :func:`torch_geometric.nn.fps` and :func:`~torch_geometric.nn.radius` raise
:class:`ImportError`.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any, Optional

import torch
import torch.nn.functional as F
from torch import Tensor
from torch_geometric.nn import MLP, PointNetConv, global_max_pool

from tg_samplenet import SampleNet, SampleNetFPS, samplenet_loss
from tg_samplenet.ops import fps, hard_sample, padded_knn

__all__ = [
    "radius",
    "SAModule",
    "LearnedSAModule",
    "PointNet2",
    "joint_loss",
    "swap_fps",
    "evaluate_pointnet2",
]


def radius(
    x: Tensor, y: Tensor, r: float, batch_x: Tensor, batch_y: Tensor, max_neighbors: int = 64
) -> Tensor:
    r""":func:`torch_geometric.nn.radius` on this library's back-end: for each point of
    :obj:`y`, its :obj:`max_neighbors` nearest points of :obj:`x` (same cloud) within
    distance :obj:`r` (PyG returns *any* :obj:`max_neighbors` of them).

    :rtype: :class:`torch.LongTensor` :obj:`[2, E]`, row 0 indexing :obj:`y`, row 1 :obj:`x`
    """
    index, mask = padded_knn(x, y, max_neighbors, batch_x, batch_y)
    with torch.no_grad():
        mask = mask & ((x[index] - y.unsqueeze(1)).pow(2).sum(-1) <= r * r)
    row = torch.arange(y.size(0), device=y.device).unsqueeze(1).expand_as(index)
    return torch.stack([row[mask], index[mask]])


class SAModule(torch.nn.Module):
    r"""PyG's set abstraction: :obj:`self.fps` picks the centres (a plain function, or a
    :class:`~tg_samplenet.SampleNetFPS` swapped in), a radius ball around each, a
    :class:`~torch_geometric.nn.PointNetConv`.

    Args:
        ratio (float): The share of points kept as centres.
        r (float): The radius of the ball.
        nn (torch_geometric.nn.MLP): The local network of the convolution.
    """

    def __init__(self, ratio: float, r: float, nn: MLP):
        super().__init__()
        self.ratio, self.r, self.fps = ratio, r, fps
        self.conv = PointNetConv(nn, add_self_loops=False)

    def centres(self, x: Optional[Tensor], pos: Tensor, batch: Tensor):
        idx = self.fps(pos, batch, ratio=self.ratio)
        return pos[idx], batch[idx], None if x is None else x[idx], None

    def forward(self, x: Optional[Tensor], pos: Tensor, batch: Tensor):
        pos_dst, batch_dst, x_dst, sample = self.centres(x, pos, batch)
        row, col = radius(pos, pos_dst, self.r, batch, batch_dst)
        x = self.conv((x, x_dst), (pos, pos_dst), torch.stack([col, row], dim=0))
        return x, pos_dst, batch_dst, sample

    def __repr__(self) -> str:
        return f"{self.__class__.__name__}(ratio={self.ratio}, r={self.r})"


class LearnedSAModule(SAModule):
    r"""The set abstraction with a SampleNet in place of fps.

    In eval mode the centres are the sampler's hard samples (input points, their features
    gathered). In training, with :obj:`straight_through=True` (the default), the forward pass
    takes the very centres that eval mode would take from the same simplified points
    (:func:`~tg_samplenet.ops.hard_sample`: nearest input points, repeats dropped, farthest
    point completion), and the backward pass takes the gradient of their soft projections
    :math:`\mathbf{r}` (a straight-through estimator,
    `Bengio et al. (2013) <https://arxiv.org/abs/1308.3432>`_):

    .. math::
        \mathbf{c} = \mathbf{p}_{\mathrm{nn}(\mathbf{q})} + \mathbf{r} -
        \operatorname{sg}(\mathbf{r}), \qquad
        \mathbf{x}_{\mathbf{c}} = \mathbf{x}_{\mathrm{nn}(\mathbf{q})} +
        \textstyle\sum_i w_i \mathbf{x}_i - \operatorname{sg}(\sum_i w_i \mathbf{x}_i)

    (centres completed by farthest point sampling carry no gradient). With
    :obj:`straight_through=False` the centres are the soft-projected points and their
    features the weighted mix, as in the paper's frozen-task training; trained jointly, the
    network then reads the soft centres' off-surface positions and fails on hard ones
    (measured on the built-in data: 0.76 test accuracy with soft centres, 0.41 with the hard
    ones it gets at inference).

    Args:
        ratio (float): The share of points kept as centres.
        r (float): The radius of the ball.
        nn (torch_geometric.nn.MLP): The local network of the convolution.
        sampler (SampleNet): The layer's sampler, of :math:`\lceil n \cdot r \rceil` outputs for
            the clouds of :math:`n` points it sees.
        straight_through (bool, optional): Train on the hard centres with the soft
            projection's gradient. (default: :obj:`True`)
    """

    def __init__(
        self, ratio: float, r: float, nn: MLP, sampler: SampleNet, straight_through: bool = True
    ):
        super().__init__(ratio, r, nn)
        self.sampler = sampler
        self.straight_through = straight_through

    def centres(self, x: Optional[Tensor], pos: Tensor, batch: Tensor):
        out = self.sampler(pos, batch, ratio=self.ratio)
        x_dst = None if x is None else out.carry(x)
        if not self.training or not self.straight_through or out.weights is None:
            return out.pos, out.batch, x_dst, (out, pos, batch)
        with torch.no_grad():
            index = hard_sample(pos, batch, out.simplified, out.simplified_batch, out.counts)
            # The projected point whose nearest input point each centre is (first one).
            owner = torch.full_like(batch, out.index.numel())
            rows = torch.arange(out.index.numel(), device=pos.device)
            owner = owner.scatter_reduce(0, out.index, rows, "amin")[index]
            found = (owner < out.index.numel()).unsqueeze(1)
            owner = owner.clamp(max=max(out.index.numel() - 1, 0))
        pos_dst = _straight_through(pos[index], out.pos, owner, found)
        if x is not None:
            x_dst = _straight_through(x[index], x_dst, owner, found)
        return pos_dst, batch[index], x_dst, (out, pos, batch)

    def __repr__(self) -> str:
        extra = "" if self.straight_through else ", straight_through=False"
        return f"{self.__class__.__name__}(ratio={self.ratio}, r={self.r}{extra})"


def _straight_through(hard: Tensor, soft: Tensor, owner: Tensor, found: Tensor) -> Tensor:
    # The value of hard; the gradient of soft[owner] where a projected point owns the centre
    # (of hard itself where none does: farthest point completion).
    if soft.size(0) == 0:
        return hard
    part = soft[owner]
    return torch.where(found, hard.detach() + (part - part.detach()), hard)


class PointNet2(torch.nn.Module):
    r"""PyG's PointNet++ classifier (two set abstractions, a global one, an MLP head), its
    widths scaled by :obj:`width / 1024`; :obj:`forward` returns log-probabilities and the
    learned layers' samples (what :func:`joint_loss` needs).

    Args:
        num_classes (int): The number of classes.
        num_points (int): Points per input cloud (sizes the learned layers' samplers).
        width (int, optional): The global feature width; PyG's model has 1024.
            (default: :obj:`1024`)
        ratios (tuple of float, optional): The set abstractions' ratios. (default: :obj:`(0.5,
            0.25)`)
        radii (tuple of float, optional): Their radii. (default: :obj:`(0.2, 0.4)`)
        make_sampler (Callable, optional): :obj:`make_sampler(m) -> SampleNet`: with it every
            set abstraction samples with its own SampleNet of :obj:`m` outputs. (default:
            :obj:`None`, fps)
        straight_through (bool, optional): How the learned layers train
            (:class:`LearnedSAModule`). (default: :obj:`True`)

    Shapes:
        - **input:** points :math:`(N, 3)`, batch vector :math:`(N)`
        - **output:** log-probabilities :math:`(B, C)` and a list of
          :obj:`(SampleNetOutput, pos, batch)` per learned layer
    """

    def __init__(
        self,
        num_classes: int,
        num_points: int,
        width: int = 1024,
        ratios: Sequence[float] = (0.5, 0.25),
        radii: Sequence[float] = (0.2, 0.4),
        make_sampler: Optional[Callable[[int], SampleNet]] = None,
        straight_through: bool = True,
    ):
        super().__init__()
        w, (r1, r2), (d1, d2) = width // 16, ratios, radii
        nn1, nn2 = MLP([3, w, w, 2 * w]), MLP([2 * w + 3, 2 * w, 2 * w, 4 * w])
        if make_sampler is None:
            self.sa1_module, self.sa2_module = SAModule(r1, d1, nn1), SAModule(r2, d2, nn2)
        else:
            n1 = math.ceil(num_points * r1)
            s1, s2 = make_sampler(n1), make_sampler(math.ceil(n1 * r2))
            self.sa1_module = LearnedSAModule(r1, d1, nn1, s1, straight_through)
            self.sa2_module = LearnedSAModule(r2, d2, nn2, s2, straight_through)
        self.sa3_nn = MLP([4 * w + 3, 4 * w, 8 * w, 16 * w])
        self.mlp = MLP([16 * w, 8 * w, 4 * w, num_classes], dropout=0.5, norm=None)

    def forward(self, pos: Tensor, batch: Tensor):
        x, pos1, batch1, sample1 = self.sa1_module(None, pos, batch)
        x, pos2, batch2, sample2 = self.sa2_module(x, pos1, batch1)
        x = global_max_pool(self.sa3_nn(torch.cat([x, pos2], dim=1)), batch2)
        samples = [s for s in (sample1, sample2) if s is not None]
        return self.mlp(x).log_softmax(dim=-1), samples


def joint_loss(model: PointNet2, data: Any, **loss_weights: float) -> Tensor:
    r"""The joint objective: the NLL of :obj:`data.y`, plus
    :math:`\alpha L_s + \lambda \sigma` of each learned layer's sampler
    (:func:`~tg_samplenet.samplenet_loss` with :obj:`loss_weights`)."""
    log_probs, samples = model(data.pos, data.batch)
    loss = F.nll_loss(log_probs, data.y)
    for out, pos, batch in samples:
        loss = samplenet_loss(loss, out, pos, batch, **loss_weights)
    return loss


def swap_fps(model: PointNet2, sampler: Optional[SampleNet]):
    r"""Sets the fps of both set abstractions to :obj:`SampleNetFPS(sampler)`, or back to
    fps for :obj:`None`, with no change to the model's code."""
    for layer in (model.sa1_module, model.sa2_module):
        if isinstance(layer.fps, SampleNetFPS):
            del layer.fps  # a submodule: a plain function cannot overwrite it
        layer.fps = fps if sampler is None else SampleNetFPS(sampler)


@torch.no_grad()
def evaluate_pointnet2(model: PointNet2, loader, device: Any, sample=None) -> float:
    r"""Accuracy over :obj:`loader`, on the points :obj:`sample(pos, batch) -> (pos, batch)`
    keeps (all by default)."""
    model.eval()
    correct = 0
    for data in loader:
        data = data.to(device)
        pos, batch = (data.pos, data.batch) if sample is None else sample(data.pos, data.batch)
        correct += int((model(pos, batch)[0].argmax(-1) == data.y).sum())
    return correct / len(loader.dataset)
