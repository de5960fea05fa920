r"""The registration task of SampleNet (paper §4.2): PCRNet, the template/source pairs, the
registration loss, the rotation error, the sampling consistency, the FPS baseline from a
random start, and the evaluation on the points a sampler keeps."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Callable, NamedTuple, Optional, Union

import torch
from torch import Tensor
from torch_geometric.data import Data
from torch_geometric.nn import MLP

from reproduction.tasks.layout import check_widths, cloud_layout, max_pool
from reproduction.tasks.metrics import reduce_values
from reproduction.tasks.rotations import (
    euler_angles_to_matrix,
    quaternion_to_matrix,
    random_euler_angles,
    rotate_points,
    rotation_angle,
)
from tg_samplenet import chamfer_distance
from tg_samplenet.ops import farthest_point_sampling, sample_counts
from tg_samplenet.ops.batch import cloud_sizes
from tg_samplenet.ops.checks import check_positive_int

__all__ = [
    "PCRNet",
    "PCRNetOutput",
    "make_pairs",
    "registration_loss",
    "rotation_errors",
    "sampling_consistency",
    "random_start_fps",
    "evaluate_registration",
]


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
        check_positive_int(global_channels, "global_channels")
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

    def encode(self, pos: Tensor, batch: Optional[Tensor] = None) -> Tensor:
        r"""The global feature :obj:`[B, global_channels]` of each cloud."""
        return max_pool(self.encoder(pos), cloud_layout(pos, batch))

    def forward(
        self,
        template_pos: Tensor,
        source_pos: Tensor,
        template_batch: Optional[Tensor] = None,
        source_batch: Optional[Tensor] = None,
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


def rotation_errors(rotation_est: Tensor, rotation_gt: Tensor) -> Tensor:
    r"""The geodesic angle in degrees between each estimated and true rotation,
    :func:`~reproduction.tasks.rotations.rotation_angle`.

    This is half of what the authors' registration code reports (it doubles the angle; see
    :func:`~reproduction.tasks.rotations.rotation_angle`).

    Args:
        rotation_est (torch.Tensor): Estimated rotations :obj:`[B, 3, 3]`.
        rotation_gt (torch.Tensor): True rotations :obj:`[B, 3, 3]`.

    :rtype: :class:`torch.Tensor` :obj:`[B]`
    """
    if rotation_est.shape != rotation_gt.shape:
        raise ValueError(
            f"rotation_est and rotation_gt must have one shape (got "
            f"{list(rotation_est.shape)} and {list(rotation_gt.shape)})"
        )
    return rotation_angle(rotation_est, rotation_gt, degrees=True)


def sampling_consistency(
    template_pos: Tensor,
    source_pos: Tensor,
    rotation_gt: Tensor,
    template_batch: Optional[Tensor] = None,
    source_batch: Optional[Tensor] = None,
    reduction: str = "mean",
    chamfer: Optional[Callable[..., Tensor]] = None,
) -> Tensor:
    r"""How consistently a sampler picks points on a registration pair: the Chamfer distance
    between the sampled template and the sampled source rotated back into the template's
    frame,

    .. math::
        \mathrm{CD}\big(\mathbf{Q}_0,\; \mathbf{R}_{gt}^{\top}\mathbf{Q}_1\big),

    where the source is the template rotated by :math:`\mathbf{R}_{gt}`. It is zero when
    both clouds are sampled at the same surface points.

    Args:
        template_pos (torch.Tensor): Sampled template points :obj:`[M0, 3]`.
        source_pos (torch.Tensor): Sampled source points :obj:`[M1, 3]`.
        rotation_gt (torch.Tensor): True rotations :obj:`[B, 3, 3]` from template to source.
        template_batch (torch.Tensor, optional): Batch vector of the template samples.
            (default: :obj:`None`)
        source_batch (torch.Tensor, optional): Batch vector of the source samples.
            (default: :obj:`None`)
        reduction (str, optional): :obj:`"mean"` over the pairs or :obj:`"none"` for
            :obj:`[B]`. (default: :obj:`"mean"`)
        chamfer (callable, optional): The Chamfer distance, called as
            :obj:`chamfer(x, y, batch_x, batch_y, reduction="none")` and returning one value
            per cloud. (default: :func:`tg_samplenet.losses.chamfer_distance`)

    :rtype: :class:`torch.Tensor`
    """
    chamfer = chamfer_distance if chamfer is None else chamfer
    if rotation_gt.dim() == 2:
        rotation_gt = rotation_gt.unsqueeze(0)
    num_pairs = 1
    if source_batch is not None and source_batch.numel() > 0:
        num_pairs = int(source_batch[-1]) + 1
    if num_pairs != rotation_gt.size(0):
        raise ValueError(
            f"the source holds {num_pairs} cloud(s) but rotation_gt holds "
            f"{rotation_gt.size(0)} rotation(s)"
        )
    rotated_back = rotate_points(source_pos, rotation_gt.transpose(-1, -2), source_batch)
    distances = chamfer(template_pos, rotated_back, template_batch, source_batch, reduction="none")
    return reduce_values(distances, reduction)


def make_pairs(
    clouds: Sequence[Data],
    rotations_per_shape: int,
    seed: int,
    max_degrees: float = 45.0,
) -> list[Data]:
    r"""Template/source pairs for registration: every cloud is the template of
    :obj:`rotations_per_shape` pairs, whose sources are the template rotated by Euler angles
    (intrinsic :obj:`"xyz"`) drawn uniformly from :math:`[-\theta_{max}, \theta_{max}]`,

    .. math::
        \mathbf{p}_{source} = \mathbf{R}_{gt}\,\mathbf{p}_{template},

    point for point (same order, no translation), as the authors'
    :obj:`QuaternionFixedDataset` makes them. The angles come from a generator seeded with
    :obj:`seed`, so the pairs are the same on every run.

    Args:
        clouds (Sequence[Data]): The shapes, each with :obj:`pos` :obj:`[n, 3]`.
        rotations_per_shape (int): Pairs per shape.
        seed (int): Seed of the rotations.
        max_degrees (float, optional): :math:`\theta_{max}`. (default: :obj:`45.0`)

    :rtype: a list of :class:`~torch_geometric.data.Data` with :obj:`pos` (the template),
        :obj:`source`, :obj:`rotation` :obj:`[1, 3, 3]`, :obj:`angles` :obj:`[1, 3]` (degrees)
        and :obj:`y`, shape by shape; batch them with
        :obj:`DataLoader(..., follow_batch=["source"])`.
    """
    if rotations_per_shape < 1:
        raise ValueError(f"rotations_per_shape must be positive (got {rotations_per_shape})")
    angles = random_euler_angles(len(clouds) * rotations_per_shape, max_degrees, seed)
    rotations = euler_angles_to_matrix(angles)
    pairs = []
    for i, cloud in enumerate(clouds):
        for j in range(i * rotations_per_shape, (i + 1) * rotations_per_shape):
            pairs.append(
                Data(
                    pos=cloud.pos,
                    source=rotate_points(cloud.pos, rotations[j]),
                    rotation=rotations[j][None],
                    angles=torch.rad2deg(angles[j])[None],
                    y=cloud.y,
                )
            )
    return pairs


def registration_loss(
    model: PCRNet,
    template: Tensor,
    source: Tensor,
    template_batch: Tensor,
    source_batch: Tensor,
    rotation_gt: Tensor,
) -> Tensor:
    r"""PCRNet's loss: :math:`\lVert \mathbf{R}_{est}\mathbf{R}_{gt}^{\top} - \mathbf{I}
    \rVert_F^2 + \mathrm{CD}(\mathbf{P}_{source}, \mathbf{R}_{est}\mathbf{P}_{template})`,
    each averaged over the pairs.

    Args:
        model (PCRNet): The registration network.
        template (torch.Tensor): Template points :obj:`[N0, 3]`.
        source (torch.Tensor): Source points :obj:`[N1, 3]`.
        template_batch (torch.Tensor): Batch vector of the template points.
        source_batch (torch.Tensor): Batch vector of the source points.
        rotation_gt (torch.Tensor): True rotations :obj:`[B, 3, 3]`.

    :rtype: :class:`torch.Tensor` (0-dim)
    """
    rotation = model(template, source, template_batch, source_batch).rotation
    eye = torch.eye(3, dtype=rotation.dtype, device=rotation.device)
    frobenius = (rotation @ rotation_gt.transpose(1, 2) - eye).pow(2).sum((1, 2)).mean()
    registered = rotate_points(template, rotation, template_batch)
    return frobenius + chamfer_distance(source, registered, source_batch, template_batch)


def random_start_fps(seed: int) -> Callable[[Tensor, Tensor, int], Tensor]:
    r"""Farthest point sampling of :math:`\min(m, n_i)` points per cloud from a seeded random
    start point, as :obj:`sample(pos, batch, m) -> index`: the authors' registration
    baseline (a random permutation, then FPS). With a fixed start, FPS would pick the very
    same points of a template and of its source, whose points are in the same order, and
    register them perfectly by construction.

    Args:
        seed (int): Seed of the generator of the start points (one generator for every
            call of the returned function).

    :rtype: :obj:`Callable[[Tensor, Tensor, int], Tensor]`
    """
    generator = torch.Generator().manual_seed(seed)

    def sample(pos: Tensor, batch: Tensor, m: int) -> Tensor:
        counts = sample_counts(cloud_sizes(batch, int(batch[-1]) + 1), m)
        return farthest_point_sampling(pos, batch, counts, random_start=True, generator=generator)

    return sample


def evaluate_registration(
    model: PCRNet,
    loader,
    device: Optional[Union[str, torch.device]] = None,
    sample: Optional[Callable[[Tensor, Tensor], tuple[Tensor, Tensor]]] = None,
) -> tuple[Tensor, Tensor]:
    r"""The rotation error (:func:`rotation_errors`, degrees) and sampling consistency
    (:func:`sampling_consistency`) of every pair of :obj:`loader` (made by
    :func:`make_pairs`, batched with :obj:`follow_batch=["source"]`), on the points that
    :obj:`sample(pos, batch) -> (pos, batch)` keeps of both clouds (all points when
    :obj:`None`).

    :rtype: :obj:`(errors [P], consistency [P])` on the CPU
    """
    errors, consistency = [], []
    with torch.no_grad():
        for data in loader:
            data = data.to(device) if device is not None else data
            t_pos, t_batch = data.pos, data.batch
            s_pos, s_batch = data.source, data.source_batch
            if sample is not None:
                t_pos, t_batch = sample(t_pos, t_batch)
                s_pos, s_batch = sample(s_pos, s_batch)
            rotation = model(t_pos, s_pos, t_batch, s_batch).rotation
            errors.append(rotation_errors(rotation, data.rotation))
            consistency.append(
                sampling_consistency(
                    t_pos, s_pos, data.rotation, t_batch, s_batch, reduction="none"
                )
            )
    return torch.cat(errors).cpu(), torch.cat(consistency).cpu()
