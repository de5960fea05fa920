r"""Exact neighbour search within clouds on one of four back-ends: :obj:`"kdtree"` (scipy, the
CPU default), :obj:`"pyg_lib"` and :obj:`"torch_cluster"` (the GPU default when installed) and
:obj:`"torch"` (brute force, any device). Only the order of equal distances may differ."""

from __future__ import annotations

import contextlib
import importlib
import importlib.util
from typing import Iterator, NamedTuple, Optional, Union

import torch
from torch import Tensor

from tg_samplenet.ops.batch import cloud_ptr
from tg_samplenet.ops.checks import (
    InputError,
    check_bool,
    check_choice,
    check_cloud_batch,
    check_int,
    check_like,
    check_number,
    check_points,
    check_positive_int,
    check_references,
)
from tg_samplenet.ops.kdtree import kdtree_knn
from tg_samplenet.ops.scaling import center_clouds, cloud_exponents, power_of_two, scale_clouds

__all__ = [
    "KNNResult",
    "available_backends",
    "get_backend",
    "use_backend",
    "padded_knn",
    "nearest_index",
    "knn",
    "radius",
]

BACKENDS = ("pyg_lib", "torch_cluster", "kdtree", "torch")
_BLOCK_ELEMENTS = 1 << 22  # distances per block of the brute force (16 MiB of float32)


def _importable(name: str) -> bool:
    if importlib.util.find_spec(name) is None:
        return False
    try:
        importlib.import_module(name)  # a wheel built against another torch fails here
    except (ImportError, OSError):
        return False
    return name != "pyg_lib" or hasattr(torch.ops.pyg, "knn")


_AVAILABLE = {
    "pyg_lib": _importable("pyg_lib"),
    "torch_cluster": _importable("torch_cluster"),
    "kdtree": importlib.util.find_spec("scipy") is not None,
    "torch": True,
}
_forced: Optional[str] = None


def available_backends() -> list[str]:
    r"""The installed back-ends of :obj:`"pyg_lib"`, :obj:`"torch_cluster"`,
    :obj:`"kdtree"` and :obj:`"torch"`."""
    return [name for name in BACKENDS if _AVAILABLE[name]]


def get_backend(device: Union[str, torch.device] = "cpu") -> str:
    r"""The back-end of searches on :obj:`device`: the one forced by :func:`use_backend`,
    else :obj:`"kdtree"` on CPU and the first installed of :obj:`"pyg_lib"`,
    :obj:`"torch_cluster"` and :obj:`"torch"` elsewhere."""
    if _forced is not None:
        return _forced
    if torch.device(device).type == "cpu" and _AVAILABLE["kdtree"]:
        return "kdtree"
    return next(name for name in ("pyg_lib", "torch_cluster", "torch") if _AVAILABLE[name])


@contextlib.contextmanager
def use_backend(name: str) -> Iterator[None]:
    r"""Forces one back-end inside a :obj:`with` block (:obj:`"kdtree"` searches CPU
    tensors only).

    Args:
        name (str): :obj:`"pyg_lib"`, :obj:`"torch_cluster"`, :obj:`"kdtree"` or
            :obj:`"torch"`.
    """
    global _forced
    check_choice(name, "name", BACKENDS)
    if not _AVAILABLE[name]:
        raise InputError("name", f"back-end {name!r} is not installed here")
    previous, _forced = _forced, name
    try:
        yield
    finally:
        _forced = previous


class KNNResult(NamedTuple):
    r"""The :obj:`k` nearest neighbours of each query.

    Attributes:
        index (torch.LongTensor): :obj:`[M, k]` indices into the reference points, nearest
            first; where a cloud holds fewer than :obj:`k` points, padding slots repeat the
            nearest one.
        mask (torch.BoolTensor): :obj:`[M, k]`, :obj:`True` for real neighbours.
    """

    index: Tensor
    mask: Tensor


