r"""Input checks shared by the public functions, each failing with a message that says what
was wrong."""

from __future__ import annotations

from typing import Optional

import torch
from torch import Tensor

__all__ = ["check_points", "check_batch", "check_ratio", "check_positive_int", "check_same_device"]


def check_points(pos: Tensor, name: str = "pos", allow_empty: bool = True, dim: int = 3):
    r"""Checks that :obj:`pos` is a finite floating-point tensor of shape :obj:`[N, dim]`."""
    if not isinstance(pos, Tensor):
        raise TypeError(f"{name} must be a torch.Tensor (got {type(pos).__name__})")
    if pos.dim() != 2 or pos.size(1) != dim:
        raise ValueError(f"{name} must have shape [N, {dim}] (got {list(pos.shape)})")
    if not torch.is_floating_point(pos):
        raise TypeError(f"{name} must be floating point (got {pos.dtype})")
    if not allow_empty and pos.size(0) == 0:
        raise ValueError(f"{name} is empty: at least one point is needed")
    # Meta tensors (shape-only) hold no values to check.
    if pos.numel() > 0 and pos.device.type != "meta" and not bool(torch.isfinite(pos).all()):
        raise ValueError(f"{name} contains NaN or infinite values")


def check_batch(batch: Optional[Tensor], pos: Tensor, name: str = "batch") -> Tensor:
    r"""Checks a PyG batch vector against its points and returns it (all zeros for
    :obj:`None`): 1-D, integer, one entry per point, on the points' device, non-negative and
    sorted."""
    if batch is None:
        return torch.zeros(pos.size(0), dtype=torch.long, device=pos.device)
    if not isinstance(batch, Tensor):
        raise TypeError(f"{name} must be a torch.Tensor or None (got {type(batch).__name__})")
    if batch.dtype != torch.long:
        if batch.dtype in (torch.int8, torch.int16, torch.int32, torch.uint8):
            batch = batch.long()
        else:
            raise TypeError(f"{name} must be an integer tensor (got {batch.dtype})")
    if batch.dim() != 1 or batch.numel() != pos.size(0):
        raise ValueError(
            f"{name} must have shape [{pos.size(0)}] to match the points (got {list(batch.shape)})"
        )
    check_same_device(pos, batch)
    if batch.numel() > 0 and batch.device.type != "meta":
        if bool(batch[0] < 0):
            raise ValueError(f"{name} contains negative cloud indices")
        if bool((batch[1:] < batch[:-1]).any()):
            raise ValueError(
                f"{name} must be sorted (points of a cloud contiguous, clouds in order), "
                "as torch_geometric.loader.DataLoader builds it"
            )
    return batch


def check_ratio(ratio: float):
    r"""Checks that :obj:`ratio` is a number in :math:`(0, 1]`."""
    if isinstance(ratio, Tensor):
        if ratio.numel() != 1:
            raise ValueError(f"ratio must be a single number (got shape {list(ratio.shape)})")
        ratio = float(ratio)
    if not isinstance(ratio, (int, float)) or isinstance(ratio, bool):
        raise TypeError(f"ratio must be a float (got {type(ratio).__name__})")
    if not 0.0 < ratio <= 1.0:
        raise ValueError(f"ratio must lie in (0, 1] (got {ratio})")
    return float(ratio)


def check_positive_int(value: int, name: str):
    r"""Checks that :obj:`value` is an integer of at least 1."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int (got {type(value).__name__})")
    if value < 1:
        raise ValueError(f"{name} must be at least 1 (got {value})")


def check_same_device(*tensors: Tensor):
    r"""Checks that all tensors live on one device."""
    devices = {t.device for t in tensors if t is not None}
    if len(devices) > 1:
        names = ", ".join(sorted(str(d) for d in devices))
        raise ValueError(f"Expected all tensors on one device, found {names}")
