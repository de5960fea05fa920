r"""Centring and scaling point clouds into the unit sphere."""

from __future__ import annotations

import torch
from torch import Tensor
from torch_geometric.data import Data
from torch_geometric.transforms import BaseTransform

from tg_samplenet.ops.checks import InputError, InputTypeError

__all__ = ["normalize_unit_sphere", "NormalizeUnitSphere"]


def normalize_unit_sphere(pos: Tensor) -> Tensor:
    r"""Moves the centroid of each cloud to the origin and scales the cloud so that its
    farthest point lies on the unit sphere:

    .. math::
        \mathbf{p}_i \leftarrow \frac{\mathbf{p}_i - \bar{\mathbf{p}}}
        {\max_j \| \mathbf{p}_j - \bar{\mathbf{p}} \|_2}

    as the paper's ModelNet40 files are (PyG's
    :class:`~torch_geometric.transforms.NormalizeScale` bounds by the unit cube instead).
    A cloud whose points all coincide is only centred.

    Args:
        pos (torch.Tensor): One cloud :obj:`[P, 3]` or a batch of equal-sized clouds
            :obj:`[B, P, 3]`.

    :rtype: :class:`torch.Tensor`
    """
    if not isinstance(pos, Tensor) or not torch.is_floating_point(pos):
        raise InputTypeError("pos", f"pos must be a floating-point tensor (got {pos!r:.60})")
    if pos.dim() not in (2, 3) or pos.size(-1) != 3:
        raise InputError("pos", f"pos must have shape [P, 3] or [B, P, 3] (got {list(pos.shape)})")
    if pos.size(-2) == 0:
        raise InputError("pos", "pos must hold at least one point per cloud")
    # An exact power of two first brings the largest coordinate into [1/2, 1): the result
    # is unchanged by it, and the mean and squared norms below then neither overflow nor
    # underflow at any scale (a cloud at 1e-30 has squares below float32's range).
    largest = pos.abs().amax(dim=(-2, -1), keepdim=True)
    pos = torch.ldexp(pos, -torch.frexp(largest).exponent)
    pos = pos - pos.mean(dim=-2, keepdim=True)
    scale = pos.norm(dim=-1).amax(dim=-1, keepdim=True)
    scale = scale.masked_fill(scale == 0, 1.0)
    return pos / scale.unsqueeze(-1)


class NormalizeUnitSphere(BaseTransform):
    r"""Centres :obj:`data.pos` at its centroid and scales it into the unit sphere (see
    :func:`normalize_unit_sphere`)."""

    def forward(self, data: Data) -> Data:
        if data.pos is None:
            raise InputError("data", "data.pos is missing: NormalizeUnitSphere needs points")
        data.pos = normalize_unit_sphere(data.pos)
        return data
