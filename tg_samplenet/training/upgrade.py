r"""Learned samplers swapped into the :obj:`fps` layers of a trained model and fine-tuned there
on the model's task loss."""

from __future__ import annotations

import inspect
import os
from dataclasses import asdict
from types import ModuleType
from typing import Any, Callable, Iterable, Optional, Union

import torch
from torch import Tensor

from tg_samplenet.losses import chamfer_distance, samplenet_loss
from tg_samplenet.nn.fps_drop_in import SampleNetFPS
from tg_samplenet.nn.fps_per_layer import FPSPerLayer
from tg_samplenet.nn.sampler import SampleNet
from tg_samplenet.ops.checks import (
    InputError,
    InputTypeError,
    check_bool,
    check_int,
    check_number,
    check_positive_int,
)
from tg_samplenet.ops.farthest_point import farthest_point_sampling
from tg_samplenet.training.fit import LossWeights
from tg_samplenet.training.loop import fit, learning_rate_schedule, training_step

__all__ = ["upgrade_fps"]


class _CentresInTraining(torch.nn.Module):
    # A layer's fps in training: the indices its pre-hook sampled for these very points.
    def __init__(self, sampler: SampleNet):
        super().__init__()
        self.sampler = sampler
        self.pending: Optional[tuple[Tensor, Tensor]] = None

    def forward(self, x, batch=None, ratio=0.5, random_start=True, batch_size=None):
        if self.pending is not None and self.pending[0] is x:
            index, self.pending = self.pending[1], None
            return index
        return self.sampler.sample(x, batch, ratio=ratio, num_clouds=batch_size)


def _install(layer: torch.nn.Module, fps: torch.nn.Module, module: Optional[ModuleType]):
    # Puts fps where the layer finds it: its own attribute, or its module's global.
    if module is None:
        if isinstance(getattr(layer, "fps", None), torch.nn.Module):
            del layer.fps  # a submodule: a plain attribute cannot replace it
        layer.fps = fps
    else:
        routes = module.fps if isinstance(module.fps, FPSPerLayer) else None
        mapping = {} if routes is None else routes.routes
        default = module.fps if routes is None else routes.default
        if routes is not None:
            routes.remove()
        mapping[layer] = fps
        module.fps = FPSPerLayer(mapping, default=default)


