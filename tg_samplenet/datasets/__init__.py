r"""Loaders of real point-cloud data sets (ModelNet meshes, the paper's ModelNet40 HDF5 files,
ShapeNetCore PLY clouds), each cloud centred and scaled into the unit sphere, a seeded,
class-stratified hold-out split, and one reader and writer per point-file format."""

from tg_samplenet.datasets.formats import (
    FORMATS,
    PointFile,
    find_point_files,
    read_h5_clouds,
    read_off_mesh,
    read_ply_points,
    read_point_file,
    write_h5_clouds,
    write_point_file,
)
from tg_samplenet.datasets.hdf5 import HDF5PointClouds
from tg_samplenet.datasets.modelnet import ModelNetPointClouds
from tg_samplenet.datasets.normalize import NormalizeUnitSphere, normalize_unit_sphere
from tg_samplenet.datasets.shapenet import ShapeNetPointClouds, split_indices
from tg_samplenet.datasets.split import holdout, stratified_split

__all__ = [
    "FORMATS",
    "HDF5PointClouds",
    "ModelNetPointClouds",
    "NormalizeUnitSphere",
    "PointFile",
    "ShapeNetPointClouds",
    "find_point_files",
    "holdout",
    "normalize_unit_sphere",
    "read_h5_clouds",
    "read_off_mesh",
    "read_ply_points",
    "read_point_file",
    "split_indices",
    "stratified_split",
    "write_h5_clouds",
    "write_point_file",
]
