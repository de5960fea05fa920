r"""The reconstruction task of SampleNet (paper §4.3): the point-cloud autoencoder, the
reconstruction error, the normalised reconstruction error (NRE) overall and per class, and
its evaluation on the points a sampler keeps."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Callable, NamedTuple, Optional, Union

import torch
from torch import Tensor
from torch_geometric.nn import MLP

from reproduction.tasks.layout import check_widths, cloud_layout, max_pool
from reproduction.tasks.metrics import per_class_mean, reduce_values
from tg_samplenet.losses import chamfer_distance
from tg_samplenet.ops.checks import check_positive_int

__all__ = [
    "PointCloudAE",
    "ReconstructionOutput",
    "reconstruction_errors",
    "normalized_reconstruction_error",
    "nre_summary",
    "evaluate_reconstruction",
]


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
        check_positive_int(num_points, "num_points")
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

    def encode(self, pos: Tensor, batch: Optional[Tensor] = None) -> Tensor:
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

    def forward(self, pos: Tensor, batch: Optional[Tensor] = None) -> ReconstructionOutput:
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


def normalized_reconstruction_error(
    cd_sampled: Tensor, cd_full: Tensor, reduction: str = "mean"
) -> Tensor:
    r"""The normalised reconstruction error (NRE) of the reconstruction task: for each
    cloud :math:`P`, the Chamfer distance of the reconstruction from the sampled cloud
    divided by that of the reconstruction from the full cloud, then averaged over clouds,

    .. math::
        \mathrm{NRE} = \frac{1}{B}\sum_{b=1}^{B}
        \frac{\mathrm{CD}(\mathrm{AE}(Q_b), P_b)}{\mathrm{CD}(\mathrm{AE}(P_b), P_b)}.

    The ratio is taken per cloud and then averaged, as the authors' evaluation does (not the
    ratio of the means). It is 1 when sampling costs nothing.

    Args:
        cd_sampled (torch.Tensor): :math:`\mathrm{CD}(\mathrm{AE}(Q_b), P_b)` per cloud,
            :obj:`[B]`.
        cd_full (torch.Tensor): :math:`\mathrm{CD}(\mathrm{AE}(P_b), P_b)` per cloud,
            :obj:`[B]`, positive.
        reduction (str, optional): :obj:`"mean"` or :obj:`"none"` for the per-cloud ratios.
            (default: :obj:`"mean"`)

    :rtype: :class:`torch.Tensor`
    """
    if cd_sampled.dim() != 1 or cd_sampled.shape != cd_full.shape:
        raise ValueError(
            f"cd_sampled and cd_full must be 1-D of one length (got "
            f"{list(cd_sampled.shape)} and {list(cd_full.shape)})"
        )
    if cd_full.numel() == 0:
        raise ValueError("cd_sampled and cd_full are empty")
    if bool((cd_full <= 0).any()):
        raise ValueError("cd_full must be positive: a perfect reconstruction has no ratio")
    return reduce_values(cd_sampled / cd_full, reduction)


def reconstruction_errors(
    ae: PointCloudAE, pos: Tensor, batch: Tensor, target: Tensor, target_batch: Tensor
) -> Tensor:
    r"""The Chamfer distance between the reconstruction of each cloud of :obj:`pos` and its
    complete cloud :obj:`target`, :obj:`[B]`; its mean is the autoencoder's training loss
    and the sampler's reconstruction task loss."""
    out = ae(pos, batch)
    return chamfer_distance(out.pos, target, out.batch, target_batch, reduction="none")


def nre_summary(
    cd_sampled: Tensor, cd_complete: Tensor, labels: Tensor, classes: Sequence[str]
) -> tuple[float, dict[str, float]]:
    r"""The NRE over all clouds and per class: each cloud's ratio
    :math:`\mathrm{CD}(\mathrm{AE}(Q), P) / \mathrm{CD}(\mathrm{AE}(P), P)` first, then the
    mean (the authors' evaluation), not the ratio of the mean errors.

    :rtype: :obj:`(overall, {class: value})`
    """
    ratios = normalized_reconstruction_error(cd_sampled, cd_complete, reduction="none")
    by_class = per_class_mean(ratios, labels, len(classes))
    return float(ratios.mean()), {c: float(v) for c, v in zip(classes, by_class, strict=True)}


def evaluate_reconstruction(
    ae: PointCloudAE,
    loader,
    device: Optional[Union[str, torch.device]] = None,
    sample: Optional[Callable[[Tensor, Tensor], tuple[Tensor, Tensor]]] = None,
) -> tuple[Tensor, Tensor]:
    r"""The reconstruction error (:func:`reconstruction_errors`) of every cloud of
    :obj:`loader` from the points that :obj:`sample(pos, batch) -> (pos, batch)` keeps (all
    points when :obj:`None`), and the labels.

    :rtype: :obj:`(errors [B], labels [B])` on the CPU
    """
    errors, labels = [], []
    with torch.no_grad():
        for data in loader:
            data = data.to(device) if device is not None else data
            pos, batch = (data.pos, data.batch) if sample is None else sample(data.pos, data.batch)
            errors.append(reconstruction_errors(ae, pos, batch, data.pos, data.batch))
            labels.append(data.y)
    return torch.cat(errors).cpu(), torch.cat(labels).cpu()
