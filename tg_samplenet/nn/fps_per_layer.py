r"""One fps-signature callable that gives each layer of a model its own sampler."""

from __future__ import annotations

from typing import Callable, Optional

import torch
from torch import Tensor

from tg_samplenet.ops.checks import InputTypeError

__all__ = ["FPSPerLayer"]


class FPSPerLayer(torch.nn.Module):
    r"""One callable with :func:`torch_geometric.nn.fps`'s signature that calls, inside each
    of the given layers, that layer's own sampler: for models whose layers all call one
    module-level :obj:`fps`.

    .. code-block:: python

        import my_pointnet2  # whose SAModule.forward calls fps(pos, batch, ratio=...)

        my_pointnet2.fps = FPSPerLayer({
            model.sa1_module: SampleNetFPS(SampleNet.load("sa1.sampler.pt")),
            model.sa2_module: SampleNetFPS(SampleNet.load("sa2.sampler.pt")),
        })

    It finds the calling layer by forward hooks (the innermost running one wins), which
    :meth:`remove` takes off.

    Args:
        layers (dict): Each layer (:class:`torch.nn.Module`) and the fps-signature callable
            it should call.
        default (callable, optional): What a call outside all of them runs, e.g.
            :func:`tg_samplenet.ops.fps`. (default: :obj:`None`: such a call raises)

    Shapes:
        - **input:** points :math:`(N, 3)`, batch vector :math:`(N)` (optional)
        - **output:** indices, as the running layer's sampler returns them
    """

    def __init__(
        self,
        layers: dict[torch.nn.Module, Callable[..., Tensor]],
        default: Optional[Callable[..., Tensor]] = None,
    ):
        super().__init__()
        if not isinstance(layers, dict) or not layers:
            raise InputTypeError("layers", "layers must be a non-empty dict {layer: fps callable}")
        for layer, sample in layers.items():
            if not isinstance(layer, torch.nn.Module) or not callable(sample):
                raise InputTypeError(
                    "layers",
                    "layers must map modules to fps callables (got "
                    f"{type(layer).__name__}: {type(sample).__name__})",
                )
        if default is not None and not callable(default):
            raise InputTypeError(
                "default", f"default must be callable (got {type(default).__name__})"
            )
        self.samplers = torch.nn.ModuleList(
            s for s in layers.values() if isinstance(s, torch.nn.Module)
        )
        # Plain lists: the model's layers must not become submodules.
        self._layers: list[torch.nn.Module] = list(layers)
        self._routes: list[Callable[..., Tensor]] = list(layers.values())
        self._running: list[int] = []
        self._default = default
        self._hooks = []
        for i, layer in enumerate(layers):
            self._hooks.append(layer.register_forward_pre_hook(lambda *_, i=i: self._enter(i)))
            self._hooks.append(
                layer.register_forward_hook(lambda *_: self._leave(), always_call=True)
            )

    def _enter(self, route: int):
        self._running.append(route)

    def _leave(self):
        self._running.pop()

    @property
    def routes(self) -> dict[torch.nn.Module, Callable[..., Tensor]]:
        r"""Each layer and the fps-signature callable it calls."""
        return dict(zip(self._layers, self._routes))

    @property
    def default(self) -> Optional[Callable[..., Tensor]]:
        r"""What a call outside all the layers runs."""
        return self._default

    def remove(self):
        r"""Takes the hooks off the layers."""
        for hook in self._hooks:
            hook.remove()
        self._hooks.clear()

    def forward(
        self,
        x: Tensor,
        batch: Optional[Tensor] = None,
        ratio: float = 0.5,
        random_start: bool = True,
        batch_size: Optional[int] = None,
    ) -> Tensor:
        r"""Calls the running layer's sampler (or :obj:`default`) with the same arguments.

        :rtype: :class:`torch.LongTensor`
        """
        if self._running:
            sample = self._routes[self._running[-1]]
        elif self._default is not None:
            sample = self._default
        else:
            raise RuntimeError(
                "FPSPerLayer was called outside all of its layers and has no default "
                "(pass default=fps to sample there with plain farthest point sampling)"
            )
        return sample(x, batch, ratio, random_start, batch_size)

    def __repr__(self) -> str:
        return f"{self.__class__.__name__}({len(self._routes)} layers)"
