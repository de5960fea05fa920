r"""Shared fixtures: the devices to run on (CUDA added when present), the neighbour/FPS
back-ends to compare (each skipped when its package is missing) and a factory of random
point clouds in PyG's batch layout."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import pytest
import torch
from torch import Tensor

from tg_samplenet.backend import available_backends, use_backend

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
BACKENDS = ["pyg_lib", "torch_cluster", "torch"]


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
