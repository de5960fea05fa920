r"""A trained SampleNet behind :func:`torch_geometric.nn.fps`'s signature, as a module of the
model it serves, so existing PyG code (PointNet++'s :obj:`SAModule`, Point Transformer's
:obj:`TransitionDown`, ...) can swap :obj:`fps` for a learned sampler unchanged."""

from __future__ import annotations

import warnings
from typing import Optional

import torch
from torch import Tensor

from tg_samplenet.nn.sampler import SampleNet
from tg_samplenet.ops.checks import InputTypeError

__all__ = ["SampleNetFPS"]

# Positions of these dtypes are sampled in float32: a sampler returns indices, not values,
# and 3 significant digits turn near neighbours into ties that matching cannot break.
_LOW_PRECISION = (torch.float16, torch.bfloat16)


class SampleNetFPS(torch.nn.Module):
    r"""A trained :class:`~tg_samplenet.SampleNet` (`"SampleNet: Differentiable Point Cloud
    Sampling" <https://arxiv.org/abs/1912.03663>`_) with the signature of
    :func:`torch_geometric.nn.fps`, as a :class:`torch.nn.Module`: its sampler is a
    submodule, so it is in the model's :obj:`state_dict`, moves with :obj:`model.to(device)`
    and casts with :obj:`model.double()`.

    .. code-block:: python

        from tg_samplenet import SampleNet, SampleNetFPS

        fps = SampleNetFPS(SampleNet.load("sampler.pt"))
        idx = fps(pos, batch, ratio=0.25)   # as torch_geometric.nn.fps(pos, batch, 0.25)

        # A layer that calls self.fps: one sampler per layer.
        model.sa1_module.fps = SampleNetFPS(SampleNet.load("sa1.pt"))
        model.sa2_module.fps = SampleNetFPS(SampleNet.load("sa2.pt"))

        # Layers that all call one module-level fps (PyG's pointnet2_classification.py):
        that_module.fps = FPSPerLayer({model.sa1_module: SampleNetFPS(...),
                                       model.sa2_module: SampleNetFPS(...)})

    It runs the sampler in eval mode without gradients, whatever mode the model is in, and
    returns its hard-sampled indices: unique within each cloud, grouped by cloud in batch
    order, and exactly as many per cloud as :func:`~torch_geometric.nn.fps` returns
    (:math:`\lceil n_i \cdot r \rceil`, computed in float32). SampleNet is deterministic, so
    :obj:`random_start` has no effect.

    Positions may be float16, bfloat16, float32 or float64, as for
    :func:`~torch_geometric.nn.fps`; they are cast to the sampler's dtype. They must be
    3-D points :obj:`[N, 3]` (:func:`~torch_geometric.nn.fps` takes any :obj:`[N, F]`; a
    sampler learned on 3-D clouds cannot sample other features). The sampler is
    float32 or float64: :obj:`model.half()` and :obj:`model.bfloat16()` leave it in float32
    (a sampler returns indices, and half precision turns near neighbours into ties).

    A sampler of :math:`m` outputs has learned :math:`m` points per cloud; past them the
    sample is completed by plain farthest point sampling. Asking for more warns (once per
    requested size). A SampleNet-Progressive sampler trained on :math:`n`-point clouds has
    :math:`m = n` and serves every ratio.

    **One sampler per set-abstraction layer.** Each layer samples clouds of another size
    (PointNet++ samples :math:`n`, then :math:`n/2`, ... points), so each gets its own
    :class:`SampleNetFPS` (:class:`FPSPerLayer` where the layers share one :obj:`fps`).
    Train them from the input inwards, against the frozen model, with
    :func:`tg_samplenet.fit_sampler`:

    1. a progressive sampler of :math:`m = n` on the input clouds, with the model's task
       loss on the sampled points; swap it in for the first layer's :obj:`fps`;
    2. run the model up to the inner layer (under :obj:`torch.no_grad()`, the first sampler
       swapped in) and keep what that layer is given, :obj:`(x, pos, batch)`, as one
       :obj:`Data(x=..., pos=..., y=...)` per cloud; a progressive sampler of :math:`m` = that
       layer's cloud size trains on them with a :obj:`task_loss(out, data)` that runs the
       rest of the frozen model on the sampler's centres: the layer's neighbour search
       around :obj:`out.pos` (soft-projected in training), its convolution of
       :obj:`data.x` with the centres' features :obj:`out.carry(data.x)`, then the tail;
    3. repeat for the deeper layers.

    :class:`~tg_samplenet.SampleNet` used directly inside the layers instead trains all
    samplers jointly with the network (:obj:`examples/pointnet2_samplenet.py`).

    Args:
        sampler (SampleNet): A trained sampler, in whichever mode (:meth:`SampleNet.load`
            returns a new module, in training mode): it is evaluated in eval mode regardless.

    Shapes:
        - **input:** points :math:`(N, 3)`, batch vector :math:`(N)` (optional)
        - **output:** indices :math:`(\sum_i \lceil n_i \cdot r \rceil)`
    """

    def __init__(self, sampler: SampleNet):
        super().__init__()
        if not isinstance(sampler, SampleNet):
            raise InputTypeError(
                "sampler", f"SampleNetFPS wraps a SampleNet (got {type(sampler).__name__})"
            )
        self.sampler = sampler
        self._warned_sizes: set[int] = set()
        self._keep_sampler_precision()

    def reset_parameters(self):
        self.sampler.reset_parameters()

    def _apply(self, fn, recurse: bool = True):
        super()._apply(fn, recurse)
        self._keep_sampler_precision()
        return self

    def _keep_sampler_precision(self):
        if next(self.sampler.parameters()).dtype in _LOW_PRECISION:
            self.sampler.float()

    # Spelled out (not *args) so that inspect.signature shows fps's signature; the warning
    # is raised here so that it points at the caller's line.
    def __call__(
        self,
        x: Tensor,
        batch: Optional[Tensor] = None,
        ratio: float = 0.5,
        random_start: bool = True,
        batch_size: Optional[int] = None,
    ) -> Tensor:
        index = super().__call__(x, batch, ratio, random_start, batch_size)
        if index.numel() > 0:
            most = index.numel() if batch is None else int(torch.bincount(batch[index]).max())
            self._warn_past_learned(most, ratio)
        return index

    def forward(
        self,
        x: Tensor,
        batch: Optional[Tensor] = None,
        ratio: float = 0.5,
        random_start: bool = True,
        batch_size: Optional[int] = None,
    ) -> Tensor:
        r"""
        Args:
            x (torch.Tensor): Points :math:`\mathbf{X} \in \mathbb{R}^{N \times 3}`.
            batch (torch.Tensor, optional): Sorted batch vector
                :math:`\mathbf{b} \in {\{ 0, \ldots, B-1\}}^N`. (default: :obj:`None`)
            ratio (float, optional): Sampling ratio in :math:`(0, 1]`. (default: :obj:`0.5`)
            random_start (bool, optional): Ignored (kept for signature compatibility).
                (default: :obj:`True`)
            batch_size (int, optional): The number of clouds :math:`B`, if some trailing ones
                are empty. (default: :obj:`None`)

        :rtype: :class:`torch.LongTensor`
        """
        return self.sampler.sample(x, batch, ratio=ratio, num_clouds=batch_size)

    def _warn_past_learned(self, asked: int, ratio: float):
        learned = self.sampler.num_out_points
        if asked > learned and asked not in self._warned_sizes:
            self._warned_sizes.add(asked)
            warnings.warn(
                f"SampleNetFPS: asked for {asked} points per cloud (ratio={ratio}) from a "
                f"sampler that learned {learned}; the other {asked - learned} are plain "
                f"farthest point sampling. Train a sampler of more outputs (a progressive one "
                f"of m = n serves every ratio).",
                UserWarning,
                stacklevel=3,
            )

    def __repr__(self) -> str:
        return f"{self.__class__.__name__}({self.sampler})"