def upgrade_fps(
    model: torch.nn.Module,
    samplers: dict[torch.nn.Module, SampleNet],
    task_loss: Callable[[Any], Tensor],
    loader: Iterable,
    *,
    epochs: int,
    imitate_epochs: int = 0,
    lr: float = 1e-3,
    module: Optional[ModuleType] = None,
    train_model: bool = False,
    model_lr: float = 1e-4,
    loss_weights: Optional[LossWeights] = None,
    checkpoint: Optional[Union[str, os.PathLike]] = None,
    device: Optional[Union[str, torch.device]] = None,
    progress: bool = True,
) -> dict[torch.nn.Module, SampleNetFPS]:
    r"""Swaps a learned sampler (`"SampleNet: Differentiable Point Cloud Sampling"
    <https://arxiv.org/abs/1912.03663>`_) into each given layer of a trained model in place
    of its farthest point sampling, fine-tunes the samplers (and, with :obj:`train_model`,
    the model) on the model's task loss, and leaves each layer calling
    :class:`~tg_samplenet.SampleNetFPS`.

    A layer's :obj:`forward` takes arguments :obj:`pos` (and :obj:`batch`) and calls
    :obj:`self.fps` (or :obj:`module.fps`) with its :obj:`ratio` attribute. In training, the
    layer's fps returns its sampler's straight-through centres, so that whatever the layer
    does with :obj:`pos[idx]` trains the sampler. The loss is

    .. math::
        L = L_{task} + \sum_{\text{layers}} \left( \alpha L_s(Q, P) + \lambda \sigma \right)

    A sampler of fewer outputs than a layer's centres completes them by farthest point
    sampling. With :obj:`imitate_epochs`, the samplers first learn to imitate farthest point
    sampling (the Chamfer distance to as many farthest points); the model then runs only
    until every given layer has sampled its input.

    .. code-block:: python

        model.sa1_module.ratio = 1 / 8  # fewer centres: a cheaper model
        upgrade_fps(
            model,
            {model.sa1_module: SampleNet(64)},  # 64 learned of 128 centres per cloud
            lambda data: F.nll_loss(model(data.pos, data.batch), data.y),
            train_loader,
            epochs=5,
            module=pointnet2_classification,  # its layers call a module-level fps
            train_model=True,
        )
        # model.sa1_module now samples with the learned sampler, without gradients

    Args:
        model (torch.nn.Module): The trained model; its task loss runs it.
        samplers (dict): Each layer (a submodule of :obj:`model`) and its
            :class:`~tg_samplenet.SampleNet`, made :obj:`straight_through` here.
        task_loss (callable): :obj:`task_loss(data) -> Tensor`, the model's loss on a batch.
        loader (iterable): The training batches.
        epochs (int): Epochs of fine-tuning.
        imitate_epochs (int, optional): Epochs in which the samplers alone imitate farthest
            point sampling first, at their full rate, counted in :obj:`epochs`; the rest
            follow a cosine decay of every learning rate. (default: :obj:`0`)
        lr (float, optional): Adam's learning rate of the samplers. (default: :obj:`1e-3`)
        module (types.ModuleType, optional): The module whose global :obj:`fps` the layers
            call; :obj:`None` when they call :obj:`self.fps`. (default: :obj:`None`)
        train_model (bool, optional): Fine-tune the model too (at :obj:`model_lr`); else it
            stays frozen in eval mode. (default: :obj:`False`)
        model_lr (float, optional): The model's learning rate. (default: :obj:`1e-4`)
        loss_weights (LossWeights, optional): :math:`\alpha, \lambda, \beta, \gamma,
            \delta`. (default: :obj:`None`, the authors' classification values)
        checkpoint (str or Path, optional): Resumable training state. (default: :obj:`None`)
        device (torch.device, optional): Where the batches go. (default: :obj:`None`, the
            model's device)
        progress (bool, optional): Show a tqdm bar. (default: :obj:`True`)

    :rtype: :obj:`dict` of each layer's :class:`~tg_samplenet.SampleNetFPS`
    """
    if not isinstance(model, torch.nn.Module):
        raise InputTypeError("model", f"model must be a torch.nn.Module (got {type(model)})")
    if not isinstance(samplers, dict) or not samplers:
        raise InputTypeError("samplers", "samplers must be a non-empty dict {layer: SampleNet}")
    inside = {id(m) for m in model.modules()}
    for layer, sampler in samplers.items():
        if id(layer) not in inside or not isinstance(sampler, SampleNet):
            raise InputError("samplers", "samplers must map submodules of model to SampleNets")
        if "pos" not in inspect.signature(layer.forward).parameters:
            raise InputError("samplers", f"{type(layer).__name__}.forward takes no 'pos'")
        if not isinstance(getattr(layer, "ratio", None), float):
            raise InputError("samplers", f"{type(layer).__name__} has no float attribute ratio")
        if module is None and not hasattr(layer, "fps"):
            raise InputError("module", f"{type(layer).__name__} has no fps: pass its module")
    if module is not None and not callable(getattr(module, "fps", None)):
        raise InputTypeError("module", "module must be a module with a global fps")
    if not callable(task_loss):
        raise InputTypeError("task_loss", "task_loss must be callable as task_loss(data)")
    epochs = check_positive_int(epochs, "epochs")
    imitate_epochs = check_int(imitate_epochs, "imitate_epochs", minimum=0)
    if imitate_epochs >= epochs:
        raise InputError("imitate_epochs", "imitate_epochs must be fewer than epochs")
    lr = check_number(lr, "lr", positive=True)
    model_lr = check_number(model_lr, "model_lr", positive=True)
    check_bool(train_model, "train_model")
    weights = {} if loss_weights is None else asdict(loss_weights)
    device = next(model.parameters()).device if device is None else device

    # Training: each layer's fps returns what its pre-hook sampled, with gradient.
    sampled = _Sampled(len(samplers))
    hooks, training_fps = [], {}
    for layer, sampler in samplers.items():
        sampler.to(device).straight_through = True
        fps = training_fps[layer] = _CentresInTraining(sampler)
        _install(layer, fps, module)
        hooks.append(
            layer.register_forward_pre_hook(_sampling_hook(fps, sampled), with_kwargs=True)
        )

    params = [p for s in samplers.values() for p in s.parameters()]
    groups = [{"params": params, "lr": lr}]
    learned = {id(p) for p in params}
    if train_model:
        rest = [p for p in model.parameters() if id(p) not in learned and p.requires_grad]
        groups.append({"params": rest, "lr": model_lr})
    optimizer = torch.optim.Adam(groups)
    # Imitation trains the samplers alone at their full rate; the fine-tuning that follows,
    # the model's included, gets a whole cosine decay of its own.
    steps = len(loader)  # type: ignore[arg-type]
    scheduler = learning_rate_schedule(
        optimizer, "cosine", (epochs - imitate_epochs) * steps, hold_steps=imitate_epochs * steps
    )

    epoch = [0]

    def objective(data) -> Tensor:
        imitating = epoch[0] < imitate_epochs
        sampled.start(stop_when_all_sampled=imitating)
        model.train(train_model)
        for sampler in samplers.values():
            sampler.train()
        if imitating:
            try:
                task_loss(data)  # runs the model until every layer has sampled
            except _EveryLayerSampled:
                pass
            return sum(_imitation(out, pos, batch) for out, pos, batch in sampled.outputs)
        loss = task_loss(data)
        for out, pos, batch in sampled.outputs:
            loss = samplenet_loss(loss, out, pos, batch, **weights)
        return loss

    def epoch_start(number: int):
        epoch[0] = number

    # A frozen model passes gradients through to the samplers but computes none of its own.
    frozen = [] if train_model else [p for p in model.parameters() if p.requires_grad]
    for p in frozen:
        if id(p) not in learned:
            p.requires_grad_(False)
    everything = _Everything(model, samplers)
    try:
        step = training_step(everything, objective, optimizer, scheduler, device)
        state = {"weights": everything, "optimizer": optimizer, "scheduler": scheduler}
        fit(step, loader, epochs, checkpoint, state, "upgrade fps", epoch_start, progress)
    finally:
        for hook in hooks:
            hook.remove()
        for p in frozen:
            p.requires_grad_(True)
    model.eval()
    result = {}
    for layer, sampler in samplers.items():
        sampler.straight_through = False
        result[layer] = SampleNetFPS(sampler.eval())
        _install(layer, result[layer], module)
    return result


