r"""The task networks of ``tg-samplenet train`` in PyG's :obj:`(pos, batch)` layout: the
PointNet classifier and the point-cloud autoencoder, with the per-cloud pooling they share
(a reshape for equal-size clouds)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple, Optional, Union

import torch
from torch import Tensor
from torch_geometric.nn import MLP, global_max_pool
from torch_geometric.utils import to_dense_batch

from tg_samplenet.ops.checks import (
    InputError,
    InputTypeError,
    check_cloud_batch,
    check_number,
    check_points,
    check_positive_int,
)

__all__ = [
    "CloudLayout",
    "PointCloudAE",
    "PointNet",
    "ReconstructionOutput",
    "TNet",
    "check_widths",
    "cloud_layout",
    "max_pool",
    "orthogonality_regularizer",
    "transform_per_cloud",
]


def check_widths(channels: Sequence[int], name: str, min_len: int = 1) -> tuple[int, ...]:
    r"""Checks a sequence of layer widths (at least :obj:`min_len` positive ints)."""
    if isinstance(channels, int) or not all(
        isinstance(c, int) and not isinstance(c, bool) for c in channels
    ):
        raise InputTypeError(name, f"{name} must be a sequence of ints (got {channels!r})")
    if len(channels) < min_len or any(c < 1 for c in channels):
        raise InputError(name, f"{name} must hold {min_len}+ positive widths (got {channels})")
    return tuple(channels)


class CloudLayout(NamedTuple):
    r"""A checked batch vector :obj:`batch`, the number of clouds :obj:`num_clouds` and
    their common size :obj:`cloud_size` (:obj:`None` when the sizes differ)."""

    batch: Tensor
    num_clouds: int
    cloud_size: Optional[int]


def cloud_layout(
    pos: Tensor,
    batch: Optional[Tensor],
    name: str = "pos",
    batch_name: str = "batch",
    dim: int = 3,
) -> CloudLayout:
    r"""Checks :obj:`pos` (:obj:`[N, dim]`, not empty) and its sorted :obj:`batch`, in which
    every cloud holds a point; :obj:`name` and :obj:`batch_name` are quoted in errors."""
    check_points(pos, name, allow_empty=False, dim=dim)
    batch, B = check_cloud_batch(batch, pos, batch_name, pos_name=name)
    sizes = torch.bincount(batch, minlength=B)
    smallest, largest = (int(s) for s in sizes.aminmax())
    if smallest == 0:
        empty = int((sizes == 0).nonzero()[0])
        raise InputError(batch_name, f"{batch_name} skips cloud {empty}: no point in it")
    return CloudLayout(batch, B, largest if smallest == largest else None)


def max_pool(x: Tensor, layout: CloudLayout) -> Tensor:
    r"""The per-cloud maximum of point features :obj:`x` :obj:`[N, C]` -> :obj:`[B, C]`."""
    if layout.cloud_size is not None:
        return x.view(layout.num_clouds, layout.cloud_size, -1).amax(dim=1)
    return global_max_pool(x, layout.batch, size=layout.num_clouds)


def transform_per_cloud(x: Tensor, matrix: Tensor, layout: CloudLayout) -> Tensor:
    r"""Multiplies each point's row :obj:`x[i]` (:obj:`[N, C]`) by its cloud's matrix
    (:obj:`matrix` :obj:`[B, C, D]`) -> :obj:`[N, D]`."""
    if layout.cloud_size is not None:
        dense = x.view(layout.num_clouds, layout.cloud_size, -1)
        return torch.bmm(dense, matrix).reshape(-1, matrix.size(-1))
    dense, mask = to_dense_batch(x, layout.batch, batch_size=layout.num_clouds)
    return torch.bmm(dense, matrix)[mask]


def orthogonality_regularizer(transform: Tensor, reduction: str = "mean") -> Tensor:
    r"""PointNet's feature-transform regulariser
    :math:`\lVert \mathbf{A}\mathbf{A}^{\top} - \mathbf{I} \rVert_F^2` of each matrix
    :obj:`[B, k, k]`, reduced over the clouds by :obj:`"mean"`, :obj:`"sum"` or
    :obj:`"none"`. The authors' :obj:`tf.nn.l2_loss` is :obj:`0.5 * reduction="sum"`.

    :rtype: :class:`torch.Tensor`
    """
    if transform.dim() != 3 or transform.size(1) != transform.size(2):
        raise InputError("transform", f"transform must be [B, k, k] (got {transform.shape})")
    eye = torch.eye(transform.size(-1), dtype=transform.dtype, device=transform.device)
    per_cloud = (transform @ transform.transpose(1, 2) - eye).square().sum(dim=(1, 2))
    if reduction not in ("mean", "sum", "none"):
        raise InputError("reduction", f"reduction must be 'mean', 'sum' or 'none' ({reduction})")
    return per_cloud if reduction == "none" else getattr(per_cloud, reduction)()


class TNet(torch.nn.Module):
    r"""The transformer network of PointNet from the `"PointNet: Deep Learning on Point Sets
    for 3D Classification and Segmentation" <https://arxiv.org/abs/1612.00593>`_ paper: a
    small PointNet that predicts one :math:`k \times k` matrix per cloud, the identity when
    fresh (its last layer starts at zero with the identity as bias).

    Args:
        k (int): The size of the matrix (3 for the points, 64 for the features).
        point_channels (Sequence[int], optional): Per-point widths; the last is pooled.
            (default: :obj:`(64, 128, 1024)`)
        head_channels (Sequence[int], optional): Hidden fully connected widths.
            (default: :obj:`(512, 256)`)

    Shapes:
        - **input:** features :math:`(|\mathcal{V}|, k)`, batch vector
          :math:`(|\mathcal{V}|)` *(optional)*
        - **output:** matrices :math:`(B, k, k)`
    """

    def __init__(
        self,
        k: int,
        point_channels: Sequence[int] = (64, 128, 1024),
        head_channels: Sequence[int] = (512, 256),
    ):
        super().__init__()
        self.k = check_positive_int(k, "k")
        self.point_channels = check_widths(point_channels, "point_channels")
        self.head_channels = check_widths(head_channels, "head_channels", min_len=0)
        self.point_mlp = MLP([k, *self.point_channels], plain_last=False)
        widths = [self.point_channels[-1], *self.head_channels]
        self.head_mlp = MLP(widths, plain_last=False) if self.head_channels else torch.nn.Identity()
        self.lin = torch.nn.Linear(widths[-1], k * k)
        self.reset_parameters()

    def reset_parameters(self):
        r"""Resets all learnable parameters; the output is then the identity."""
        self.point_mlp.reset_parameters()
        if isinstance(self.head_mlp, MLP):
            self.head_mlp.reset_parameters()
        torch.nn.init.zeros_(self.lin.weight)
        with torch.no_grad():
            self.lin.bias.copy_(torch.eye(self.k).flatten())

    def forward(self, x: Tensor, batch: Optional[Tensor] = None) -> Tensor:
        return self.predict(x, cloud_layout(x, batch, name="x", dim=self.k))

    def predict(self, x: Tensor, layout: CloudLayout) -> Tensor:
        r"""The matrices for features :obj:`x` whose :obj:`layout` is already checked."""
        out = self.head_mlp(max_pool(self.point_mlp(x), layout))
        return self.lin(out).view(-1, self.k, self.k)

    def __repr__(self) -> str:
        return (
            f"{self.__class__.__name__}({self.k}, point_channels={list(self.point_channels)}, "
            f"head_channels={list(self.head_channels)})"
        )


class PointNet(torch.nn.Module):
    r"""The PointNet classifier from the `"PointNet: Deep Learning on Point Sets for 3D
    Classification and Segmentation" <https://arxiv.org/abs/1612.00593>`_ paper: per-point
    layers (Linear + BatchNorm + ReLU, the authors' 1x1 convolutions) 64, 64, 64, 128, 1024,
    max-pooling, then FC 512 and 256 with BatchNorm, ReLU and dropout, FC :obj:`num_classes`.
    With transforms (the authors' :obj:`pointnet_cls`) a 3x3 :class:`TNet` turns the points
    and a 64x64 one the features after the second layer (points are row vectors times their
    cloud's matrix) and dropout follows each hidden FC layer; vanilla
    (:obj:`pointnet_cls_basic`, SampleNet-Progressive's task network) has neither, and
    dropout only before the last layer. With :obj:`return_regularizer=True` it also returns
    the mean over clouds of :func:`orthogonality_regularizer` of the feature transform
    (zero without one).

    Args:
        num_classes (int): The number of classes.
        input_transform (bool, optional): Use the input :class:`TNet`. (default: :obj:`True`)
        feature_transform (bool, optional): Use the feature :class:`TNet` after the second
            per-point layer. (default: :obj:`True`)
        point_channels (Sequence[int], optional): Per-point widths before the global one.
            (default: :obj:`(64, 64, 64, 128)`)
        global_channels (int, optional): Width of the pooled global feature.
            (default: :obj:`1024`)
        head_channels (Sequence[int], optional): Hidden fully connected widths.
            (default: :obj:`(512, 256)`)
        dropout (float, optional): Dropout probability in the head. (default: :obj:`0.3`)
        tnet_point_channels (Sequence[int], optional): Per-point widths of the T-Nets.
            (default: :obj:`(64, 128, 1024)`)
        tnet_head_channels (Sequence[int], optional): Hidden widths of the T-Nets.
            (default: :obj:`(512, 256)`)

    Shapes:
        - **input:** positions :math:`(|\mathcal{V}|, 3)`, batch vector
          :math:`(|\mathcal{V}|)` *(optional)*
        - **output:** logits :math:`(B, \text{num_classes})` (and :math:`\mathcal{R}`)
    """

    def __init__(
        self,
        num_classes: int,
        input_transform: bool = True,
        feature_transform: bool = True,
        point_channels: Sequence[int] = (64, 64, 64, 128),
        global_channels: int = 1024,
        head_channels: Sequence[int] = (512, 256),
        dropout: float = 0.3,
        tnet_point_channels: Sequence[int] = (64, 128, 1024),
        tnet_head_channels: Sequence[int] = (512, 256),
    ):
        super().__init__()
        self.num_classes = check_positive_int(num_classes, "num_classes")
        self.global_channels = check_positive_int(global_channels, "global_channels")
        self.dropout = check_number(dropout, "dropout", minimum=0.0)
        if self.dropout >= 1.0:
            raise InputError("dropout", f"dropout must lie in [0, 1) (got {dropout})")
        self.input_transform, self.feature_transform = (
            bool(input_transform),
            bool(feature_transform),
        )
        self.point_channels = check_widths(point_channels, "point_channels", min_len=2)
        self.head_channels = check_widths(head_channels, "head_channels")
        # The feature transform acts between the second and third per-point layers.
        channels = [3, *self.point_channels, global_channels]
        self.point_mlp1 = MLP(channels[:3], plain_last=False)
        self.point_mlp2 = MLP(channels[2:], plain_last=False)
        tnet = (tnet_point_channels, tnet_head_channels)
        self.input_tnet = TNet(3, *tnet) if self.input_transform else None
        self.feature_tnet = TNet(channels[2], *tnet) if self.feature_transform else None
        hidden = len(self.head_channels)
        if self.input_transform or self.feature_transform:
            drops = [self.dropout] * hidden + [0.0]  # pointnet_cls
        else:
            drops = [0.0] * (hidden - 1) + [self.dropout, 0.0]  # pointnet_cls_basic
        self.head = MLP([global_channels, *self.head_channels, num_classes], dropout=drops)
        self.reset_parameters()

    def reset_parameters(self):
        r"""Resets all learnable parameters of the module."""
        for module in (self.point_mlp1, self.point_mlp2, self.input_tnet, self.feature_tnet):
            if module is not None:
                module.reset_parameters()
        self.head.reset_parameters()

    def forward(
        self, pos: Tensor, batch: Optional[Tensor] = None, return_regularizer: bool = False
    ) -> Union[Tensor, tuple[Tensor, Tensor]]:
        layout = cloud_layout(pos, batch)
        x = pos
        if self.input_tnet is not None:
            x = transform_per_cloud(x, self.input_tnet.predict(x, layout), layout)
        x = self.point_mlp1(x)
        regularizer = pos.new_zeros(())
        if self.feature_tnet is not None:
            transform = self.feature_tnet.predict(x, layout)
            x = transform_per_cloud(x, transform, layout)
            if return_regularizer:
                regularizer = orthogonality_regularizer(transform)
        logits = self.head(max_pool(self.point_mlp2(x), layout))
        return (logits, regularizer) if return_regularizer else logits

    def __repr__(self) -> str:
        return (
            f"{self.__class__.__name__}({self.num_classes}, "
            f"input_transform={self.input_transform}, "
            f"feature_transform={self.feature_transform}, "
            f"global_channels={self.global_channels})"
        )


class ReconstructionOutput(NamedTuple):
    r"""What :class:`PointCloudAE` returns: the reconstructed points :obj:`pos`
    :obj:`[B * num_points, 3]` cloud by cloud, their batch vector :obj:`batch` and the
    latent code :obj:`embedding` :obj:`[B, bottleneck]` of each cloud."""

    pos: Tensor
    batch: Tensor
    embedding: Tensor


class PointCloudAE(torch.nn.Module):
    r"""The point-cloud autoencoder from the `"Learning Representations and Generative
    Models for 3D Point Clouds" <https://arxiv.org/abs/1707.02392>`_ paper, the
    :obj:`mlp_architecture_ala_iclr_18` that SampleNet reconstructs with: per-point layers
    max-pooled into a code, decoded into :obj:`num_points` points per cloud:

    .. code-block:: python

        out = ae(pos, batch)
        loss = chamfer_distance(out.pos, pos, out.batch, batch)

    Args:
        num_points (int, optional): Points per reconstruction. (default: :obj:`2048`)
        encoder_channels (Sequence[int], optional): Per-point widths; the last is the
            bottleneck. (default: :obj:`(64, 128, 128, 256, 128)`)
        decoder_channels (Sequence[int], optional): Hidden widths of the decoder.
            (default: :obj:`(256, 256)`)

    Shapes:
        - **input:** positions :math:`(|\mathcal{V}|, 3)`, batch vector
          :math:`(|\mathcal{V}|)` *(optional)*
        - **output:** :class:`ReconstructionOutput`
    """

    def __init__(
        self,
        num_points: int = 2048,
        encoder_channels: Sequence[int] = (64, 128, 128, 256, 128),
        decoder_channels: Sequence[int] = (256, 256),
    ):
        super().__init__()
        self.num_points = check_positive_int(num_points, "num_points")
        self.encoder_channels = check_widths(encoder_channels, "encoder_channels")
        self.decoder_channels = check_widths(decoder_channels, "decoder_channels", min_len=0)
        self.encoder = MLP([3, *self.encoder_channels], plain_last=False)
        widths = [self.bottleneck, *self.decoder_channels, 3 * num_points]
        self.decoder = MLP(widths, norm=None)
        self.reset_parameters()

    @property
    def bottleneck(self) -> int:
        r"""The size of the latent code."""
        return self.encoder_channels[-1]

    def reset_parameters(self):
        r"""Resets all learnable parameters of the module."""
        self.encoder.reset_parameters()
        self.decoder.reset_parameters()

    def encode(self, pos: Tensor, batch: Optional[Tensor] = None) -> Tensor:
        r"""The latent code :obj:`[B, bottleneck]` of each cloud."""
        return max_pool(self.encoder(pos), cloud_layout(pos, batch))

    def decode(self, embedding: Tensor) -> Tensor:
        r"""The points :obj:`[B * num_points, 3]` of latent codes :obj:`[B, bottleneck]`."""
        if embedding.dim() != 2 or embedding.size(1) != self.bottleneck:
            raise InputError(
                "embedding", f"embedding must be [B, {self.bottleneck}] ({embedding.shape})"
            )
        return self.decoder(embedding).view(-1, 3)

    def forward(self, pos: Tensor, batch: Optional[Tensor] = None) -> ReconstructionOutput:
        embedding = self.encode(pos, batch)
        out_batch = torch.arange(embedding.size(0), device=pos.device)
        return ReconstructionOutput(
            self.decode(embedding), out_batch.repeat_interleave(self.num_points), embedding
        )

    def __repr__(self) -> str:
        return (
            f"{self.__class__.__name__}(num_points={self.num_points}, "
            f"encoder_channels={list(self.encoder_channels)}, "
            f"decoder_channels={list(self.decoder_channels)})"
        )
