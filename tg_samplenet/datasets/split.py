r"""A seeded, class-stratified hold-out of a training split, for model selection on data sets
that ship no validation split (the real ModelNet10 training files ship no test split either)."""

from __future__ import annotations

from typing import Optional

import torch
from torch import Tensor
from torch_geometric.data import Dataset, InMemoryDataset

from tg_samplenet.ops.checks import (
    InputError,
    InputTypeError,
    check_choice,
    check_index_vector,
    check_int,
    check_number,
)

__all__ = ["stratified_split", "holdout", "check_val_fraction"]


def stratified_split(y: Tensor, val_fraction: float, seed: int = 0) -> tuple[Tensor, Tensor]:
    r"""Splits items with class labels :obj:`y` into a training and a validation part that
    keep every class's share: of the :math:`n_c` items of class :math:`c`,
    :math:`\operatorname{round}(f \cdot n_c)` drawn from :obj:`seed` go to the validation part.

    .. code-block:: python

        y = torch.tensor([0, 0, 0, 0, 1, 1, 1, 1, 1, 1])
        train, val = stratified_split(y, 0.5, seed=0)
        # val holds two of the four 0s and three of the six 1s, train the rest

    Args:
        y (torch.LongTensor): Class labels :obj:`[N]`, at least 0.
        val_fraction (float): The share :math:`f` of each class to hold out, in
            :math:`[0, 1)`.
        seed (int, optional): Seed of the draw. (default: :obj:`0`)

    :rtype: (:class:`torch.LongTensor`, :class:`torch.LongTensor`): the sorted indices of
        the training part and of the validation part.
    """
    y = check_index_vector(y, "y").cpu()
    val_fraction = check_val_fraction(val_fraction)
    seed = check_int(seed, "seed", minimum=0)
    if y.numel() and int(y.min()) < 0:
        raise InputError("y", f"y must hold class labels >= 0 (got {int(y.min())})")

    key = torch.rand(y.numel(), generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    # One sort puts the classes in order and shuffles each: its first round(f * n_c)
    # items go to the validation part.
    order = torch.argsort(y.double() * 2 + key)
    sizes = torch.bincount(y)
    start = sizes.cumsum(0) - sizes
    rank = torch.arange(y.numel()) - start[y[order]]
    held_out = torch.round(sizes.double() * val_fraction).long()
    is_val = torch.zeros(y.numel(), dtype=torch.bool)
    is_val[order] = rank < held_out[y[order]]
    return (~is_val).nonzero().view(-1), is_val.nonzero().view(-1)


def holdout(dataset: Dataset, split: str, val_fraction: float, seed: int = 0) -> Dataset:
    r"""The :obj:`"train"` or the :obj:`"val"` part of :obj:`dataset` under
    :func:`stratified_split` of its labels :obj:`data.y`: a view :obj:`dataset[index]` that
    keeps the data set's class names and transforms.

    .. code-block:: python

        full = get_dataset("h5", "data/modelnet10", split="train")
        train = holdout(full, "train", 0.2)   # 80 % of each class
        val = holdout(full, "val", 0.2)       # the other 20 %

    Args:
        dataset (torch_geometric.data.Dataset): A training split, one label per item.
        split (str): :obj:`"train"` (what remains) or :obj:`"val"` (the held-out part).
        val_fraction (float): The share of each class to hold out, in :math:`[0, 1)`.
        seed (int, optional): Seed of the draw. (default: :obj:`0`)
    """
    if not isinstance(dataset, Dataset):
        raise InputTypeError(
            "dataset", f"dataset must be a PyG Dataset (got {type(dataset).__name__})"
        )
    split = check_choice(split, "split", ("train", "val"))
    train, val = stratified_split(_labels(dataset), val_fraction, seed)
    return dataset[train if split == "train" else val]


def check_val_fraction(val_fraction: float) -> float:
    r"""Checks a hold-out share: a real number in :math:`[0, 1)`."""
    val_fraction = check_number(val_fraction, "val_fraction", minimum=0.0)
    if val_fraction >= 1.0:
        raise InputError("val_fraction", f"val_fraction must lie in [0, 1) (got {val_fraction})")
    return val_fraction


def _labels(dataset: Dataset) -> Tensor:
    # Read from the collated storage when it holds one label per item (no transform runs),
    # else item by item.
    y: Optional[Tensor] = None
    if isinstance(dataset, InMemoryDataset) and dataset._data is not None:
        stored = getattr(dataset._data, "y", None)
        if stored is not None and stored.numel() == dataset.len():
            y = stored.view(-1)[torch.as_tensor(dataset.indices(), dtype=torch.long)]
    if y is None:
        y = torch.cat([dataset.get(i).y.view(-1)[:1] for i in dataset.indices()])
    return y
