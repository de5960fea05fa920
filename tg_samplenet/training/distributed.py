r"""Data-parallel training under :obj:`torchrun`: every global batch is split over the
:math:`W` processes, so that any :math:`W` takes the same optimiser steps; without a process
group every function here returns its input or does nothing.

.. code-block:: python

    device = init_distributed("cuda")  # cuda:LOCAL_RANK under torchrun
    loader = training_loader(dataset, batch_size=32, seed=0)  # 32 / W clouds per process
    fit_model(model, loss_fn, loader, epochs=10, lr=1e-3, checkpoint="run.pt", device=device)
"""

from __future__ import annotations

import atexit
import os
import sys
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterator, Optional, Union

import torch
import torch.distributed as dist
from torch import Tensor
from torch.utils.data import DataLoader as TorchDataLoader
from torch.utils.data import DistributedSampler, Sampler, SequentialSampler, Subset
from torch_geometric.loader import DataLoader
from torch_geometric.nn.norm import BatchNorm as PyGBatchNorm

from tg_samplenet.io import load_checkpoint
from tg_samplenet.ops.checks import InputError

__all__ = [
    "DistributedBatchSampler",
    "SyncBatchNorm",
    "all_gather_objects",
    "all_reduce_mean",
    "all_reduce_sum",
    "barrier",
    "broadcast_checkpoint",
    "broadcast_object",
    "data_parallel",
    "evaluate_sharded",
    "gather_cat",
    "get_rank",
    "get_world_size",
    "init_distributed",
    "is_distributed",
    "is_main_process",
    "main_process_first",
    "set_epoch",
    "shard_loader",
    "sync_batch_norm",
    "training_loader",
]

# What torchrun sets in every process it starts.
_ENVIRONMENT = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")


def is_distributed() -> bool:
    r"""Whether a process group is initialised."""
    return dist.is_available() and dist.is_initialized()


def get_rank() -> int:
    r"""This process's rank, :obj:`0` without a process group."""
    return dist.get_rank() if is_distributed() else 0


def get_world_size() -> int:
    r"""The number of processes :math:`W`, :obj:`1` without a process group."""
    return dist.get_world_size() if is_distributed() else 1


def is_main_process() -> bool:
    r"""Whether this process writes files and prints: rank :obj:`0`, or the only process."""
    return get_rank() == 0


def init_distributed(
    device: Optional[Union[str, torch.device]] = None, quiet: bool = True
) -> torch.device:
    r"""Joins the process group that torchrun's environment describes (:obj:`"nccl"` on
    CUDA, where each process takes :obj:`cuda:LOCAL_RANK`, else :obj:`"gloo"`), destroyed at
    exit. Without torchrun's variables nothing happens.

    Args:
        device (str or torch.device, optional): Where the process computes.
            (default: :obj:`None`, the CPU)
        quiet (bool, optional): Silence the standard output of every rank but :obj:`0`.
            (default: :obj:`True`)

    :rtype: :class:`torch.device`, the device this process computes on
    """
    device = torch.device("cpu" if device is None else device)
    if "WORLD_SIZE" not in os.environ or is_distributed():
        if is_distributed() and device.type == "cuda":
            device = torch.device("cuda", torch.cuda.current_device())
        return device
    missing = [name for name in _ENVIRONMENT if name not in os.environ]
    if missing:
        raise RuntimeError(
            f"WORLD_SIZE is set but {', '.join(missing)} are not: launch with torchrun, or "
            f"set every one of {', '.join(_ENVIRONMENT)}"
        )
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise RuntimeError(f"device {device}: CUDA is not available on this machine")
        device = torch.device("cuda", int(os.environ["LOCAL_RANK"]))
        torch.cuda.set_device(device)
    dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    atexit.register(_shutdown)
    if quiet and get_rank() != 0:
        sys.stdout = open(os.devnull, "w")  # noqa: SIM115 (open for the whole run)
    return device


def _shutdown():
    if is_distributed():
        dist.destroy_process_group()


