r"""Loaders of real point-cloud data sets, every cloud centred and scaled into the unit sphere:
ModelNet meshes, the paper's ModelNet40 HDF5 files and ShapeNetCore PLY clouds, with a
seeded, class-stratified hold-out split."""

from tg_samplenet.datasets.hdf5 import HDF5PointClouds
from tg_samplenet.datasets.modelnet import ModelNetPointClouds
from tg_samplenet.datasets.normalize import NormalizeUnitSphere, normalize_unit_sphere
from tg_samplenet.datasets.shapenet import ShapeNetPointClouds, read_ply_points, split_indices
from tg_samplenet.datasets.split import holdout, stratified_split

__all__ = [
    "HDF5PointClouds",
    "ModelNetPointClouds",
    "NormalizeUnitSphere",
    "ShapeNetPointClouds",
    "holdout",
    "normalize_unit_sphere",
    "read_ply_points",
    "split_indices",
    "stratified_split",
]