def knn_table(
    x: Tensor,
    y: Tensor,
    k: int,
    batch_x: Tensor,
    batch_y: Tensor,
    num_clouds: int,
    max_distance: Optional[float] = None,
) -> tuple[Tensor, Tensor]:
    r"""The kernel of every search (:obj:`tg_samplenet::knn`): :class:`KNNResult`'s
    :obj:`(index, mask)`."""
    if y.size(0) == 0 or x.size(0) == 0:
        index = torch.zeros((y.size(0), k), dtype=torch.long, device=y.device)
        return index, index.bool()
    x, y = x.detach(), y.detach()
    if x.dtype in (torch.float16, torch.bfloat16):
        x, y = x.float(), y.float()
    backend = get_backend(x.device)
    if max_distance is not None and backend == "kdtree" and x.device.type == "cpu":
        # A radius search: one exact power of two for every cloud, so that the bound holds
        # for all; the search stops at it (a little beyond, the caller decides the edge).
        exponent = cloud_exponents([(x, batch_x), (y, batch_y)], num_clouds).max()
        factor = float(power_of_two(-exponent, torch.float64))
        bound = max_distance * factor * (1 + 1e-9)
        return kdtree_knn(x * factor, y * factor, k, batch_x, batch_y, num_clouds, bound)
    x, y = scale_clouds([(x, batch_x), (y, batch_y)], num_clouds)
    if backend == "kdtree" and x.device.type == "cpu":
        return kdtree_knn(x, y, k, batch_x, batch_y, num_clouds)
    if backend in ("pyg_lib", "torch_cluster"):
        return _knn_extension(backend, x, y, k, batch_x, batch_y, num_clouds)
    return _knn_brute(x, y, k, batch_x, batch_y, num_clouds)


def _knn_extension(
    backend: str, x: Tensor, y: Tensor, k: int, batch_x: Tensor, batch_y: Tensor, B: int
) -> tuple[Tensor, Tensor]:
    if backend == "pyg_lib":
        row, col = torch.ops.pyg.knn(
            x, y, cloud_ptr(batch_x, B), cloud_ptr(batch_y, B), k, False, 1
        )
    else:
        import torch_cluster

        row, col = torch_cluster.knn(x, y, k, batch_x, batch_y, batch_size=B)
    # [2, E] edges grouped by query, nearest first -> [M, k], padding repeating slot 0.
    count = torch.bincount(row, minlength=y.size(0))
    slot = torch.arange(row.numel(), device=row.device) - (count.cumsum(0) - count)[row]
    index = torch.full((y.size(0), k), -1, dtype=torch.long, device=y.device)
    index[row, slot] = col
    mask = index >= 0
    return torch.where(mask, index, index[:, :1]), mask


