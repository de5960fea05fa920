r"""The point-cloud autoencoder used as SampleNet's reconstruction task network."""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import torch
from torch import Tensor
from torch_geometric.nn import MLP

from tg_samplenet.tasks.layout import check_widths, cloud_layout, max_pool

__all__ = ["PointCloudAE", "ReconstructionOutput"]


class ReconstructionOutput(NamedTuple):
    r"""The clouds :class:`PointCloudAE` reconstructs, in PyG's layout.

    Attributes:
        pos (torch.Tensor): :obj:`[B * num_points, 3]` reconstructed points, cloud by cloud
            (:obj:`pos.view(B, num_points, 3)` is the dense form).
        batch (torch.Tensor): :obj:`[B * num_points]` their sorted batch vector.
        embedding (torch.Tensor): :obj:`[B, bottleneck]` the latent code of each cloud.
    """

    pos: Tensor
    batch: Tensor
    embedding: Tensor


class PointCloudAE(torch.nn.Module):
    r"""The point-cloud autoencoder from the `"Learning Representations and Generative
    Models for 3D Point Clouds" <https://arxiv.org/abs/1707.02392>`_ paper (the
    :obj:`mlp_architecture_ala_iclr_18` configuration SampleNet reconstructs with).

    Encoder: per-point layers 64, 128, 128, 256, 128, each Linear + BatchNorm + ReLU (the
    authors' 1x1 convolutions), max-pooled per cloud into a 128-d code. Decoder: fully
    connected 256, 256 with ReLU and no BatchNorm, then a linear layer to
    :math:`3 \cdot \text{num_points}` coordinates, read point by point.

    The output is in PyG's layout (points plus batch vector), so it goes straight into a
    Chamfer distance that takes batch vectors:

    .. code-block:: python

        out = ae(pos, batch)
        loss = chamfer_distance(out.pos, pos, out.batch, batch)

    The encoder accepts clouds of any size (a sampled cloud too); the decoder always
    returns :obj:`num_points` points per cloud.

    Args:
        num_points (int, optional): Points per reconstructed cloud. (default: :obj:`2048`)
        encoder_channels (Sequence[int], optional): Widths of the per-point layers; the
            last is the bottleneck. (default: :obj:`(64, 128, 128, 256, 128)`)
        decoder_channels (Sequence[int], optional): Widths of the hidden fully connected
            layers of the decoder. (default: :obj:`(256, 256)`)

    Shapes:
        - **input:** positions :math:`(|\mathcal{V}|, 3)`, batch vector
          :math:`(|\mathcal{V}|)` *(optional)*
        - **output:** :class:`ReconstructionOutput` with positions
          :math:`(B \cdot \text{num_points}, 3)`, batch vector
          :math:`(B \cdot \text{num_points})` and embedding :math:`(B, \text{bottleneck})`
    """

    def __init__(
        self,
        num_points: int = 2048,
        encoder_channels: Sequence[int] = (64, 128, 128, 256, 128),
        decoder_channels: Sequence[int] = (256, 256),
    ):
        super().__init__()
        if isinstance(num_points, bool) or not isinstance(num_points, int) or num_points < 1:
            raise ValueError(f"num_points must be a positive int (got {num_points!r})")
        self.num_points = num_points
        self.encoder_channels = check_widths(encoder_channels, "encoder_channels")
        self.decoder_channels = check_widths(decoder_channels, "decoder_channels", min_len=0)
        self.encoder = MLP([3, *self.encoder_channels], plain_last=False)
        self.decoder = MLP(
            [self.encoder_channels[-1], *self.decoder_channels, 3 * num_points], norm=None
        )
        self.reset_parameters()

    @property
    def bottleneck(self) -> int:
        r"""The size of the latent code."""
        return self.encoder_channels[-1]

    def reset_parameters(self):
        r"""Resets all learnable parameters of the module."""
        self.encoder.reset_parameters()
        self.decoder.reset_parameters()

    def encode(self, pos: Tensor, batch: Tensor | None = None) -> Tensor:
        r"""The latent code :obj:`[B, bottleneck]` of each cloud."""
        layout = cloud_layout(pos, batch)
        return max_pool(self.encoder(pos), layout)

    def decode(self, embedding: Tensor) -> Tensor:
        r"""Decodes latent codes :obj:`[B, bottleneck]` into :obj:`[B * num_points, 3]`
        points, cloud by cloud."""
        if embedding.dim() != 2 or embedding.size(1) != self.bottleneck:
            raise ValueError(
                f"embedding must have shape [B, {self.bottleneck}] (got {list(embedding.shape)})"
            )
        return self.decoder(embedding).view(-1, 3)

    def forward(self, pos: Tensor, batch: Tensor | None = None) -> ReconstructionOutput:
        r"""Forward pass.

        Args:
            pos (torch.Tensor): Point positions :obj:`[N, 3]`.
            batch (torch.Tensor, optional): The batch vector
                :math:`\mathbf{b} \in {\{ 0, \ldots, B-1\}}^N`, sorted; clouds may differ in
                size. (default: :obj:`None`)
        """
        embedding = self.encode(pos, batch)
        out = self.decode(embedding)
        out_batch = torch.arange(embedding.size(0), device=pos.device)
        out_batch = out_batch.repeat_interleave(self.num_points)
        return ReconstructionOutput(out, out_batch, embedding)

    def __repr__(self) -> str:
        return (
            f"{self.__class__.__name__}(num_points={self.num_points}, "
            f"encoder_channels={list(self.encoder_channels)}, "
            f"decoder_channels={list(self.decoder_channels)})"
        )