def _collective_device() -> torch.device:
    # nccl reduces CUDA tensors only, gloo CPU tensors.
    if dist.get_backend() == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def barrier():
    r"""Waits until every process gets here (nothing without a process group)."""
    if not is_distributed():
        return
    if dist.get_backend() == "nccl":
        dist.barrier(device_ids=[torch.cuda.current_device()])
    else:
        dist.barrier()


@contextmanager
def main_process_first() -> Iterator[None]:
    r"""Runs the block on rank :obj:`0` first, then on the others (e.g. a data set that
    writes a cache on first use)."""
    if not is_main_process():
        barrier()
    try:
        yield
    finally:
        if is_main_process():
            barrier()


def broadcast_object(obj: Any) -> Any:
    r"""Rank :obj:`0`'s :obj:`obj` (any picklable object) on every rank."""
    if not is_distributed():
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0, device=_collective_device())
    return box[0]


def all_gather_objects(obj: Any) -> list[Any]:
    r"""Every rank's :obj:`obj` (any picklable object), in rank order, on every rank."""
    if not is_distributed():
        return [obj]
    gathered: list[Any] = [None] * get_world_size()
    dist.all_gather_object(gathered, obj)
    return gathered


def all_reduce_sum(value: Union[int, float]) -> Union[int, float]:
    r"""The sum of :obj:`value` over the ranks (exact for integers)."""
    if not is_distributed():
        return value
    exact = isinstance(value, int)
    tensor = torch.tensor(value, dtype=torch.int64 if exact else torch.float64)
    tensor = tensor.to(_collective_device())
    dist.all_reduce(tensor)
    return int(tensor) if exact else float(tensor)


def all_reduce_mean(value: float) -> float:
    r"""The mean of :obj:`value` over the ranks (in float64)."""
    if not is_distributed():
        return value
    return all_reduce_sum(float(value)) / get_world_size()


def broadcast_checkpoint(path: Optional[Union[str, os.PathLike]]) -> Optional[Any]:
    r"""The checkpoint at :obj:`path` as rank :obj:`0` reads it, on every rank; :obj:`None`
    when there is no file. An unreadable file raises its error on every rank."""
    found: Any = None
    if is_main_process() and path is not None and Path(path).exists():
        try:
            found = ("ok", load_checkpoint(path))
        except Exception as error:  # every rank must raise, not wait for the broadcast
            found = ("error", error)
    found = broadcast_object(found)
    if found is None:
        return None
    if found[0] == "error":
        raise found[1]
    return found[1]


def set_epoch(loader: Any, epoch: int):
    r"""Tells a loader's (batch) sampler which epoch starts, if it has :obj:`set_epoch`."""
    for sampler in (getattr(loader, "batch_sampler", None), getattr(loader, "sampler", None)):
        if hasattr(sampler, "set_epoch"):
            sampler.set_epoch(epoch)


