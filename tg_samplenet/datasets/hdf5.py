r"""Point clouds in the HDF5 layout of the paper's ModelNet40 data
(:obj:`modelnet40_ply_hdf5_2048`)."""

from __future__ import annotations

import os.path as osp
from collections.abc import Callable, Sequence
from typing import Optional

import torch
from torch_geometric.data import Data, InMemoryDataset

from tg_samplenet.datasets.formats import read_h5_clouds
from tg_samplenet.datasets.normalize import normalize_unit_sphere
from tg_samplenet.datasets.utils import (
    AtomicSave,
    check_file_loader,
    check_names,
    first_points,
    selection_tag,
)
from tg_samplenet.ops.checks import InputError


class HDF5PointClouds(AtomicSave, InMemoryDataset):
    r"""Point clouds stored in the HDF5 layout of the paper's ModelNet40 data,
    :obj:`modelnet40_ply_hdf5_2048` from `"PointNet: Deep Learning on Point Sets for 3D
    Classification and Segmentation" <https://arxiv.org/abs/1612.00593>`_:

    .. code-block:: none

        root/
            train_files.txt   one HDF5 file per line (looked up by its base name in root)
            test_files.txt
            shape_names.txt   optional: one class name per line, line i = label i
            ply_data_train0.h5
            ...

    Each HDF5 file holds :obj:`data` :obj:`[N, P, 3]` and :obj:`label`; the clouds are
    cached under :obj:`root/processed`, each centred and scaled into the unit sphere.

    Args:
        root (str): The folder holding the files above.
        split (str, optional): :obj:`"train"` or :obj:`"test"`. (default: :obj:`"train"`)
        num_points (int, optional): Keep the *first* :obj:`num_points` stored points of each
            cloud, as the paper's code does; :obj:`None` keeps all. (default: :obj:`None`)
        categories (Sequence[str], optional): Class names to keep (they need
            :obj:`shape_names.txt`), relabelled :obj:`0, ..., C-1` in the given order.
            (default: :obj:`None`)
        transform (callable, optional): A transform applied to each item on access.
            (default: :obj:`None`)
        pre_transform (callable, optional): A transform applied to each item once, before
            caching. (default: :obj:`None`)
        force_reload (bool, optional): Whether to re-read the files. (default: :obj:`False`)
        on_bad_file (str, optional): :obj:`"raise"` one error naming every unusable file
            once all are read, or :obj:`"skip"` them (and non-finite clouds) with a warning
            each. (default: :obj:`"raise"`)
    """

    def __init__(
        self,
        root: str,
        split: str = "train",
        num_points: Optional[int] = None,
        categories: Optional[Sequence[str]] = None,
        transform: Optional[Callable] = None,
        pre_transform: Optional[Callable] = None,
        force_reload: bool = False,
        on_bad_file: str = "raise",
    ) -> None:
        root, self.split, self.num_points, self.bad_files = check_file_loader(
            "HDF5PointClouds", root, split, ("train", "test"), num_points, on_bad_file
        )
        self.categories = check_names(categories, "categories")
        self.shape_names = _read_lines(osp.join(root, "shape_names.txt"), required=False)
        if self.categories is not None:
            if self.shape_names is None:
                raise FileNotFoundError(
                    f"selecting categories needs the class names in "
                    f"{osp.join(root, 'shape_names.txt')}, which does not exist"
                )
            unknown = [name for name in self.categories if name not in self.shape_names]
            if unknown:
                raise InputError(
                    "categories", f"unknown categories {unknown}: choose from {self.shape_names}"
                )
        super().__init__(root, transform, pre_transform, force_reload=force_reload)
        self.load(self.processed_paths[0])

    @property
    def processed_file_names(self) -> list[str]:
        points = "all" if self.num_points is None else self.num_points
        skip = "_skip" if self.bad_files.on_bad_file == "skip" else ""
        return [f"h5_{self.split}_n{points}_c{selection_tag(self.categories)}{skip}.pt"]

    @property
    def classes(self) -> list[str]:
        r"""The class names, label :obj:`i` at position :obj:`i`."""
        names = self.categories or self.shape_names
        return list(names) if names else [str(i) for i in range(int(self._data.y.max()) + 1)]

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def process(self) -> None:
        list_file = osp.join(self.root, f"{self.split}_files.txt")
        paths = [osp.join(self.root, osp.basename(line)) for line in _read_lines(list_file)]
        missing = [path for path in paths if not osp.isfile(path)]
        if missing:
            raise FileNotFoundError(f"HDF5 files listed in {list_file} are missing: {missing}")
        data_list: list[Data] = []
        for path in paths:
            data_list += self.bad_files.attempt(lambda path=path: self._read(path)) or []
        self.bad_files.report()
        if not data_list:
            raise InputError(
                "categories", f"no clouds of the selected categories in the {self.split} split"
            )
        if self.pre_transform is not None:
            data_list = [self.pre_transform(data) for data in data_list]
        self.save(data_list, self.processed_paths[0])

    def _read(self, path: str) -> list[Data]:
        # One file's clouds, selected and normalised; an InputError names the file.
        pos, label = read_h5_clouds(path)
        names = self.shape_names
        if names is not None and int(label.max()) >= len(names):
            raise InputError(
                "path",
                f"{path} holds labels outside [0, {len(names) - 1}], the range of the "
                f"{len(names)} names in shape_names.txt",
            )
        pos = first_points(pos, self.num_points, path)
        finite = torch.isfinite(pos).flatten(1).all(1)
        if not bool(finite.all()):
            bad = (~finite).nonzero().view(-1).tolist()
            problem = f"{path}: clouds {bad[:10]}{' ...' * (len(bad) > 10)} contain NaN or "
            problem += "infinite coordinates"
            if self.bad_files.on_bad_file == "raise":
                raise InputError("path", problem)
            self.bad_files.problems.append(problem)  # the file's other clouds stay
            pos, label = pos[finite], label[finite]
        if self.categories is not None:
            lookup = torch.full((len(names),), -1, dtype=torch.long)
            lookup[[names.index(name) for name in self.categories]] = torch.arange(
                len(self.categories)
            )
            label = lookup[label]
            pos, label = pos[label >= 0], label[label >= 0]
        if pos.size(0) == 0:
            return []
        return [Data(pos=p, y=y.view(1)) for p, y in zip(normalize_unit_sphere(pos), label)]

    def __repr__(self) -> str:
        return (
            f"{self.__class__.__name__}({len(self)}, split={self.split!r}, "
            f"num_points={self.num_points})"
        )


def _read_lines(path: str, required: bool = True) -> Optional[list[str]]:
    # The non-blank lines of a list file (train_files.txt, shape_names.txt).
    if not osp.isfile(path):
        if required:
            raise FileNotFoundError(f"the list of HDF5 files {path} does not exist")
        return None
    with open(path) as f:
        lines = [line.strip() for line in f if line.strip()]
    if not lines or len(set(lines)) != len(lines):
        raise InputError(str(path), f"{path} lists nothing, or a name twice")
    return lines
