r"""Point-cloud data sets, every cloud centred and scaled into the unit sphere: a built-in
procedural data set (the default, no download) and loaders for ModelNet meshes, the paper's
ModelNet40 HDF5 files and ShapeNetCore PLY clouds."""

from tg_samplenet.datasets.factory import DATASET_NAMES, get_dataset
from tg_samplenet.datasets.hdf5 import HDF5PointClouds
from tg_samplenet.datasets.modelnet import ModelNetPointClouds
from tg_samplenet.datasets.normalize import NormalizeUnitSphere, normalize_unit_sphere
from tg_samplenet.datasets.primitives import sample_surface
from tg_samplenet.datasets.shapenet import ShapeNetPointClouds, read_ply_points, split_indices
from tg_samplenet.datasets.split import holdout, stratified_split
from tg_samplenet.datasets.synthetic import SyntheticShapes

__all__ = [
    "DATASET_NAMES",
    "HDF5PointClouds",
    "ModelNetPointClouds",
    "NormalizeUnitSphere",
    "ShapeNetPointClouds",
    "SyntheticShapes",
    "get_dataset",
    "holdout",
    "normalize_unit_sphere",
    "read_ply_points",
    "sample_surface",
    "split_indices",
    "stratified_split",
]