class DistributedBatchSampler(Sampler[list[int]]):
    r"""Batches of :obj:`batch_size` items shuffled per epoch from :obj:`seed`, each split
    over the :math:`W` processes: rank :math:`r` takes items :math:`r, r + W, r + 2W,
    \ldots` of every global batch, in :class:`~torch.utils.data.DistributedSampler`'s order
    for :obj:`seed + epoch`; the incomplete last batch is dropped. Rank :math:`r`'s mean loss
    over its :math:`n_r` items times :attr:`loss_scale` :math:`= W n_r / B` averages to the
    mean over the global batch.

    Args:
        dataset (Sized): The data set (only its length is used).
        batch_size (int): Items :math:`B` of one global batch.
        shuffle (bool, optional): Shuffle every epoch. (default: :obj:`True`)
        seed (int, optional): Seed of the shuffle, the same on every rank.
            (default: :obj:`0`)
        num_replicas (int, optional): :math:`W`. (default: :obj:`None`, the world size)
        rank (int, optional): :math:`r`. (default: :obj:`None`, this process's rank)
    """

    def __init__(
        self,
        dataset: Any,
        batch_size: int,
        shuffle: bool = True,
        seed: int = 0,
        num_replicas: Optional[int] = None,
        rank: Optional[int] = None,
    ):
        num_replicas = get_world_size() if num_replicas is None else num_replicas
        rank = get_rank() if rank is None else rank
        if not isinstance(batch_size, int) or isinstance(batch_size, bool) or batch_size < 1:
            raise InputError(
                "batch_size", f"batch_size must be a positive integer (got {batch_size!r})"
            )
        if batch_size < num_replicas:
            raise InputError(
                "batch_size",
                f"batch_size {batch_size} is smaller than the {num_replicas} processes: every "
                f"process needs at least one item of each batch",
            )
        if not 0 <= rank < num_replicas:
            raise InputError("rank", f"rank must lie in [0, {num_replicas}) (got {rank})")
        self.batch_size = batch_size
        self.num_replicas = num_replicas
        self.rank = rank
        self.shuffle = shuffle
        self.seed = seed
        # One replica: only its permutation is used.
        self.order = DistributedSampler(dataset, 1, 0, shuffle=shuffle, seed=seed)
        self.loss_scale = num_replicas * len(range(rank, batch_size, num_replicas)) / batch_size

    def set_epoch(self, epoch: int):
        r"""Sets the epoch, whose shuffle :meth:`__iter__` then draws."""
        self.order.set_epoch(epoch)

    def __iter__(self) -> Iterator[list[int]]:
        order = list(self.order)
        B, W = self.batch_size, self.num_replicas
        for start in range(0, len(self) * B, B):
            yield order[start + self.rank : start + B : W]

    def __len__(self) -> int:
        return len(self.order) // self.batch_size

    def __repr__(self) -> str:
        return (
            f"{self.__class__.__name__}(batch_size={self.batch_size}, "
            f"rank={self.rank}, num_replicas={self.num_replicas}, seed={self.seed})"
        )


def training_loader(
    dataset: Any,
    batch_size: int,
    shuffle: bool = True,
    drop_last: bool = True,
    seed: int = 0,
    **kwargs: Any,
) -> DataLoader:
    r"""A PyG :class:`~torch_geometric.loader.DataLoader` of training batches; under torchrun
    of this rank's share of every global batch (:class:`DistributedBatchSampler`).

    Args:
        dataset (Dataset): The training data.
        batch_size (int): Items per (global) batch.
        shuffle (bool, optional): Shuffle every epoch. (default: :obj:`True`)
        drop_last (bool, optional): Drop the incomplete last batch (under torchrun needed
            unless :obj:`batch_size` divides the data set). (default: :obj:`True`)
        seed (int, optional): The shuffle's seed under torchrun. (default: :obj:`0`)
        **kwargs (optional): Further arguments of the loader, e.g. :obj:`follow_batch`.
    """
    if not is_distributed():
        return DataLoader(dataset, batch_size, shuffle=shuffle, drop_last=drop_last, **kwargs)
    if not drop_last and len(dataset) % batch_size != 0:
        raise InputError(
            "drop_last",
            f"drop_last=False with {len(dataset)} items in batches of {batch_size}: under "
            f"torch.distributed the incomplete last batch cannot be shared by every process",
        )
    batches = DistributedBatchSampler(dataset, batch_size, shuffle, seed)
    return DataLoader(dataset, batch_sampler=batches, **kwargs)


def shard_loader(loader: TorchDataLoader) -> TorchDataLoader:
    r"""This rank's part of an unshuffled evaluation :obj:`loader`: a contiguous run of its
    whole batches (possibly none), whose order :func:`gather_cat` restores."""
    if not is_distributed():
        return loader
    if not isinstance(loader.sampler, SequentialSampler) or loader.batch_size is None:
        raise InputError("loader", "shard_loader needs an unshuffled loader with a batch_size")
    B, W, r = loader.batch_size, get_world_size(), get_rank()
    K = len(loader)
    first, last = r * K // W, (r + 1) * K // W
    items = range(first * B, min(last * B, len(loader.dataset)))
    return TorchDataLoader(
        Subset(loader.dataset, items),
        batch_size=B,
        collate_fn=loader.collate_fn,
        num_workers=loader.num_workers,
        pin_memory=loader.pin_memory,
    )


