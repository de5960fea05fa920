r"""PCRNet, the registration task network of SampleNet."""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import torch
from torch import Tensor
from torch_geometric.nn import MLP

from tg_samplenet.tasks.layout import check_widths, cloud_layout, max_pool
from tg_samplenet.tasks.rotations import quaternion_to_matrix

__all__ = ["PCRNet", "PCRNetOutput"]


class PCRNetOutput(NamedTuple):
    r"""The pose :class:`PCRNet` estimates for each template/source pair.

    Attributes:
        rotation (torch.Tensor): :obj:`[B, 3, 3]` rotation :math:`\mathbf{R}` with
            :math:`\mathbf{R}\,\mathbf{p}_{template} \approx \mathbf{p}_{source}`.
        quaternion (torch.Tensor): :obj:`[B, 4]` the same rotation as a unit quaternion
            :math:`(w, x, y, z)`.
        translation (torch.Tensor): :obj:`[B, 3]` the translation outputs; the SampleNet
            registration task has no translation and never trains or uses them.
    """

    rotation: Tensor
    quaternion: Tensor
    translation: Tensor


class PCRNet(torch.nn.Module):
    r"""The single-pass PCRNet from the `"PCRNet: Point Cloud Registration Network using
    PointNet Encoding" <https://arxiv.org/abs/1908.07906>`_ paper, as SampleNet's
    registration experiments configure it.

    A shared PointNet without BatchNorm (per-point layers 64, 64, 64, 128, 1024 with ReLU,
    max-pooling per cloud) encodes the template and the source; the two global features
    are concatenated (template first) and fully connected layers 1024, 1024, 512, 512, 256
    (ReLU) give 7 outputs: a quaternion, L2-normalised, and a translation.

    The estimated rotation maps the template onto the source: the SampleNet data rotates
    each template :math:`\mathbf{P}_0` by :math:`\mathbf{R}_{gt}` to make the source
    :math:`\mathbf{P}_1`, and the training loss is

    .. math::
        \lVert \mathbf{R}_{est}\mathbf{R}_{gt}^{\top} - \mathbf{I} \rVert_F^2 +
        \mathrm{CD}(\mathbf{P}_1, \mathbf{R}_{est}\mathbf{P}_0).

    Args:
        point_channels (Sequence[int], optional): Widths of the per-point layers before the
            global one. (default: :obj:`(64, 64, 64, 128)`)
        global_channels (int, optional): Width of the pooled global feature of one cloud.
            (default: :obj:`1024`)
        head_channels (Sequence[int], optional): Widths of the hidden fully connected
            layers. (default: :obj:`(1024, 1024, 512, 512, 256)`)

    Shapes:
        - **input:** template positions :math:`(|\mathcal{V}_0|, 3)`, source positions
          :math:`(|\mathcal{V}_1|, 3)`, their batch vectors *(optional)*; both hold the same
          number of clouds :math:`B`, of any sizes
        - **output:** :class:`PCRNetOutput` with rotation :math:`(B, 3, 3)`, quaternion
          :math:`(B, 4)`, translation :math:`(B, 3)`
    """

    def __init__(
        self,
        point_channels: Sequence[int] = (64, 64, 64, 128),
        global_channels: int = 1024,
        head_channels: Sequence[int] = (1024, 1024, 512, 512, 256),
    ):
        super().__init__()
        if isinstance(global_channels, bool) or not isinstance(global_channels, int):
            raise TypeError(f"global_channels must be an int (got {global_channels!r})")
        if global_channels < 1:
            raise ValueError(f"global_channels must be positive (got {global_channels})")
        self.point_channels = check_widths(point_channels, "point_channels", min_len=0)
        self.global_channels = global_channels
        self.head_channels = check_widths(head_channels, "head_channels", min_len=0)
        self.encoder = MLP([3, *self.point_channels, global_channels], norm=None, plain_last=False)
        self.head = MLP([2 * global_channels, *self.head_channels, 7], norm=None)
        self.reset_parameters()

    def reset_parameters(self):
        r"""Resets all learnable parameters of the module."""
        self.encoder.reset_parameters()
        self.head.reset_parameters()

    def encode(self, pos: Tensor, batch: Tensor | None = None) -> Tensor:
        r"""The global feature :obj:`[B, global_channels]` of each cloud."""
        return max_pool(self.encoder(pos), cloud_layout(pos, batch))

    def forward(
        self,
        template_pos: Tensor,
        source_pos: Tensor,
        template_batch: Tensor | None = None,
        source_batch: Tensor | None = None,
    ) -> PCRNetOutput:
        r"""Forward pass.

        Args:
            template_pos (torch.Tensor): Template positions :obj:`[N0, 3]`.
            source_pos (torch.Tensor): Source positions :obj:`[N1, 3]`.
            template_batch (torch.Tensor, optional): Sorted batch vector of the template
                points. (default: :obj:`None`)
            source_batch (torch.Tensor, optional): Sorted batch vector of the source
                points. (default: :obj:`None`)
        """
        template_layout = cloud_layout(
            template_pos, template_batch, "template_pos", "template_batch"
        )
        source_layout = cloud_layout(source_pos, source_batch, "source_pos", "source_batch")
        template = max_pool(self.encoder(template_pos), template_layout)
        source = max_pool(self.encoder(source_pos), source_layout)
        if template.size(0) != source.size(0):
            raise ValueError(
                f"template and source must hold the same number of clouds "
                f"(got {template.size(0)} and {source.size(0)})"
            )
        out = self.head(torch.cat([template, source], dim=-1))
        quaternion = torch.nn.functional.normalize(out[:, :4], dim=-1)
        return PCRNetOutput(quaternion_to_matrix(quaternion), quaternion, out[:, 4:])

    def __repr__(self) -> str:
        return (
            f"{self.__class__.__name__}(point_channels={list(self.point_channels)}, "
            f"global_channels={self.global_channels}, "
            f"head_channels={list(self.head_channels)})"
        )
