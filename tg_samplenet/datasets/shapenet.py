r"""ShapeNetCore point clouds stored as PLY files, one folder per synset: the data of the
paper's autoencoder (reconstruction) task."""

from __future__ import annotations

import os
import os.path as osp
from collections.abc import Callable, Sequence
from typing import Optional

import numpy as np
import torch
from torch_geometric.data import Data, InMemoryDataset

from tg_samplenet.datasets.formats import read_ply_points
from tg_samplenet.datasets.normalize import normalize_unit_sphere
from tg_samplenet.datasets.utils import (
    AtomicSave,
    check_file_loader,
    check_names,
    check_seed,
    first_points,
    selection_tag,
)
from tg_samplenet.io import atomic_save
from tg_samplenet.ops.checks import InputError

_SPLITS = ("train", "val", "test")
_SPLIT_FRACTIONS = (0.85, 0.05, 0.10)


class ShapeNetPointClouds(AtomicSave, InMemoryDataset):
    r"""ShapeNetCore point clouds in PLY files, as used for the autoencoder of `"Learning
    Representations and Generative Models for 3D Point Clouds"
    <https://arxiv.org/abs/1707.02392>`_ (2048 points per shape) and for SampleNet's
    reconstruction task:

    .. code-block:: none

        root/<synset id>/<model id>.ply

    The models of each class are split 85% / 5% / 10% into train / val / test as in the
    authors' code (:func:`split_indices`); every cloud is normalised into the unit sphere,
    and the splits are cached under :obj:`root/processed`.

    Args:
        root (str): The folder holding the synset folders.
        split (str, optional): :obj:`"train"`, :obj:`"val"` or :obj:`"test"`.
            (default: :obj:`"train"`)
        num_points (int, optional): Keep the *first* :obj:`num_points` points of each cloud
            (an error if a file stores fewer); :obj:`None` keeps all. (default: :obj:`None`)
        categories (Sequence[str], optional): Classes to keep, by name (see
            :attr:`SYNSET_IDS`) or synset id, labelled :obj:`0, ..., C-1` in the given order;
            :obj:`None` keeps every synset folder under :obj:`root`, in sorted order.
            (default: :obj:`None`)
        seed (int, optional): The seed of the per-class split. (default: :obj:`42`)
        transform (callable, optional): A transform applied to each item on access.
            (default: :obj:`None`)
        pre_transform (callable, optional): A transform applied to each item once, before
            caching. (default: :obj:`None`)
        force_reload (bool, optional): Whether to re-read the PLY files.
            (default: :obj:`False`)
        on_bad_file (str, optional): :obj:`"raise"` one error naming every unusable file
            once all are read, or :obj:`"skip"` them with a warning each.
            (default: :obj:`"raise"`)
    """

    SYNSET_IDS: dict[str, str] = {
        "airplane": "02691156",
        "bench": "02828884",
        "cabinet": "02933112",
        "car": "02958343",
        "chair": "03001627",
        "lamp": "03636649",
        "monitor": "03211117",
        "rifle": "04090263",
        "sofa": "04256520",
        "speaker": "03691459",
        "table": "04379243",
        "telephone": "04401088",
        "vessel": "04530566",
    }

    def __init__(
        self,
        root: str,
        split: str = "train",
        num_points: Optional[int] = None,
        categories: Optional[Sequence[str]] = None,
        seed: int = 42,
        transform: Optional[Callable] = None,
        pre_transform: Optional[Callable] = None,
        force_reload: bool = False,
        on_bad_file: str = "raise",
    ) -> None:
        root, self.split, self.num_points, self.bad_files = check_file_loader(
            "ShapeNetPointClouds", root, split, _SPLITS, num_points, on_bad_file
        )
        self.seed = check_seed(seed)
        self.synset_ids = _resolve_synsets(root, check_names(categories, "categories"))
        names = {synset: name for name, synset in self.SYNSET_IDS.items()}
        self.classes = [names.get(synset, synset) for synset in self.synset_ids]

        super().__init__(root, transform, pre_transform, force_reload=force_reload)
        path = self.processed_paths[_SPLITS.index(split)]
        if _is_empty_split(path):
            raise InputError(
                "split",
                f"split: the {split} split of {root} holds no clouds (too few usable models per "
                f"class for its {_SPLIT_FRACTIONS[_SPLITS.index(split)]:.0%})",
            )
        self.load(path)

    @property
    def processed_file_names(self) -> list[str]:
        points = "all" if self.num_points is None else self.num_points
        tag = selection_tag(self.synset_ids)
        skip = "_skip" if self.bad_files.on_bad_file == "skip" else ""
        return [f"shapenet_{s}_n{points}_seed{self.seed}_c{tag}{skip}.pt" for s in _SPLITS]

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def process(self) -> None:
        splits: tuple[list[Data], ...] = ([], [], [])
        for label, synset in enumerate(self.synset_ids):
            folder = osp.join(self.root, synset)
            files = sorted(f for f in os.listdir(folder) if f.endswith(".ply"))
            for part, chosen in zip(splits, split_indices(len(files), self.seed)):
                for i in chosen:
                    path = osp.join(folder, files[i])
                    part += [self.bad_files.attempt(lambda p=path, y=label: self._read(p, y))]
        self.bad_files.report()
        for data_list, path in zip(splits, self.processed_paths):
            data_list = [data for data in data_list if data is not None]
            if self.pre_transform is not None:
                data_list = [self.pre_transform(data) for data in data_list]
            if data_list:
                self.save(data_list, path)
            else:  # PyG cannot collate an empty list: mark the split as empty instead
                atomic_save(_EMPTY_SPLIT, path)

    def _read(self, path: str, label: int) -> Data:
        pos = first_points(read_ply_points(path), self.num_points, path)
        return Data(pos=normalize_unit_sphere(pos), y=torch.tensor([label]))

    def __repr__(self) -> str:
        return (
            f"{self.__class__.__name__}({len(self)}, split={self.split!r}, "
            f"num_points={self.num_points}, classes={self.classes})"
        )


