r"""ModelNet10/40 point clouds sampled from the meshes of a local copy of the data set, through
:class:`torch_geometric.datasets.ModelNet`."""

from __future__ import annotations

import glob
import os
import os.path as osp
from collections.abc import Callable, Sequence
from typing import Optional

import torch
import torch_geometric.transforms as T
from torch_geometric.data import Data
from torch_geometric.datasets import ModelNet

from tg_samplenet.datasets.formats import read_off_mesh
from tg_samplenet.datasets.normalize import NormalizeUnitSphere
from tg_samplenet.datasets.utils import (
    AtomicSave,
    check_file_loader,
    check_names,
    check_seed,
    selection_tag,
)
from tg_samplenet.ops.checks import InputError


def _not_here(name: str, raw_dir: str) -> FileNotFoundError:
    return FileNotFoundError(
        f"ModelNet{name} is not downloaded here: extract ModelNet{name}.zip and put the "
        f"contents of its ModelNet{name}/ folder (the category folders such as chair/ with "
        f"train/ and test/ inside) into {raw_dir}"
    )


class ModelNetPointClouds(AtomicSave, ModelNet):
    r"""Point clouds of the ModelNet10 or ModelNet40 meshes from `"3D ShapeNets: A Deep
    Representation for Volumetric Shapes" <https://arxiv.org/abs/1406.5670>`_, read by PyG's
    :class:`~torch_geometric.datasets.ModelNet` from a local copy (no download).

    Put the *contents* of the extracted :obj:`ModelNet10/` or :obj:`ModelNet40/` folder in
    :obj:`root/raw/`, so that the meshes lie in :obj:`root/raw/<category>/{train,test}/
    <category>_<id>.off`. Each mesh becomes :obj:`num_points` points drawn by area (seeded
    :class:`~torch_geometric.transforms.SamplePoints`), normalised into the unit sphere and
    cached. Items are :obj:`Data(pos, y)`.

    Args:
        root (str): The folder holding :obj:`raw/`.
        name (str, optional): :obj:`"10"` or :obj:`"40"`. (default: :obj:`"10"`)
        split (str, optional): :obj:`"train"` or :obj:`"test"`. (default: :obj:`"train"`)
        num_points (int, optional): Points sampled per mesh. (default: :obj:`1024`)
        categories (Sequence[str], optional): Categories to keep (folder names such as
            :obj:`"chair"`), labelled :obj:`0, ..., C-1` in the given order; :obj:`None`
            keeps all, labelled in sorted order as PyG does. (default: :obj:`None`)
        seed (int, optional): The seed of the point sampling. (default: :obj:`0`)
        transform (callable, optional): A transform applied to each item on access.
            (default: :obj:`None`)
        force_reload (bool, optional): Whether to re-read the meshes. (default: :obj:`False`)
        on_bad_file (str, optional): :obj:`"raise"` one error naming every unusable file
            once all are read, or :obj:`"skip"` them with a warning each.
            (default: :obj:`"raise"`)
    """

    def __init__(
        self,
        root: str,
        name: str = "10",
        split: str = "train",
        num_points: int = 1024,
        categories: Optional[Sequence[str]] = None,
        seed: int = 0,
        transform: Optional[Callable] = None,
        force_reload: bool = False,
        on_bad_file: str = "raise",
    ) -> None:
        root, self.split, self.num_points, self.bad_files = check_file_loader(
            f"ModelNet{name}", root, split, ("train", "test"), num_points, on_bad_file, False
        )
        if name not in ("10", "40"):
            raise InputError("name", f"name must be '10' or '40' (got {name!r})")
        self.seed = check_seed(seed)
        raw_dir = osp.join(root, "raw")
        if not osp.isdir(raw_dir):
            raise _not_here(name, raw_dir)
        found = sorted(
            entry for entry in os.listdir(raw_dir) if osp.isdir(osp.join(raw_dir, entry))
        )
        if len(found) != int(name):
            raise InputError(
                "root",
                f"{raw_dir} holds {len(found)} category folders but ModelNet{name} has {name}: "
                "is it the right data set?",
            )
        self._selection = check_names(categories, "categories")
        unknown = [category for category in self._selection or [] if category not in found]
        if unknown:
            raise InputError("categories", f"unknown categories {unknown}: choose from {found}")
        self.classes = self._selection or found
        pre_transform = T.Compose([T.SamplePoints(num_points), NormalizeUnitSphere()])
        super().__init__(root, name, split == "train", transform, pre_transform, None, force_reload)

    @property
    def processed_dir(self) -> str:
        tag = selection_tag(self._selection)
        skip = "_skip" if self.bad_files.on_bad_file == "skip" else ""
        folder = f"n{self.num_points}_seed{self.seed}_c{tag}{skip}"
        return osp.join(self.root, "processed", folder)

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def download(self) -> None:
        raise _not_here(self.name, self.raw_dir)

    def process(self) -> None:
        # The sampling is seeded once for the whole run (meshes in sorted order), without
        # touching the caller's global random state.
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.seed)
            super().process()

    def process_set(self, dataset: str) -> list[Data]:
        data_list = []
        for target, category in enumerate(self.classes):
            folder = osp.join(self.raw_dir, category, dataset)
            for path in sorted(glob.glob(osp.join(folder, f"{category}_*.off"))):
                mesh = self.bad_files.attempt(lambda path=path: read_off_mesh(path))
                if mesh is None:
                    continue
                data = self.pre_transform(mesh)
                data_list.append(Data(pos=data.pos, y=torch.tensor([target])))
        skipped = self.bad_files.report()
        if len(data_list) == 0:
            usable = " usable (bad files were skipped)" if skipped else ""
            raise FileNotFoundError(
                f"no meshes {self.raw_dir}/<category>/{dataset}/*.off found{usable}"
            )
        return data_list

    def __repr__(self) -> str:
        return (
            f"{self.__class__.__name__}{self.name}({len(self)}, split={self.split!r}, "
            f"num_points={self.num_points})"
        )
