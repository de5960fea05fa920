r"""The SampleNet sampler: a PointNet-style simplifier, the soft projection in training and
hard matching at inference."""

from __future__ import annotations

import numbers
import os
from typing import Any, Optional, Union

import torch
from torch import Tensor
from torch_geometric.nn import MLP, global_max_pool

from tg_samplenet.nn.output import SampleNetOutput
from tg_samplenet.nn.recomputed_max_pool import recomputed_max_pool, use_recomputed_pool
from tg_samplenet.nn.soft_projection import SoftProjection, check_sigma, soft_project
from tg_samplenet.ops.batch import cloud_sizes, rank_in_cloud, sample_counts
from tg_samplenet.ops.checks import (
    InputError,
    InputTypeError,
    check_bool,
    check_choice,
    check_cloud_batch,
    check_points,
    check_positive_int,
    readable,
)
from tg_samplenet.ops.matching import MATCHINGS

__all__ = ["SampleNet"]


class SampleNet(torch.nn.Module):
    r"""The learned point-cloud sampler from the `"SampleNet: Differentiable Point Cloud
    Sampling" <https://arxiv.org/abs/1912.03663>`_ paper, on PyG batches.

    A PointNet-style network simplifies each cloud :math:`\mathbf{P}_i` (:math:`n_i` points)
    to :math:`m` points :math:`\mathbf{Q}_i = f_\theta(\mathbf{P}_i)`: a per-point MLP
    3-64-64-64-128-128 (BatchNorm, ReLU), a global max pool per cloud and an MLP
    256-256-256-:math:`3m`. Then

    - in **training** mode, the :class:`~tg_samplenet.SoftProjection` maps each
      :math:`\mathbf{q}` to a weighted average of its :math:`k` nearest input points
      (differentiable), and
    - in **eval** mode, each :math:`\mathbf{q}` is matched to its nearest input point,
      repeats are dropped per cloud (first occurrence kept) and farthest point sampling
      continued from the matched set completes the sample
      (:func:`~tg_samplenet.ops.hard_sample`).

    Each cloud yields :math:`\min(m, n_i)` points, or :math:`\lceil n_i \cdot r \rceil` with
    :obj:`ratio` (a prefix of the ordered output; in training at most :math:`m`).

    .. code-block:: python

        sampler = SampleNet(num_out_points=32)
        out = sampler(data.pos, data.batch)     # training: out.pos is differentiable
        sampler.eval()
        out = sampler(data.pos, data.batch)     # eval: out.index selects input points
        index = sampler.sample(data.pos, data.batch, ratio=0.25)  # any mode, no gradient

    Args:
        num_out_points (int): The number :math:`m` of simplified points per cloud.
        k (int, optional): Neighbours of the soft projection. (default: :obj:`7`)
        skip_projection (bool, optional): S-NET mode: the task consumes the simplified
            points in training. (default: :obj:`False`)
        complete_fps (bool, optional): Complete de-duplicated samples with farthest point
            sampling; if :obj:`False`, a cloud can get fewer points. (default: :obj:`True`)
        progressive (bool, optional): SampleNet-Progressive, trained with
            :func:`~tg_samplenet.progressive_loss` so that every prefix of its output is a
            good sample; give it :math:`m = n`. (default: :obj:`False`)
        matching (str, optional): The inference step: :obj:`"nearest"`
            (:func:`~tg_samplenet.ops.hard_sample`, the paper's) or :obj:`"distinct"`
            (:func:`~tg_samplenet.ops.distinct_sample`). (default: :obj:`"nearest"`)
        max_matched (int, optional): With :obj:`matching="distinct"`, match at most this
            many simplified points per cloud, then farthest point sampling.
            (default: :obj:`None`)
        initial_temperature (float, optional): Initial temperature :math:`t`.
            (default: :obj:`1.0`)
        min_sigma (float, optional): Lower bound added to :math:`\sigma = t^2`.
            (default: :obj:`1e-4`)
        learn_temperature (bool, optional): Learn :math:`t` (else it follows a fixed
            profile). (default: :obj:`True`)
        residual_gradient (bool, optional): In training, give the task
            :math:`\Pi(\mathbf{q}) + \mathbf{q} - \operatorname{sg}(\mathbf{q})`: the soft
            projection's values with Jacobian :math:`\mathbf{I} + \partial\Pi /
            \partial\mathbf{q}` (beyond the paper). (default: :obj:`False`)
        straight_through (bool, optional): In training, give the task the eval-mode sample
            with the soft projection's gradient (a `straight-through estimator
            <https://arxiv.org/abs/1308.3432>`_). (default: :obj:`False`)
        head_norm (bool, optional): BatchNorm in the head's hidden layers; without it a
            jointly trained sampler samples alike in both modes. (default: :obj:`True`)
        point_channels (tuple of int, optional): Widths of the per-point MLP.
            (default: :obj:`(64, 64, 64, 128, 128)`)
        head_channels (tuple of int, optional): Widths of the hidden layers of the head.
            (default: :obj:`(256, 256, 256)`)

    Shapes:
        - **input:** points :math:`(N, 3)`, batch vector :math:`(N)` (optional)
        - **output:** :class:`SampleNetOutput` with :obj:`pos` :math:`(M, 3)`, :obj:`index`
          and :obj:`batch` :math:`(M)`, :obj:`simplified` :math:`(B \cdot m, 3)`
    """

    def __init__(
        self,
        num_out_points: int,
        k: int = 7,
        skip_projection: bool = False,
        complete_fps: bool = True,
        progressive: bool = False,
        matching: str = "nearest",
        max_matched: Optional[int] = None,
        initial_temperature: float = 1.0,
        min_sigma: float = 1e-4,
        learn_temperature: bool = True,
        residual_gradient: bool = False,
        straight_through: bool = False,
        head_norm: bool = True,
        point_channels: tuple[int, ...] = (64, 64, 64, 128, 128),
        head_channels: tuple[int, ...] = (256, 256, 256),
    ):
        super().__init__()
        num_out_points = check_positive_int(num_out_points, "num_out_points")
        k = check_positive_int(k, "k")
        for flag, name in [
            (skip_projection, "skip_projection"),
            (complete_fps, "complete_fps"),
            (progressive, "progressive"),
            (learn_temperature, "learn_temperature"),
            (residual_gradient, "residual_gradient"),
            (straight_through, "straight_through"),
            (head_norm, "head_norm"),
        ]:
            check_bool(flag, name)
        check_choice(matching, "matching", MATCHINGS)
        if max_matched is not None:
            max_matched = check_positive_int(max_matched, "max_matched")
            if matching != "distinct":
                raise InputError("max_matched", "max_matched needs matching='distinct'")
        point_channels = _check_channels(point_channels, "point_channels", allow_empty=False)
        head_channels = _check_channels(head_channels, "head_channels", allow_empty=True)
        self.num_out_points = num_out_points
        self.k = k
        self.skip_projection = skip_projection
        self.complete_fps = complete_fps
        self.progressive = progressive
        self.matching = matching
        self.max_matched = max_matched
        self.residual_gradient = residual_gradient
        self.straight_through = straight_through
        self.head_norm = head_norm
        self.point_channels = tuple(point_channels)
        self.head_channels = tuple(head_channels)
        self._config = dict(
            num_out_points=num_out_points,
            k=k,
            skip_projection=skip_projection,
            complete_fps=complete_fps,
            progressive=progressive,
            matching=matching,
            max_matched=max_matched,
            initial_temperature=initial_temperature,
            min_sigma=min_sigma,
            learn_temperature=learn_temperature,
            residual_gradient=residual_gradient,
            straight_through=straight_through,
            head_norm=head_norm,
            point_channels=list(point_channels),
            head_channels=list(head_channels),
        )

        # allow_single_element: a batch of one cloud still trains (running statistics).
        self.point_mlp = MLP(
            [3, *point_channels],
            norm="batch_norm",
            norm_kwargs={"allow_single_element": True},
            plain_last=False,
        )
        self.head = MLP(
            [point_channels[-1], *head_channels, 3 * num_out_points],
            norm="batch_norm" if head_norm else None,
            norm_kwargs={"allow_single_element": True} if head_norm else None,
        )
        self.projection = SoftProjection(k, initial_temperature, min_sigma, learn_temperature)
        self.reset_parameters()

    def reset_parameters(self):
        self.point_mlp.reset_parameters()
        self.head.reset_parameters()
        self.projection.reset_parameters()

    @property
    def config(self) -> dict[str, Any]:
        r"""The constructor arguments, enough to rebuild this sampler."""
        return dict(self._config)

    def simplify(self, pos: Tensor, batch: Tensor, num_clouds: int) -> Tensor:
        r"""The simplification network: :math:`m` points per cloud, :obj:`[B, m, 3]` (on
        large inputs in memory that does not grow with the number of points)."""
        if self.training and use_recomputed_pool(pos.size(0), self.point_mlp):
            h = recomputed_max_pool(self.point_mlp, pos, batch, num_clouds)
        elif self.training:
            h = global_max_pool(self.point_mlp(pos), batch, size=num_clouds)
        else:
            weights, biases = _folded(self.point_mlp)
            h = torch.ops.tg_samplenet.max_pooled_mlp(pos, batch, num_clouds, weights, biases)
            weights, biases = _folded(self.head)
            for weight, bias in zip(weights, biases):
                h = torch.addmm(bias, h, weight).relu()
            return self.head.lins[-1](h).view(num_clouds, self.num_out_points, 3)
        return self.head(h).view(num_clouds, self.num_out_points, 3)

    def forward(
        self,
        pos: Tensor,
        batch: Optional[Tensor] = None,
        ratio: Optional[float] = None,
        num_samples: Optional[int] = None,
        num_clouds: Optional[int] = None,
    ) -> SampleNetOutput:
        r"""
        Args:
            pos (torch.Tensor): Points :obj:`[N, 3]` of the sampler's dtype and device.
            batch (torch.Tensor, optional): Sorted batch vector
                :math:`\mathbf{b} \in {\{ 0, \ldots, B-1\}}^N`. (default: :obj:`None`)
            ratio (float, optional): Sample :math:`\lceil n_i \cdot r \rceil` points per cloud,
                like :func:`torch_geometric.nn.fps`. (default: :obj:`None`)
            num_samples (int, optional): Sample :math:`\min(c, n_i)` points per cloud.
                (default: :obj:`None`, :obj:`num_out_points`)
            num_clouds (int, optional): The number of clouds :math:`B`. (default: :obj:`None`)
        """
        batch, counts = self._check(pos, batch, ratio, num_samples, num_clouds)
        return self._run(pos, batch, counts)

    def sample(
        self,
        pos: Tensor,
        batch: Optional[Tensor] = None,
        ratio: Optional[float] = None,
        num_samples: Optional[int] = None,
        num_clouds: Optional[int] = None,
    ) -> Tensor:
        r"""The indices of the eval-mode sample without gradient, whatever the sampler's mode;
        points of any floating dtype are sampled in the sampler's dtype. Arguments as
        :meth:`forward`'s.

        :rtype: :class:`torch.LongTensor` :obj:`[M]`: unique within each cloud, grouped by
            cloud in batch order
        """
        if isinstance(pos, Tensor) and torch.is_floating_point(pos):
            pos = pos.detach().to(self.head.lins[-1].weight.dtype)
        batch, counts = self._check(pos, batch, ratio, num_samples, num_clouds)
        was_training = self.training
        try:
            with torch.no_grad():
                return self.eval()._run(pos, batch, counts).index
        finally:
            self.train(was_training)

    def _check(self, pos, batch, ratio, num_samples, num_clouds) -> tuple[Tensor, Tensor]:
        check_points(pos, "pos")
        batch, B = check_cloud_batch(batch, pos, "batch", num_clouds)
        param = self.head.lins[-1].weight
        if pos.device != param.device:
            raise InputError(
                "pos",
                f"pos is on {pos.device} but the sampler is on {param.device}: move the "
                "model (model.to(device)) and its inputs to the same device",
            )
        if pos.dtype != param.dtype:
            raise InputTypeError("pos", f"pos is {pos.dtype} but the sampler is {param.dtype}")
        if num_samples is not None:
            num_samples = check_positive_int(num_samples, "num_samples")
        counts = sample_counts(cloud_sizes(batch, B), num_samples or self.num_out_points, ratio)
        return batch, counts

    def _run(self, pos: Tensor, batch: Tensor, counts: Tensor) -> SampleNetOutput:
        B, m = counts.numel(), self.num_out_points
        # In eval mode the network only picks indices: no autograd history for it.
        with torch.set_grad_enabled(self.training and torch.is_grad_enabled()):
            simplified = self.simplify(pos, batch, B).reshape(-1, 3)
        if readable(simplified) and not bool(torch.isfinite(simplified).all()):
            raise InputError(
                "pos",
                "pos: the simplification network gives NaN or infinite points for these "
                f"clouds (largest |coordinate| {float(pos.abs().max()):.3g}): SampleNet expects "
                "clouds scaled like its training data (e.g. into the unit sphere) and finite "
                "weights",
            )
        simplified_batch = torch.arange(B, device=pos.device).repeat_interleave(m)
        # Empty clouds have nothing to project onto, match with or be compared to.
        present = select((cloud_sizes(batch, B) > 0)[simplified_batch])
        simplified, simplified_batch = simplified[present], simplified_batch[present]
        parts = dict(simplified=simplified, simplified_batch=simplified_batch)

        if not self.training:
            index = torch.ops.tg_samplenet.match_sample(
                pos.detach(),
                batch,
                simplified,
                simplified_batch,
                counts,
                self.matching,
                self.max_matched,
                self.complete_fps,
            )
            if not self.complete_fps:  # de-duplication may leave a cloud short
                counts = cloud_sizes(batch[index], B)
            return SampleNetOutput(pos[index], index, batch[index], counts, **parts)

        requested, counts = counts, counts.clamp(max=m)
        keep = select(rank_in_cloud(simplified_batch, B) < counts[simplified_batch])
        query, query_batch = simplified[keep], simplified_batch[keep]
        if self.skip_projection:
            index = torch.ops.tg_samplenet.knn(pos, query, 1, batch, query_batch, B)[0][:, 0]
            return SampleNetOutput(query, index, query_batch, counts, **parts)
        sigma = self.projection.sigma
        check_sigma(sigma)
        proj = soft_project(pos, query, batch, query_batch, B, self.k, sigma)
        index = proj.neighbors.gather(1, proj.weights.argmax(1, keepdim=True)).view(-1)
        projected = proj.pos
        if self.residual_gradient:  # the same values, gradient I + dPi/dq
            projected = projected + (query - query.detach())
        if self.straight_through:
            return self._straight_through(pos, batch, requested, proj, projected, sigma, parts)
        return SampleNetOutput(
            projected, index, query_batch, counts, **parts,
            weights=proj.weights, neighbors=proj.neighbors, sigma=sigma,
        )  # fmt: skip

    def _straight_through(self, pos, batch, counts, proj, projected, sigma, parts):
        # The eval-mode sample; each point takes the gradient of the first query whose
        # nearest input point it is (none for the farthest point completion).
        with torch.no_grad():
            index = torch.ops.tg_samplenet.match_sample(
                pos.detach(), batch, parts["simplified"].detach(), parts["simplified_batch"],
                counts, self.matching, self.max_matched, True,
            )  # fmt: skip
            M = proj.neighbors.size(0)
            owner = torch.full_like(batch, M).scatter_reduce(
                0, proj.neighbors[:, 0], torch.arange(M, device=pos.device), "amin"
            )[index]
            found = owner < M
            rows = owner.clamp(max=max(M - 1, 0))
            one_hot = proj.weights.new_zeros((index.numel(), proj.weights.size(1)))
            one_hot[:, 0] = 1.0
        weights = torch.where(found.unsqueeze(1), proj.weights[rows], one_hot)
        neighbors = torch.where(found.unsqueeze(1), proj.neighbors[rows], index.unsqueeze(1))
        soft = torch.where(found.unsqueeze(1), projected[rows], pos[index])
        return SampleNetOutput(
            pos[index] + (soft - soft.detach()), index, batch[index], counts, **parts,
            weights=weights, neighbors=neighbors, sigma=sigma, straight_through=True,
        )  # fmt: skip

    def save(self, path: Union[str, os.PathLike], metadata: Optional[dict[str, Any]] = None):
        r"""Saves the configuration and weights to :obj:`path` atomically, with
        :obj:`metadata` (plain Python values) that :meth:`load` gives back."""
        from tg_samplenet.io import atomic_save

        state = {"config": self.config, "state_dict": self.state_dict()}
        if metadata:
            state["metadata"] = dict(metadata)
        atomic_save(state, path)

    @classmethod
    def load(cls, path: Union[str, os.PathLike], map_location: Any = "cpu") -> SampleNet:
        r"""Rebuilds a sampler saved with :meth:`save`, in **eval mode**, with the saved dtype
        and :obj:`metadata` attribute.

        Raises:
            FileNotFoundError: If :obj:`path` does not exist.
            InputError: If the file does not hold a SampleNet.
        """
        from tg_samplenet.io import load_checkpoint

        state = load_checkpoint(path, map_location=map_location)
        if not isinstance(state, dict) or "config" not in state or "state_dict" not in state:
            raise InputError("path", f"{path} is not a SampleNet file written by SampleNet.save()")
        if not isinstance(state["config"], dict):
            raise InputError("path", f"{path} holds no SampleNet configuration (a dict)")
        try:
            sampler = cls(**state["config"])
        except (TypeError, ValueError) as error:
            raise InputError(
                "path", f"{path} holds a configuration that builds no SampleNet: {error}"
            ) from error
        try:
            # assign: keep the saved tensors' dtype and device.
            sampler.load_state_dict(state["state_dict"], assign=True)
        except (RuntimeError, TypeError, ValueError, AttributeError) as error:
            reason = str(error).splitlines()[0]
            raise InputError(
                "path", f"{path} holds weights that do not fit its configuration: {reason}"
            ) from error
        sampler.metadata = dict(state.get("metadata") or {})
        return sampler.eval()

    def __repr__(self) -> str:
        defaults = dict(
            skip_projection=False, progressive=False, complete_fps=True,
            residual_gradient=False, straight_through=False, head_norm=True,
            matching="nearest", max_matched=None,
        )  # fmt: skip
        extra = "".join(
            f", {name}={getattr(self, name)!r}"
            for name, default in defaults.items()
            if getattr(self, name) != default
        )
        return f"{self.__class__.__name__}({self.num_out_points}, k={self.k}{extra})"