def split_indices(num_models: int, seed: int = 42) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    r"""The indices of the train, val and test models of one class of :obj:`num_models`
    models: the names' order permuted by :obj:`numpy.random.RandomState(seed)` and cut at
    :math:`\mathrm{round}(0.85 n)` and :math:`\mathrm{round}(0.9 n)`, as the authors do.

    :rtype: (:class:`numpy.ndarray`, :class:`numpy.ndarray`, :class:`numpy.ndarray`)
    """
    perm = np.random.RandomState(seed).permutation(num_models)
    train_end = int(round(_SPLIT_FRACTIONS[0] * num_models))
    val_end = int(round((_SPLIT_FRACTIONS[0] + _SPLIT_FRACTIONS[1]) * num_models))
    return perm[:train_end], perm[train_end:val_end], perm[val_end:]


_EMPTY_SPLIT = {"tg_samplenet_empty_split": True}


def _is_empty_split(path: str) -> bool:
    # The marker process() writes for a split without clouds: a tiny file of one flag.
    try:
        return os.path.getsize(path) < 4096 and torch.load(path, weights_only=True) == _EMPTY_SPLIT
    except Exception:  # a real (small) data set file is not a plain dict
        return False


def _resolve_synsets(root: str, categories: Optional[list[str]]) -> list[str]:
    available = sorted(
        entry
        for entry in os.listdir(root)
        if entry != "processed"
        and osp.isdir(osp.join(root, entry))
        and any(f.endswith(".ply") for f in os.listdir(osp.join(root, entry)))
    )
    if not available:
        raise FileNotFoundError(f"no <synset id>/<model id>.ply folders found under {root}")
    if categories is None:
        return available
    synsets = [ShapeNetPointClouds.SYNSET_IDS.get(c, c) for c in categories]
    if len(set(synsets)) != len(synsets):
        raise InputError(
            "categories", f"categories names a class twice (by name and synset id): {categories}"
        )
    unknown = [c for c, synset in zip(categories, synsets, strict=True) if synset not in available]
    if unknown:
        names = {synset: name for name, synset in ShapeNetPointClouds.SYNSET_IDS.items()}
        found = [f"{names[s]} ({s})" if s in names else s for s in available]
        raise InputError(
            "categories", f"categories {unknown} not found under {root}: found {found}"
        )
    return synsets
