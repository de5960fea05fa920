r"""PointNet++ (`"PointNet++: Deep Hierarchical Feature Learning on Point Sets in a Metric
Space" <https://arxiv.org/abs/1706.02413>`_) as PyG's ``examples/pointnet2_classification.py``
builds it: set abstractions that pick centres with :obj:`self.fps`, gather a radius ball
around each and apply a :class:`~torch_geometric.nn.PointNetConv`, then a global one and an
MLP. :obj:`fps` and :obj:`radius` are this library's (PyG's contracts, no pyg-lib needed); a
learned sampler goes where :obj:`self.fps` is (:func:`~tg_samplenet.training.upgrade_fps`).
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import nullcontext
from typing import Optional

import torch
from torch import Tensor
from torch_geometric.nn import MLP, PointNetConv, global_max_pool
from torch_geometric.nn.aggr import MaxAggregation

from tg_samplenet.ops import fps, radius

__all__ = [
    "MaskedMaxAggregation",
    "SAModule",
    "PointNet2",
    "QuickFPS",
    "set_fps",
    "evaluate_pointnet2",
]


def _mixed_precision(module: torch.nn.Module, device: torch.device):
    # Training only: inference, which the study times, stays in float32.
    dtype = module.training_dtype if module.training else None
    return nullcontext() if dtype is None else torch.autocast(device.type, dtype=dtype)


class MaskedMaxAggregation(MaxAggregation):
    r"""PyG's :class:`~torch_geometric.nn.aggr.MaxAggregation` with a backward that reads
    each edge's gradient through a mask of the winners kept from the forward. Without
    torch-scatter, PyG reduces with :func:`torch.scatter_reduce`, whose backward searches the
    winners again; on real scans that made PointNet++'s training step about 10 % slower on a
    CPU.

    The values are PyG's, and so is the gradient: each output's gradient is shared equally
    among the inputs that tie for its maximum. (Where that maximum is exactly 0,
    :func:`torch.scatter_reduce` also counts the zero it reduced into as a tie and passes
    the inputs less; here they get all of it.)"""

    def forward(self, x, index=None, ptr=None, dim_size=None, dim=-2):
        # Inference needs no mask (PyG's reduction alone), nor do layouts other than edges x C.
        needs_mask = x.requires_grad and torch.is_grad_enabled()
        if not needs_mask or index is None or x.dim() != 2 or dim not in (0, -2):
            return super().forward(x, index, ptr, dim_size, dim)
        return _MaskedMax.apply(x, index, dim_size)


class _MaskedMax(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: Tensor, index: Tensor, dim_size: int) -> Tensor:
        rows = index.view(-1, 1).expand_as(x)
        out = x.new_zeros(dim_size, x.size(1))
        out.scatter_reduce_(0, rows, x, "amax", include_self=False)
        winner = x == out.index_select(0, index)
        # Ties are rare in real-valued features: count the winners of each output only if
        # there are more winners than outputs.
        outputs = int((torch.bincount(index, minlength=dim_size) > 0).sum()) * x.size(1)
        ties = None
        if int(winner.sum()) > outputs:
            ties = x.new_zeros(dim_size, x.size(1)).index_add_(0, index, winner.to(x.dtype))
        ctx.save_for_backward(index, winner, ties)
        return out

    @staticmethod
    def backward(ctx, grad: Tensor):
        index, winner, ties = ctx.saved_tensors
        if ties is not None:
            grad = grad / ties.clamp(min=1)
        return grad.index_select(0, index).mul_(winner), None, None


class SAModule(torch.nn.Module):
    r"""PyG's set abstraction: :obj:`self.fps` keeps :obj:`ratio` of the points as centres,
    a ball of radius :obj:`r` (at most 64 points) around each, a PointNetConv (its max
    aggregation :class:`MaskedMaxAggregation`).

    Args:
        ratio (float): The share of points kept as centres.
        r (float): The radius of the ball.
        nn (torch_geometric.nn.MLP): The local network of the convolution.
        training_dtype (torch.dtype, optional): The dtype the convolution computes in while
            training (autocast); centres and balls are found in float32.
            (default: :obj:`None`, float32)
    """

    def __init__(
        self, ratio: float, r: float, nn: MLP, training_dtype: Optional[torch.dtype] = None
    ):
        super().__init__()
        self.ratio, self.r, self.fps = ratio, r, fps
        self.conv = PointNetConv(nn, add_self_loops=False, aggr=MaskedMaxAggregation())
        self.training_dtype = training_dtype

    def forward(self, x: Optional[Tensor], pos: Tensor, batch: Tensor):
        idx = self.fps(pos, batch, ratio=self.ratio)
        row, col = radius(pos, pos[idx], self.r, batch, batch[idx], max_num_neighbors=64)
        with _mixed_precision(self, pos.device):
            x = self.conv((x, None if x is None else x[idx]), (pos, pos[idx]),
                          torch.stack([col, row]))  # fmt: skip
        return x, pos[idx], batch[idx]

    def __repr__(self) -> str:
        return f"{self.__class__.__name__}(ratio={self.ratio}, r={self.r})"


class PointNet2(torch.nn.Module):
    r"""PyG's PointNet++ classifier, its widths scaled by :obj:`width / 1024`.

    Args:
        num_classes (int): The number of classes.
        width (int, optional): The global feature width (PyG's model: 1024).
            (default: :obj:`1024`)
        ratios (tuple of float, optional): The set abstractions' ratios.
            (default: :obj:`(0.5, 0.25)`)
        radii (tuple of float, optional): Their radii. (default: :obj:`(0.2, 0.4)`)
        training_dtype (torch.dtype, optional): The dtype its MLPs compute in while
            training (autocast, e.g. :obj:`torch.bfloat16`: on a CPU with AVX-512 BF16 a
            training step on real scans takes about 40 % less time); fps, radius and a
            learned sampler stay in float32, and so does inference.
            (default: :obj:`None`, float32)

    Shapes:
        - **input:** points :math:`(N, 3)`, batch vector :math:`(N)`
        - **output:** log-probabilities :math:`(B, C)`
    """

    def __init__(
        self,
        num_classes: int,
        width: int = 1024,
        ratios: Sequence[float] = (0.5, 0.25),
        radii: Sequence[float] = (0.2, 0.4),
        training_dtype: Optional[torch.dtype] = None,
    ):
        super().__init__()
        w, dtype = width // 16, training_dtype
        self.sa1_module = SAModule(ratios[0], radii[0], MLP([3, w, w, 2 * w]), dtype)
        sa2_nn = MLP([2 * w + 3, 2 * w, 2 * w, 4 * w])
        self.sa2_module = SAModule(ratios[1], radii[1], sa2_nn, dtype)
        self.sa3_nn = MLP([4 * w + 3, 4 * w, 8 * w, 16 * w])
        self.mlp = MLP([16 * w, 8 * w, 4 * w, num_classes], dropout=0.5, norm=None)
        self.training_dtype = training_dtype

    def forward(self, pos: Tensor, batch: Tensor) -> Tensor:
        x, pos, batch = self.sa1_module(None, pos, batch)
        x, pos, batch = self.sa2_module(x, pos, batch)
        with _mixed_precision(self, pos.device):
            x = global_max_pool(self.sa3_nn(torch.cat([x, pos], dim=1)), batch)
            x = self.mlp(x)
        return x.float().log_softmax(dim=-1)


class QuickFPS:
    r"""torch-quickfps's bucket farthest point sampling (the fastest FPS a user can install,
    on CPU and GPU) behind :func:`torch_geometric.nn.fps`'s signature, for batches of clouds
    of equal size (other batches go to :func:`tg_samplenet.ops.fps`)."""

    def __init__(self, h: int = 5):
        import torch_quickfps

        self.sample_idx, self.h = torch_quickfps.sample_idx, h

    def __call__(self, x, batch=None, ratio=0.5, random_start=True, batch_size=None):
        B = 1 if batch is None else int(batch[-1]) + 1
        n = x.size(0) // B
        if batch is not None and (n * B != x.size(0) or bool((batch.bincount() != n).any())):
            return fps(x, batch, ratio, random_start, batch_size)
        m = int(torch.ceil(torch.tensor(n, dtype=torch.float32) * ratio))
        start = int(torch.randint(n, ())) if random_start else 0
        index = self.sample_idx(x.detach().view(B, n, -1), m, h=self.h, start_idx=start)
        return (index + torch.arange(B, device=x.device).unsqueeze(1) * n).view(-1)


def set_fps(model: PointNet2, first, second=None):
    r"""Sets the fps callable (or module) of the first set abstraction, and of the second
    (:obj:`None`: the same as the first when it is a plain callable)."""
    for layer, sample in ((model.sa1_module, first), (model.sa2_module, second or first)):
        if isinstance(layer.fps, torch.nn.Module):
            del layer.fps  # a submodule: a plain attribute cannot replace it
        layer.fps = sample


@torch.no_grad()
def evaluate_pointnet2(model: PointNet2, loader, device) -> float:
    r"""The accuracy of :obj:`model` over :obj:`loader`."""
    model.eval()
    correct = 0
    for data in loader:
        data = data.to(device)
        correct += int((model(data.pos, data.batch).argmax(-1) == data.y).sum())
    return correct / len(loader.dataset)