def _check_channels(channels: Any, name: str, allow_empty: bool) -> tuple[int, ...]:
    if isinstance(channels, (str, bytes)) or not hasattr(channels, "__iter__"):
        raise InputTypeError(
            name, f"{name} must be a sequence of ints (got {type(channels).__name__})"
        )
    channels = tuple(channels)
    if not allow_empty and len(channels) == 0:
        raise InputError(name, f"{name} must hold at least one layer width (got ())")
    for width in channels:
        if isinstance(width, bool) or not isinstance(width, numbers.Integral) or width < 1:
            raise InputError(name, f"{name} must hold positive ints (got {channels})")
    return tuple(int(width) for width in channels)


def _folded(mlp: MLP) -> tuple[list[Tensor], list[Tensor]]:
    # The eval-mode hidden layers of a PyG MLP with BatchNorm folded in: x @ weight + bias.
    weights, biases = [], []
    for lin, norm in zip(mlp.lins, mlp.norms):
        if not hasattr(norm, "module"):  # no normalisation
            weights.append(lin.weight.t().contiguous())
            biases.append(lin.bias)
            continue
        bn = norm.module
        scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
        weights.append((lin.weight * scale.unsqueeze(1)).t().contiguous())
        biases.append((lin.bias - bn.running_mean) * scale + bn.bias)
    return weights, biases


def select(mask: Tensor) -> Tensor:
    # mask.nonzero() as an operator whose size the compiler leaves symbolic.
    return torch.ops.tg_samplenet.select(mask)