class _Everything(torch.nn.Module):
    # The model and its samplers as one module, for the training step's gradient checks.
    def __init__(self, model: torch.nn.Module, samplers: dict):
        super().__init__()
        self.model = model
        self.samplers = torch.nn.ModuleList(samplers.values())

    def train(self, mode: bool = True):  # the objective sets the modes itself
        return self


class _EveryLayerSampled(Exception):
    pass


class _Sampled:
    # What the layers' pre-hooks sampled in one forward. Imitation needs nothing but the
    # layers' inputs, so there the forward stops once every layer has sampled.
    def __init__(self, num_layers: int):
        self.num_layers = num_layers
        self.outputs: list[tuple[Any, Tensor, Optional[Tensor]]] = []
        self.layers: set[int] = set()
        self.stop_when_all_sampled = False

    def start(self, stop_when_all_sampled: bool):
        self.outputs.clear()
        self.layers.clear()
        self.stop_when_all_sampled = stop_when_all_sampled

    def add(self, layer: torch.nn.Module, out, pos: Tensor, batch: Optional[Tensor]):
        self.outputs.append((out, pos, batch))
        self.layers.add(id(layer))
        if self.stop_when_all_sampled and len(self.layers) == self.num_layers:
            raise _EveryLayerSampled


def _sampling_hook(fps: _CentresInTraining, sampled: _Sampled):
    def hook(layer, args, kwargs):
        bound = inspect.signature(layer.forward).bind(*args, **kwargs)
        pos, batch = bound.arguments["pos"], bound.arguments.get("batch")
        if not torch.is_grad_enabled() or not fps.sampler.training:
            return None
        out = fps.sampler(pos, batch, ratio=layer.ratio)
        sampled.add(layer, out, pos, batch)
        # The same values (out.pos is pos[index] plus a zero that carries the gradient).
        attached = pos.index_add(0, out.index, out.pos - pos[out.index])
        fps.pending = (attached, out.index)
        bound.arguments["pos"] = attached
        return bound.args, bound.kwargs

    return hook


def _imitation(out, pos: Tensor, batch: Optional[Tensor]) -> Tensor:
    # The Chamfer distance of the simplified points to as many farthest points.
    batch = (
        torch.zeros(pos.size(0), dtype=torch.long, device=pos.device) if batch is None else batch
    )
    B = out.counts.numel()
    sizes = torch.bincount(batch, minlength=B)
    m = torch.bincount(out.simplified_batch, minlength=B)
    target = farthest_point_sampling(pos.detach(), batch, m.clamp(max=sizes), random_start=True)
    return chamfer_distance(
        out.simplified, pos.detach()[target], out.simplified_batch, batch[target]
    )
