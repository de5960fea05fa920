r"""Shared fixtures: the devices to run on (CUDA added when present), the neighbour/FPS
back-ends to compare (each skipped when its package is missing) and a factory of random
point clouds in PyG's batch layout."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import pytest
import torch
from torch import Tensor

from tg_samplenet.ops.neighbors import available_backends, use_backend

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
BACKENDS = ["pyg_lib", "torch_cluster", "kdtree", "torch"]


@pytest.fixture(params=DEVICES)
def device(request) -> torch.device:
    r"""Every test that takes :obj:`device` runs on the CPU, and on CUDA when available."""
    return torch.device(request.param)


@pytest.fixture(params=BACKENDS)
def backend(request) -> str:
    r"""Runs the test once per installed back-end, forced with :func:`use_backend`."""
    if request.param not in available_backends():
        pytest.skip(f"back-end {request.param!r} is not installed here")
    with use_backend(request.param):
        yield request.param


@pytest.fixture
def make_clouds() -> Callable[..., tuple[Tensor, Tensor]]:
    r"""Returns :obj:`make(sizes, seed=0, dtype=torch.float32, device="cpu")`, which draws
    one cloud per entry of :obj:`sizes` (uniform in the unit cube) and returns
    :obj:`(pos, batch)` with a sorted batch vector; empty clouds are allowed."""

    def make(
        sizes: Sequence[int],
        seed: int = 0,
        dtype: torch.dtype = torch.float32,
        device="cpu",
    ) -> tuple[Tensor, Tensor]:
        generator = torch.Generator().manual_seed(seed)
        pos = torch.rand(sum(sizes), 3, generator=generator, dtype=torch.float64)
        batch = torch.repeat_interleave(
            torch.arange(len(sizes)), torch.tensor(list(sizes), dtype=torch.long)
        )
        return pos.to(dtype).to(device), batch.to(device)

    return make


@pytest.fixture
def write_hdf5_dataset() -> Callable[..., None]:
    r"""Returns :obj:`write(root, classes, clouds_per_split, num_points, seed=0)`, which
    writes a small data set in the :obj:`modelnet40_ply_hdf5_2048` layout into
    :obj:`root`: :obj:`shape_names.txt`, one :obj:`ply_data_<split>0.h5` per split with
    random clouds whose labels cycle through the classes, and the split's file list."""

    def write(root, classes: Sequence[str], clouds_per_split: dict, num_points: int, seed: int = 0):
        import h5py
        import numpy as np

        generator = np.random.default_rng(seed)
        (root / "shape_names.txt").write_text("".join(f"{name}\n" for name in classes))
        for split, num_clouds in clouds_per_split.items():
            name = f"ply_data_{split}0.h5"
            (root / f"{split}_files.txt").write_text(f"data/modelnet40_ply_hdf5_2048/{name}\n")
            with h5py.File(root / name, "w") as f:
                shape = (num_clouds, num_points, 3)
                f["data"] = generator.uniform(-1, 1, shape).astype(np.float32)
                f["label"] = (np.arange(num_clouds) % len(classes))[:, None].astype(np.uint8)

    return write
