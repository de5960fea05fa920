r"""One entry point to every data set the examples and benchmarks take (:obj:`--dataset`): the
built-in shapes and the library's loaders of real data, by name."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Optional

from torch_geometric.data import InMemoryDataset

from reproduction.shapes.synthetic import SyntheticShapes
from tg_samplenet.datasets import (
    HDF5PointClouds,
    ModelNetPointClouds,
    ShapeNetPointClouds,
    holdout,
)
from tg_samplenet.ops.checks import InputError, InputTypeError, check_number

__all__ = ["DATASET_NAMES", "get_dataset"]

DATASET_NAMES = ("synthetic", "modelnet10", "modelnet40", "h5", "shapenet")


def get_dataset(
    name: str,
    root: Optional[str] = None,
    split: str = "train",
    num_points: Optional[int] = 1024,
    categories: Optional[Sequence[str]] = None,
    seed: Optional[int] = None,
    val_fraction: Optional[float] = None,
    **kwargs: Any,
) -> InMemoryDataset:
    r"""Builds one split of a data set by name. Every item is :obj:`Data(pos=[P, 3], y=[1])`
    with the cloud centred and scaled into the unit sphere, and the returned data set lists
    its class names in :obj:`dataset.classes` (label :obj:`i` at position :obj:`i`).

    .. list-table::
        :header-rows: 1

        * - :obj:`name`
          - data set
          - splits
        * - :obj:`"synthetic"`
          - :class:`SyntheticShapes` (no files; :obj:`root` optionally caches)
          - train, val, test
        * - :obj:`"modelnet10"`, :obj:`"modelnet40"`
          - :class:`ModelNetPointClouds` (meshes in :obj:`root/raw`)
          - train, test
        * - :obj:`"h5"`
          - :class:`HDF5PointClouds` (:obj:`modelnet40_ply_hdf5_2048` layout)
          - train, test
        * - :obj:`"shapenet"`
          - :class:`ShapeNetPointClouds` (:obj:`root/<synset>/<model>.ply`)
          - train, val, test

    .. code-block:: python

        from reproduction.datasets import get_dataset

        train = get_dataset("synthetic", split="train", num_points=1024)
        test = get_dataset("modelnet40", "data/ModelNet40", split="test", num_points=1024)
        # model selection on a data set without a validation split: 20 % of each class
        val = get_dataset("h5", "data/modelnet10", split="val", val_fraction=0.2)

    Args:
        name (str): One of :obj:`"synthetic"`, :obj:`"modelnet10"`, :obj:`"modelnet40"`,
            :obj:`"h5"`, :obj:`"shapenet"`.
        root (str, optional): The data folder; required by every data set but
            :obj:`"synthetic"`. (default: :obj:`None`)
        split (str, optional): :obj:`"train"`, :obj:`"test"`, or :obj:`"val"` where the data
            set has it. (default: :obj:`"train"`)
        num_points (int, optional): Points per cloud; for :obj:`"h5"` and :obj:`"shapenet"`
            the first stored points, :obj:`None` keeping all. (default: :obj:`1024`)
        categories (Sequence[str], optional): Classes to keep, relabelled :obj:`0, ..., C-1`
            in the given order. (default: :obj:`None`)
        seed (int, optional): The data set's seed (the generator of :obj:`"synthetic"`, the
            point sampling of ModelNet, the split of :obj:`"shapenet"`); :obj:`None` keeps
            each data set's default. :obj:`"h5"` has no randomness and ignores it.
            (default: :obj:`None`)
        val_fraction (float, optional): If set, :obj:`"train"` and :obj:`"val"` are the two
            parts of a class-stratified hold-out of this share of the training split
            (:func:`~tg_samplenet.datasets.holdout`, drawn with :obj:`seed` or 0),
            for any data set; :obj:`"test"` stays the data set's own test split.
            (default: :obj:`None`)
        **kwargs (optional): Further arguments of the data set's class, e.g.
            :obj:`transform`, or :obj:`samples_per_class` of :class:`SyntheticShapes` (which
            sizes the synthetic data only: the other data sets keep all their clouds and
            ignore it).

    :rtype: :class:`~torch_geometric.data.InMemoryDataset`
    """
    if not isinstance(name, str):
        raise InputTypeError("name", f"name must be a str (got {type(name).__name__})")
    key = name.lower()
    if key not in DATASET_NAMES:
        raise InputError(
            "name", f"unknown data set {name!r}: choose a name from {list(DATASET_NAMES)}"
        )
    if val_fraction is not None:
        val_fraction = check_number(val_fraction, "val_fraction", minimum=0.0)
        if val_fraction >= 1.0:
            raise InputError(
                "val_fraction", f"val_fraction must lie in [0, 1) (got {val_fraction})"
            )
        if split in ("train", "val"):
            full = get_dataset(name, root, "train", num_points, categories, seed, **kwargs)
            return holdout(full, split, val_fraction, 0 if seed is None else seed)
    seeded = {} if seed is None else {"seed": seed}

    if key == "synthetic":
        return SyntheticShapes(
            root, split=split, num_points=num_points, classes=categories, **seeded, **kwargs
        )
    kwargs.pop("samples_per_class", None)
    if root is None:
        raise InputError(
            "root", f"the data set {name!r} needs root, the folder that holds its files"
        )
    if key in ("modelnet10", "modelnet40"):
        return ModelNetPointClouds(
            root, key[-2:], split, num_points, categories, **seeded, **kwargs
        )
    if key == "h5":
        return HDF5PointClouds(root, split, num_points, categories, **kwargs)
    return ShapeNetPointClouds(root, split, num_points, categories, **seeded, **kwargs)
