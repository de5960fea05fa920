r"""The classification task of SampleNet (paper §4.1): the PointNet classifier (with and
without its transform nets), its training loss, the instance accuracy and its evaluation on
the points a sampler keeps."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Callable, Optional, Union

import torch
import torch.nn.functional as F
from torch import Tensor
from torch_geometric.nn import MLP

from reproduction.tasks.layout import (
    CloudLayout,
    check_widths,
    cloud_layout,
    max_pool,
    transform_per_cloud,
)
from reproduction.tasks.metrics import per_class_mean
from tg_samplenet.ops.checks import check_positive_int

__all__ = [
    "TNet",
    "PointNet",
    "orthogonality_regularizer",
    "classification_loss",
    "accuracy",
    "per_class_accuracy",
    "evaluate_accuracy",
]


def orthogonality_regularizer(transform: Tensor, reduction: str = "mean") -> Tensor:
    r"""The PointNet feature-transform regulariser
    :math:`\lVert \mathbf{A}\mathbf{A}^{\top} - \mathbf{I} \rVert_F^2` of each matrix,
    reduced over the clouds.

    It is zero exactly for orthogonal :math:`\mathbf{A}`. The authors' TensorFlow loss
    uses :obj:`tf.nn.l2_loss`, i.e. :math:`\frac{1}{2}\sum_b` of this quantity over the
    :math:`B` clouds of a batch: :obj:`reduction="sum"` times :obj:`0.5` reproduces it.

    Args:
        transform (torch.Tensor): Square matrices :obj:`[B, k, k]`.
        reduction (str, optional): :obj:`"mean"` or :obj:`"sum"` over the clouds, or
            :obj:`"none"` for :obj:`[B]`. (default: :obj:`"mean"`)

    :rtype: :class:`torch.Tensor`
    """
    if transform.dim() != 3 or transform.size(1) != transform.size(2):
        raise ValueError(f"transform must have shape [B, k, k] (got {list(transform.shape)})")
    eye = torch.eye(transform.size(-1), dtype=transform.dtype, device=transform.device)
    per_cloud = (transform @ transform.transpose(1, 2) - eye).square().sum(dim=(1, 2))
    if reduction == "mean":
        return per_cloud.mean()
    if reduction == "sum":
        return per_cloud.sum()
    if reduction == "none":
        return per_cloud
    raise ValueError(f"reduction must be 'mean', 'sum' or 'none' (got {reduction!r})")


class TNet(torch.nn.Module):
    r"""The spatial / feature transformer network of PointNet from the `"PointNet: Deep
    Learning on Point Sets for 3D Classification and Segmentation"
    <https://arxiv.org/abs/1612.00593>`_ paper: a small PointNet that predicts one
    :math:`k \times k` matrix per cloud.

    Per-point layers (Linear + BatchNorm + ReLU, i.e. the authors' 1x1 convolutions),
    max-pooling per cloud, fully connected layers with BatchNorm + ReLU, and a last linear
    layer to :math:`k^2` outputs whose weights start at zero and whose bias is the identity,
    so a fresh T-Net returns :math:`\mathbf{I}_k` for every cloud.

    Args:
        k (int): The size of the matrix (3 for the input transform, 64 for the features).
        point_channels (Sequence[int], optional): Widths of the per-point layers; the last
            is the pooled width. (default: :obj:`(64, 128, 1024)`)
        head_channels (Sequence[int], optional): Widths of the hidden fully connected
            layers. (default: :obj:`(512, 256)`)

    Shapes:
        - **input:** point features :math:`(|\mathcal{V}|, k)`, batch vector
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
        check_positive_int(k, "k")
        self.k = k
        self.point_channels = check_widths(point_channels, "point_channels")
        self.head_channels = check_widths(head_channels, "head_channels", min_len=0)
        self.point_mlp = MLP([k, *self.point_channels], plain_last=False)
        self.head_mlp = (
            MLP([self.point_channels[-1], *self.head_channels], plain_last=False)
            if self.head_channels
            else torch.nn.Identity()
        )
        last = self.head_channels[-1] if self.head_channels else self.point_channels[-1]
        self.lin = torch.nn.Linear(last, k * k)
        self.reset_parameters()

    def reset_parameters(self):
        r"""Resets all learnable parameters of the module; the output is the identity."""
        self.point_mlp.reset_parameters()
        if isinstance(self.head_mlp, MLP):
            self.head_mlp.reset_parameters()
        torch.nn.init.zeros_(self.lin.weight)
        with torch.no_grad():
            self.lin.bias.copy_(torch.eye(self.k).flatten())

    def forward(self, x: Tensor, batch: Optional[Tensor] = None) -> Tensor:
        r"""Forward pass.

        Args:
            x (torch.Tensor): Point features :obj:`[N, k]`.
            batch (torch.Tensor, optional): The batch vector
                :math:`\mathbf{b} \in {\{ 0, \ldots, B-1\}}^N`, sorted. (default: :obj:`None`)
        """
        return self._predict(x, cloud_layout(x, batch, name="x", dim=self.k))

    def _predict(self, x: Tensor, layout: CloudLayout) -> Tensor:
        out = self.head_mlp(max_pool(self.point_mlp(x), layout))
        return self.lin(out).view(-1, self.k, self.k)

    def __repr__(self) -> str:
        return (
            f"{self.__class__.__name__}({self.k}, point_channels={list(self.point_channels)}, "
            f"head_channels={list(self.head_channels)})"
        )


class PointNet(torch.nn.Module):
    r"""The PointNet classifier from the `"PointNet: Deep Learning on Point Sets for 3D
    Classification and Segmentation" <https://arxiv.org/abs/1612.00593>`_ paper, in the two
    variants SampleNet uses as its frozen classification task network.

    * With transforms (the authors' :obj:`pointnet_cls`): input :class:`TNet` (3x3) applied
      to the points, per-point layers 64, 64, feature :class:`TNet` (64x64) applied to the
      features, per-point layers 64, 128, 1024, max-pooling per cloud, then FC 512 + BN +
      ReLU + dropout, FC 256 + BN + ReLU + dropout, FC :obj:`num_classes`.
    * Without transforms (:obj:`pointnet_cls_basic`, used by progressive SampleNet):
      per-point layers 64, 64, 64, 128, 1024, max-pooling, FC 512 + BN + ReLU, FC 256 + BN +
      ReLU, dropout, FC :obj:`num_classes`.

    Per-point layers are Linear + BatchNorm + ReLU over all points of the batch (the
    authors' 1x1 convolutions). Points are row vectors multiplied by the transform,
    :math:`\mathbf{x}_i' = \mathbf{x}_i \mathbf{A}_{b_i}`. If either transform is enabled
    the head is the :obj:`pointnet_cls` one (dropout after each hidden layer).

    The training loss of the authors is

    .. math::
        \mathcal{L} = \mathrm{CE} + w \, \mathcal{R}, \qquad
        \mathcal{R} = \frac{1}{B}\sum_{b=1}^{B}
        \lVert \mathbf{A}_b\mathbf{A}_b^{\top} - \mathbf{I} \rVert_F^2,

    with :math:`\mathbf{A}_b` the feature transform of cloud :math:`b`; :math:`\mathcal{R}`
    (the mean over clouds) is what :obj:`return_regularizer=True` gives. The authors' code
    uses :math:`w = 0.001` on :obj:`tf.nn.l2_loss`, which is
    :math:`\frac{B}{2}\mathcal{R}`, so their loss is :math:`w = 0.0005\,B` here
    (:obj:`0.016` at batch size 32); see :func:`orthogonality_regularizer`.

    Args:
        num_classes (int): The number of classes.
        input_transform (bool, optional): Use the 3x3 input :class:`TNet`.
            (default: :obj:`True`)
        feature_transform (bool, optional): Use the feature :class:`TNet` after the second
            per-point layer. (default: :obj:`True`)
        point_channels (Sequence[int], optional): Widths of the per-point layers before the
            global one; the feature transform acts on the output of the second.
            (default: :obj:`(64, 64, 64, 128)`)
        global_channels (int, optional): Width of the last per-point layer, i.e. of the
            pooled global feature. (default: :obj:`1024`)
        head_channels (Sequence[int], optional): Widths of the hidden fully connected
            layers. (default: :obj:`(512, 256)`)
        dropout (float, optional): Dropout probability in the head; the authors keep
            70%. (default: :obj:`0.3`)
        tnet_point_channels (Sequence[int], optional): Per-point widths of both T-Nets.
            (default: :obj:`(64, 128, 1024)`)
        tnet_head_channels (Sequence[int], optional): Hidden FC widths of both T-Nets.
            (default: :obj:`(512, 256)`)

    Shapes:
        - **input:** positions :math:`(|\mathcal{V}|, 3)`, batch vector
          :math:`(|\mathcal{V}|)` *(optional)*
        - **output:** logits :math:`(B, \text{num_classes})`, and the scalar regulariser
          :math:`\mathcal{R}` with :obj:`return_regularizer=True`
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
        check_positive_int(num_classes, "num_classes")
        check_positive_int(global_channels, "global_channels")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout must lie in [0, 1) (got {dropout})")
        self.num_classes = num_classes
        self.input_transform = bool(input_transform)
        self.feature_transform = bool(feature_transform)
        self.point_channels = check_widths(point_channels, "point_channels", min_len=2)
        self.global_channels = global_channels
        self.head_channels = check_widths(head_channels, "head_channels", min_len=1)
        self.dropout = float(dropout)

        # Feature transform between the 2nd and 3rd per-point layers; without it the split
        # is only a naming convenience and the two halves form one plain MLP.
        channels = [3, *self.point_channels, global_channels]
        self.point_mlp1 = MLP(channels[:3], plain_last=False)
        self.point_mlp2 = MLP(channels[2:], plain_last=False)

        self.input_tnet = (
            TNet(3, tnet_point_channels, tnet_head_channels) if self.input_transform else None
        )
        self.feature_tnet = (
            TNet(channels[2], tnet_point_channels, tnet_head_channels)
            if self.feature_transform
            else None
        )

        hidden = len(self.head_channels)
        if self.input_transform or self.feature_transform:
            drops = [self.dropout] * hidden + [0.0]  # pointnet_cls
        else:
            drops = [0.0] * (hidden - 1) + [self.dropout, 0.0]  # pointnet_cls_basic
        self.head = MLP([global_channels, *self.head_channels, num_classes], dropout=drops)
        self.reset_parameters()

    def reset_parameters(self):
        r"""Resets all learnable parameters of the module."""
        self.point_mlp1.reset_parameters()
        self.point_mlp2.reset_parameters()
        if self.input_tnet is not None:
            self.input_tnet.reset_parameters()
        if self.feature_tnet is not None:
            self.feature_tnet.reset_parameters()
        self.head.reset_parameters()

    def forward(
        self,
        pos: Tensor,
        batch: Optional[Tensor] = None,
        return_regularizer: bool = False,
    ) -> Union[Tensor, tuple[Tensor, Tensor]]:
        r"""Forward pass.

        Args:
            pos (torch.Tensor): Point positions :obj:`[N, 3]`.
            batch (torch.Tensor, optional): The batch vector
                :math:`\mathbf{b} \in {\{ 0, \ldots, B-1\}}^N`, sorted; clouds may differ in
                size. (default: :obj:`None`)
            return_regularizer (bool, optional): Also return :math:`\mathcal{R}`, the mean
                over clouds of :math:`\lVert\mathbf{A}\mathbf{A}^{\top}-\mathbf{I}\rVert_F^2`
                for the feature transform (zero without one). (default: :obj:`False`)
        """
        layout = cloud_layout(pos, batch)
        x = pos
        if self.input_tnet is not None:
            x = transform_per_cloud(x, self.input_tnet._predict(x, layout), layout)
        x = self.point_mlp1(x)
        regularizer = pos.new_zeros(())
        if self.feature_tnet is not None:
            transform = self.feature_tnet._predict(x, layout)
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


def classification_loss(
    model: PointNet,
    pos: Tensor,
    batch: Optional[Tensor],
    target: Tensor,
    regularizer_weight: float = 0.001,
) -> Tensor:
    r"""The classification task loss, the cross entropy of :obj:`model`'s logits plus the
    feature-transform regulariser (see :class:`PointNet`):

    .. math::
        \mathcal{L} = \mathrm{CE}(\text{model}(\mathbf{P}), y) + w \, \mathcal{R}.

    Args:
        model (PointNet): The classifier.
        pos (torch.Tensor): Points :obj:`[N, 3]` (complete, sampled or soft-projected).
        batch (torch.Tensor, optional): Their sorted batch vector.
        target (torch.Tensor): The labels :obj:`[B]`.
        regularizer_weight (float, optional): :math:`w`. (default: :obj:`0.001`)

    :rtype: :class:`torch.Tensor` (0-dim)
    """
    logits, regularizer = model(pos, batch, return_regularizer=True)
    return F.cross_entropy(logits, target) + regularizer_weight * regularizer


def _predictions(pred: Tensor, target: Tensor) -> Tensor:
    if not isinstance(pred, Tensor) or not isinstance(target, Tensor):
        raise TypeError("pred and target must be torch.Tensors")
    if target.dim() != 1 or target.dtype.is_floating_point:
        raise ValueError(
            f"target must be a 1-D integer tensor of labels (got shape {list(target.shape)}, "
            f"dtype {target.dtype})"
        )
    if pred.dim() == 2:
        pred = pred.argmax(dim=-1)
    elif pred.dim() != 1 or pred.dtype.is_floating_point:
        raise ValueError(
            f"pred must be logits [B, C] or integer labels [B] (got shape "
            f"{list(pred.shape)}, dtype {pred.dtype})"
        )
    if pred.numel() != target.numel():
        raise ValueError(
            f"pred and target describe different numbers of samples "
            f"({pred.numel()} and {target.numel()})"
        )
    if target.numel() == 0:
        raise ValueError("pred and target are empty")
    return pred


def accuracy(pred: Tensor, target: Tensor) -> Tensor:
    r"""The fraction of correct predictions (the paper's overall instance accuracy).

    Args:
        pred (torch.Tensor): Logits or scores :obj:`[B, C]` (the arg-max is the prediction)
            or predicted labels :obj:`[B]`.
        target (torch.Tensor): True labels :obj:`[B]`.

    :rtype: :class:`torch.Tensor` (0-dim, in :math:`[0, 1]`)
    """
    pred = _predictions(pred, target)
    return (pred == target).float().mean()


def per_class_accuracy(pred: Tensor, target: Tensor, num_classes: Optional[int] = None) -> Tensor:
    r"""The accuracy on the samples of each class (NaN for classes without samples);
    :obj:`per_class_accuracy(...).nanmean()` is the mean class accuracy.

    Args:
        pred (torch.Tensor): Logits :obj:`[B, C]` or predicted labels :obj:`[B]`.
        target (torch.Tensor): True labels :obj:`[B]`.
        num_classes (int, optional): The number of classes. (default: :obj:`None`, from the
            logits' width when given logits, else :obj:`target.max() + 1`)

    :rtype: :class:`torch.Tensor` :obj:`[C]`
    """
    if num_classes is None and isinstance(pred, Tensor) and pred.dim() == 2:
        num_classes = pred.size(1)
    pred = _predictions(pred, target)
    return per_class_mean((pred == target).float(), target, num_classes)


def evaluate_accuracy(
    model: torch.nn.Module,
    loader,
    device: Optional[Union[str, torch.device]] = None,
    sample: Optional[Callable[[Tensor, Tensor], tuple[Tensor, Tensor]]] = None,
) -> float:
    r"""The instance accuracy of :obj:`model` over :obj:`loader`, on the points that
    :obj:`sample(pos, batch) -> (pos, batch)` keeps of each batch (all points when
    :obj:`None`). Correct predictions are counted as integers, so the result is exactly
    :math:`\text{correct} / \text{total}`.

    :rtype: :class:`float`
    """
    correct = total = 0
    with torch.no_grad():
        for data in loader:
            data = data.to(device) if device is not None else data
            pos, batch = (data.pos, data.batch) if sample is None else sample(data.pos, data.batch)
            pred = model(pos, batch).argmax(-1)
            correct += int((pred == data.y).sum())
            total += data.num_graphs
    return correct / max(total, 1)