def _knn_brute(
    x: Tensor, y: Tensor, k: int, batch_x: Tensor, batch_y: Tensor, B: int
) -> tuple[Tensor, Tensor]:
    # Padded clouds, a block of queries at a time; centred so the expanded form cannot cancel.
    from torch_geometric.utils import to_dense_batch

    x, y = center_clouds([(x, batch_x), (y, batch_y)], B)
    xd, x_valid = to_dense_batch(x, batch_x, batch_size=B)
    yd, y_valid = to_dense_batch(y, batch_y, batch_size=B)
    kk = min(k, xd.size(1))
    x_sq = xd.pow(2).sum(-1).unsqueeze(1)  # [B, 1, N_max]
    block = max(1, _BLOCK_ELEMENTS // max(1, B * xd.size(1)))
    dists, picks = [], []
    for start in range(0, yd.size(1), block):
        part = yd[:, start : start + block]
        dist = torch.baddbmm(x_sq, part, xd.transpose(1, 2), alpha=-2.0)
        dist = (dist + part.pow(2).sum(-1, keepdim=True)).masked_fill(
            ~x_valid[:, None], float("inf")
        )
        value, pick = dist.topk(kk, dim=2, largest=False)
        dists.append(value)
        picks.append(pick)
    value = torch.cat(dists, 1)[y_valid]
    index = torch.cat(picks, 1)[y_valid] + cloud_ptr(batch_x, B)[batch_y, None]
    mask = torch.isfinite(value)
    if kk < k:
        index = torch.cat([index, index.new_zeros(index.size(0), k - kk)], 1)
        mask = torch.cat([mask, mask.new_zeros(mask.size(0), k - kk)], 1)
    return torch.where(mask, index, index[:, :1]), mask


def _search(x, y, k, batch_x, batch_y, names, batch_size=None) -> tuple[Tensor, Tensor, int]:
    x_name, y_name = names
    check_points(x, x_name, dim=None)
    check_points(y, y_name, dim=None)
    check_like(x, y, x_name, y_name)
    batch_x, clouds_x = check_cloud_batch(batch_x, x, f"batch_{x_name}", pos_name=x_name)
    batch_y, clouds_y = check_cloud_batch(batch_y, y, f"batch_{y_name}", pos_name=y_name)
    B = max(clouds_x, clouds_y)
    if batch_size is not None:
        B = max(B, check_int(batch_size, "batch_size", minimum=B))
    check_references(batch_x, batch_y, B, x_name, y_name)
    return batch_x, batch_y, B


def padded_knn(
    x: Tensor,
    y: Tensor,
    k: int,
    batch_x: Optional[Tensor] = None,
    batch_y: Optional[Tensor] = None,
) -> KNNResult:
    r"""For each point of :obj:`y`, its :obj:`k` nearest points of :obj:`x` in the same
    cloud, as :func:`torch_geometric.nn.knn` but in a fixed :obj:`[M, k]` table.

    .. code-block:: python

        x = torch.tensor([[0.0, 0, 0], [1, 0, 0], [5, 0, 0], [6, 0, 0]])
        y = torch.tensor([[0.2, 0, 0], [5.9, 0, 0]])
        index, mask = padded_knn(x, y, 3, torch.tensor([0, 0, 1, 1]), torch.tensor([0, 1]))
        # index = [[0, 1, 0], [3, 2, 3]], mask = [[True, True, False], [True, True, False]]

    Args:
        x (torch.Tensor): Reference points :math:`\mathbf{X} \in \mathbb{R}^{N \times D}`.
        y (torch.Tensor): Query points :math:`\mathbf{Y} \in \mathbb{R}^{M \times D}` of the
            same dtype.
        k (int): The number of neighbours.
        batch_x (torch.Tensor, optional): Sorted batch vector
            :math:`\mathbf{b} \in {\{ 0, \ldots, B-1\}}^N` of :obj:`x`. (default: :obj:`None`)
        batch_y (torch.Tensor, optional): Sorted batch vector of :obj:`y`; every cloud with
            queries needs reference points. (default: :obj:`None`)

    :rtype: :class:`KNNResult` (without gradient)
    """
    k = check_positive_int(k, "k")
    batch_x, batch_y, B = _search(x, y, k, batch_x, batch_y, ("x", "y"))
    return KNNResult(*torch.ops.tg_samplenet.knn(x, y, k, batch_x, batch_y, B))


def nearest_index(
    x: Tensor, y: Tensor, batch_x: Optional[Tensor] = None, batch_y: Optional[Tensor] = None
) -> Tensor:
    r"""The index of the nearest point of :obj:`x` (same cloud) for each point of :obj:`y`,
    with the arguments of :func:`padded_knn`.

    :rtype: :class:`torch.LongTensor` of shape :obj:`[M]`
    """
    return padded_knn(x, y, 1, batch_x, batch_y).index[:, 0]


def _edges(index: Tensor, mask: Tensor) -> Tensor:
    row = torch.arange(index.size(0), device=index.device).unsqueeze(1).expand_as(index)
    return torch.stack([row[mask], index[mask]])


def knn(
    x: Tensor,
    y: Tensor,
    k: int,
    batch_x: Optional[Tensor] = None,
    batch_y: Optional[Tensor] = None,
    cosine: bool = False,
    num_workers: int = 1,
    batch_size: Optional[int] = None,
) -> Tensor:
    r""":func:`torch_geometric.nn.knn` with PyG's contract and no extension needed: for each
    element of :obj:`y`, its :obj:`k` nearest points of :obj:`x` in the same cloud.

    .. code-block:: python

        from tg_samplenet.ops import knn
        row, col = knn(x, y, k=16, batch_x=batch_x, batch_y=batch_y)  # y[row] ~ x[col]

    Args:
        x (torch.Tensor): Reference points :math:`\mathbf{X} \in \mathbb{R}^{N \times F}`.
        y (torch.Tensor): Query points :math:`\mathbf{Y} \in \mathbb{R}^{M \times F}`.
        k (int): The number of neighbours.
        batch_x (torch.Tensor, optional): Sorted batch vector of :obj:`x`.
            (default: :obj:`None`)
        batch_y (torch.Tensor, optional): Sorted batch vector of :obj:`y`.
            (default: :obj:`None`)
        cosine (bool, optional): Rank by cosine distance instead of Euclidean.
            (default: :obj:`False`)
        num_workers (int, optional): Kept for PyG's signature (the CPU search uses
            :func:`torch.get_num_threads` threads). (default: :obj:`1`)
        batch_size (int, optional): The number of clouds. (default: :obj:`None`)

    :rtype: :class:`torch.LongTensor` :obj:`[2, E]`: row 0 indexes :obj:`y`, row 1 indexes
        :obj:`x`; grouped by query in order, nearest first
    """
    k = check_positive_int(k, "k")
    check_bool(cosine, "cosine")
    batch_x, batch_y, B = _search(x, y, k, batch_x, batch_y, ("x", "y"), batch_size)
    if cosine:  # the Euclidean order of unit vectors is the cosine order
        x = torch.nn.functional.normalize(x.detach().double(), dim=1).to(x.dtype)
        y = torch.nn.functional.normalize(y.detach().double(), dim=1).to(y.dtype)
    return _edges(*torch.ops.tg_samplenet.knn(x, y, k, batch_x, batch_y, B))


def radius(
    x: Tensor,
    y: Tensor,
    r: float,
    batch_x: Optional[Tensor] = None,
    batch_y: Optional[Tensor] = None,
    max_num_neighbors: int = 32,
    num_workers: int = 1,
    batch_size: Optional[int] = None,
) -> Tensor:
    r""":func:`torch_geometric.nn.radius` with PyG's contract and no extension needed: for
    each element of :obj:`y`, the points of :obj:`x` in the same cloud closer than :obj:`r`;
    the nearest :obj:`max_num_neighbors` where more lie within :obj:`r`.

    .. code-block:: python

        from tg_samplenet.ops import radius
        row, col = radius(pos, pos[idx], 0.2, batch, batch[idx], max_num_neighbors=64)

    Args:
        x (torch.Tensor): Reference points :math:`\mathbf{X} \in \mathbb{R}^{N \times F}`.
        y (torch.Tensor): Query points :math:`\mathbf{Y} \in \mathbb{R}^{M \times F}`.
        r (float): The radius.
        batch_x (torch.Tensor, optional): Sorted batch vector of :obj:`x`.
            (default: :obj:`None`)
        batch_y (torch.Tensor, optional): Sorted batch vector of :obj:`y`.
            (default: :obj:`None`)
        max_num_neighbors (int, optional): The most neighbours returned per query.
            (default: :obj:`32`)
        num_workers (int, optional): Kept for PyG's signature. (default: :obj:`1`)
        batch_size (int, optional): The number of clouds. (default: :obj:`None`)

    :rtype: :class:`torch.LongTensor` :obj:`[2, E]`: row 0 indexes :obj:`y`, row 1 indexes
        :obj:`x`; grouped by query in order, nearest first
    """
    r = check_number(r, "r", positive=True)
    k = check_positive_int(max_num_neighbors, "max_num_neighbors")
    batch_x, batch_y, B = _search(x, y, k, batch_x, batch_y, ("x", "y"), batch_size)
    row, col = _edges(*torch.ops.tg_samplenet.knn(x, y, k, batch_x, batch_y, B, r))
    with torch.no_grad():  # in float64, where no float32 difference overflows
        offset = x.detach()[col].double() - y.detach()[row].double()
        inside = offset.pow(2).sum(-1) < r * r
    return torch.stack([row[inside], col[inside]])
