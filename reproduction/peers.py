r"""The farthest point samplers a user can install instead of this library's, as the speed
benchmark calls them: none is a dependency, and each is skipped (:class:`Unavailable`) where
it does not import or does not run on the device."""

from __future__ import annotations

import importlib
from typing import Any, Callable

import numpy as np
import torch
from torch import Tensor

from reproduction.benchmarking import Unavailable
from tg_samplenet.ops import sample_counts
from tg_samplenet.ops.batch import cloud_ptr

__all__ = ["PEERS", "peer_fps", "ratio_for_count"]

PEERS = {
    "pyg_fps": "torch_geometric.nn.fps",
    "pyg_lib_fps": "pyg-lib fps",
    "fpsample": "fpsample bucket FPS (kd-line, h=7)",
    "torch_quickfps": "torch-quickfps (h=7)",
    "torch_fps": "torch-fps",
}


def ratio_for_count(num_points: int, num_samples: int) -> float:
    r"""A ratio for which :func:`torch_geometric.nn.fps` keeps exactly :obj:`num_samples`
    of :obj:`num_points` points (its product is taken in float32, so the ratio is stepped
    in float32 units).

    :rtype: :class:`float`
    """
    ratio = torch.tensor(num_samples / num_points, dtype=torch.float32)
    for _ in range(64):
        got = int(sample_counts(torch.tensor([num_points]), ratio=float(ratio)))
        if got == num_samples:
            return float(ratio)
        ratio = torch.nextafter(ratio, torch.tensor(0.0 if got > num_samples else 1.0))
    raise ValueError(f"no float ratio gives {num_samples} of {num_points} points")


def _import(name: str):
    try:
        return importlib.import_module(name)
    except Exception as error:  # noqa: BLE001  (a broken extension raises OSError, ...)
        raise Unavailable(f"{name} does not import here ({type(error).__name__})") from None


def peer_fps(
    name: str, pos: Tensor, batch: Tensor, num_clouds: int, num_samples: int
) -> Callable[[], Any]:
    r"""The call of a farthest point sampler that users can install instead (see
    :data:`PEERS`), taking :obj:`num_samples` points from each of :obj:`num_clouds` clouds of
    equal size; the call returns indices into :obj:`pos`, grouped by cloud. The inputs are
    converted outside the call. Raises :class:`Unavailable` when the peer does not import
    or cannot run on the device.

    Args:
        name (str): A key of :data:`PEERS`.
        pos (torch.Tensor): Points :obj:`[B * n, 3]`, grouped by cloud.
        batch (torch.Tensor): Their sorted batch vector.
        num_clouds (int): :math:`B`.
        num_samples (int): Points to take per cloud.
    """
    n = pos.size(0) // num_clouds
    dense, ratio = pos.view(num_clouds, n, 3), ratio_for_count(n, num_samples)
    if name == "pyg_fps":
        from torch_geometric.nn import fps

        try:  # PyG 2.7 without torch_cluster raises AttributeError, 2.8 without pyg-lib ImportError
            fps(pos[:4], batch[:4], ratio=0.5, random_start=False)
        except Exception as error:  # noqa: BLE001
            raise Unavailable(f"needs torch_cluster or pyg-lib ({type(error).__name__})") from None
        return lambda: fps(pos, batch, ratio=ratio, random_start=False)
    if name == "pyg_lib_fps":
        _import("pyg_lib")
        ptr = cloud_ptr(batch, num_clouds)
        return lambda: torch.ops.pyg.fps(pos, ptr, ratio, False)
    if name == "fpsample":
        fpsample = _import("fpsample")
        if pos.device.type != "cpu":
            raise Unavailable("fpsample runs on the CPU only")
        clouds = list(dense.numpy())

        def loop_over_clouds():
            return np.concatenate(
                [
                    fpsample.bucket_fps_kdline_sampling(cloud, num_samples, h=7, start_idx=0)
                    + i * n
                    for i, cloud in enumerate(clouds)
                ]
            )

        return loop_over_clouds
    offsets = torch.arange(num_clouds, device=pos.device).view(-1, 1) * n
    if name == "torch_quickfps":
        quickfps = _import("torch_quickfps")
        return lambda: (
            quickfps.sample(dense, num_samples, h=7, return_points=False) + offsets
        ).view(-1)
    if name == "torch_fps":
        torch_fps = _import("torch_fps")
        mask = torch.ones(num_clouds, n, dtype=torch.bool, device=pos.device)
        return lambda: (torch_fps.farthest_point_sampling(dense, mask, num_samples) + offsets).view(
            -1
        )
    raise ValueError(f"unknown peer {name!r}; choose one of {sorted(PEERS)}")