def gather_cat(local: Optional[Union[Tensor, tuple[Tensor, ...]]]) -> Any:
    r"""Concatenates every rank's per-item results (a tensor, a tuple of tensors, or
    :obj:`None` for nothing) along their first dimension in rank order, on every rank."""
    if not is_distributed():
        return local
    if isinstance(local, Tensor):
        local = local.cpu()
    elif local is not None:
        local = tuple(part.cpu() for part in local)
    parts = [part for part in all_gather_objects(local) if part is not None]
    if not parts:
        raise ValueError("gather_cat: no rank had results to gather")
    if isinstance(parts[0], Tensor):
        return torch.cat(parts)
    return tuple(torch.cat(field) for field in zip(*parts))


class _AllReduceSum(torch.autograd.Function):
    # The sum over the ranks; its gradient is the sum of every rank's gradient.
    @staticmethod
    def forward(ctx, tensor: Tensor) -> Tensor:
        tensor = tensor.clone()
        dist.all_reduce(tensor)
        return tensor

    @staticmethod
    def backward(ctx, grad: Tensor) -> Tensor:
        grad = grad.clone()
        dist.all_reduce(grad)
        return grad


class SyncBatchNorm(torch.nn.modules.batchnorm._BatchNorm):
    r"""BatchNorm synchronised across CPU processes (gloo), which
    :class:`torch.nn.SyncBatchNorm` refuses. In training under a process group, the mean
    and biased variance are those of the whole global batch,

    .. math::
        \mu = \frac{1}{N} \sum_{r} \sum_{i \in r} x_i, \qquad
        \sigma^2 = \frac{1}{N} \sum_{r} \sum_{i \in r} (x_i - \mu)^2,

    with the gradient carried across the ranks; otherwise it is
    :class:`torch.nn.BatchNorm1d`.

    Args:
        num_features (int): Channels :math:`C`.
        eps (float, optional): Added to the variance. (default: :obj:`1e-5`)
        momentum (float, optional): Of the running statistics; :obj:`None` for a
            cumulative average. (default: :obj:`0.1`)
        affine (bool, optional): Learn a scale and a shift. (default: :obj:`True`)
        track_running_stats (bool, optional): Keep running statistics.
            (default: :obj:`True`)

    Shapes:
        - **input:** :math:`(N, C)` or :math:`(N, C, L)`
        - **output:** the shape of the input
    """

    #: The group it synchronises over (:obj:`None`: the default one).
    process_group: Optional[Any] = None

    def _check_input_dim(self, input: Tensor):
        if input.dim() < 2:
            raise InputError("input", f"expected at least 2-D input (got {input.dim()}-D input)")

    def forward(self, input: Tensor) -> Tensor:
        if not (self.training and is_distributed() and get_world_size() > 1):
            return super().forward(input)
        self._check_input_dim(input)
        dims = [d for d in range(input.dim()) if d != 1]
        shape = [1, -1] + [1] * (input.dim() - 2)
        count = torch.tensor([input.numel() // input.size(1)], dtype=torch.float64)
        total = _AllReduceSum.apply(torch.cat([count, input.sum(dims, dtype=torch.float64)]))
        N, mean = total[0], (total[1:] / total[0]).to(input.dtype)
        centred = input - mean.view(shape)
        var = _AllReduceSum.apply(centred.square().sum(dims, dtype=torch.float64)) / N
        if self.track_running_stats:
            with torch.no_grad():
                self.num_batches_tracked.add_(1)
                momentum = self.momentum
                factor = 1.0 / float(self.num_batches_tracked) if momentum is None else momentum
                unbiased = (var * (N / (N - 1).clamp(min=1))).to(input.dtype)
                self.running_mean.mul_(1 - factor).add_(mean, alpha=factor)
                self.running_var.mul_(1 - factor).add_(unbiased, alpha=factor)
        out = centred * torch.rsqrt(var.to(input.dtype) + self.eps).view(shape)
        if self.affine:
            out = out * self.weight.view(shape) + self.bias.view(shape)
        return out


def evaluate_sharded(
    evaluate: Callable[[Any], Any],
    loader: TorchDataLoader,
    shard: TorchDataLoader,
    whole: bool = False,
) -> Any:
    r"""Per-item results of :obj:`evaluate(loader)`, under torchrun as
    :obj:`evaluate(shard)` on this rank's batches (:func:`shard_loader`), gathered in order.
    With :obj:`whole`, every rank evaluates every batch (for a sampler drawing from one
    generator across calls)."""
    if whole or not is_distributed():
        return evaluate(loader)
    if len(shard) == 0:  # fewer batches than processes
        return gather_cat(None)
    return gather_cat(evaluate(shard))


@contextmanager
def sync_batch_norm(module: torch.nn.Module) -> Iterator[torch.nn.Module]:
    r"""Replaces every BatchNorm layer inside :obj:`module` by a synchronised one sharing
    its parameters and running statistics (:class:`torch.nn.SyncBatchNorm` on CUDA,
    :class:`SyncBatchNorm` on the CPU) while the block runs. PyG's
    :obj:`allow_single_element` fallback is off meanwhile, as a rank holding one row must
    still join the all-reduce."""
    swapped: list[tuple[torch.nn.Module, str, torch.nn.Module]] = []
    single: list[PyGBatchNorm] = []
    if is_distributed():
        for parent in list(module.modules()):
            if isinstance(parent, PyGBatchNorm) and parent.allow_single_element:
                parent.allow_single_element = False
                single.append(parent)
            for name, child in list(parent.named_children()):
                is_norm = isinstance(child, torch.nn.modules.batchnorm._BatchNorm)
                if is_norm and not isinstance(child, (torch.nn.SyncBatchNorm, SyncBatchNorm)):
                    setattr(parent, name, _synchronised(child))
                    swapped.append((parent, name, child))
    try:
        yield module
    finally:
        for parent, name, child in reversed(swapped):
            child.train(getattr(parent, name).training)
            setattr(parent, name, child)
        for norm in single:
            norm.allow_single_element = True


def _synchronised(norm: torch.nn.Module) -> torch.nn.Module:
    on_cuda = any(t.is_cuda for t in [*norm.parameters(), *norm.buffers()])
    kind = torch.nn.SyncBatchNorm if on_cuda else SyncBatchNorm
    sync = kind(norm.num_features, norm.eps, norm.momentum, norm.affine, norm.track_running_stats)
    if norm.affine:
        sync.weight, sync.bias = norm.weight, norm.bias
    for name in ("running_mean", "running_var", "num_batches_tracked"):
        setattr(sync, name, getattr(norm, name))
    return sync.train(norm.training)


class _Objective(torch.nn.Module):
    # The model and its loss as one module, so that DistributedDataParallel sees the forward
    # pass through which the loss reaches the parameters.
    def __init__(self, model: torch.nn.Module, loss_fn: Callable[[Any], Tensor]):
        super().__init__()
        self.model = model
        self.loss_fn = loss_fn

    def forward(self, data: Any) -> Tensor:
        return self.loss_fn(data)


@contextmanager
def data_parallel(
    model: torch.nn.Module, loss_fn: Callable[[Any], Tensor], loss_scale: float = 1.0
) -> Iterator[Callable[[Any], Tensor]]:
    r"""The objective :obj:`loss_fn(data)` (which calls :obj:`model`) through
    :class:`~torch.nn.parallel.DistributedDataParallel` (static graph) with synchronised
    BatchNorm (:func:`sync_batch_norm`), times :obj:`loss_scale`; :obj:`loss_fn` itself
    without a process group."""
    if not is_distributed():
        yield loss_fn
        return
    with sync_batch_norm(model):
        device = next(model.parameters()).device
        wrapped = torch.nn.parallel.DistributedDataParallel(
            _Objective(model, loss_fn),
            device_ids=[device.index] if device.type == "cuda" else None,
            static_graph=True,
        )

        def objective(data: Any) -> Tensor:
            loss = wrapped(data)
            return loss if loss_scale == 1.0 else loss * loss_scale

        yield objective
