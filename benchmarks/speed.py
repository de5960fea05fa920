r"""Speed and peak memory of SampleNet against PyG's point samplers.

Measures, side by side in one process, on clouds of :math:`N` points uniform on the unit
sphere (the scale of :class:`~torch_geometric.transforms.NormalizeScale`'d shapes):

- sampling :math:`\lceil N r \rceil` points per cloud with :func:`torch_geometric.nn.fps`,
  batched random sampling, PyG's voxel grid
  (:class:`~torch_geometric.transforms.GridSampling`, size calibrated to the same count),
  SampleNet inference (network, matching, de-duplication, completion) and a SampleNet
  training step (forward and backward);
- the soft projection alone (:class:`~tg_samplenet.SoftProjection`, forward and backward)
  against a dense plain-PyTorch reference that builds the full :math:`[M, N]` distance
  matrix;

and checks four targets (end-to-end classification cost, hard sampling against fps on a
large cloud, soft-projection memory, linear scaling). Writes :obj:`speed.json`,
:obj:`speed.md` and :obj:`speed.png` into :obj:`--out` and prints the Markdown.

.. code-block:: bash

    python benchmarks/speed.py                          # full run, about 10 min on 2 cores
    python benchmarks/speed.py --sizes 1000 4000 16000  # fewer sizes
    python benchmarks/speed.py --smoke --out /tmp/speed # seconds
    python benchmarks/speed.py --device cuda
"""

from __future__ import annotations

import argparse
import gc
import math
import os
import sys
from collections.abc import Callable, Sequence
from fractions import Fraction
from typing import Any

import torch
from torch import Tensor

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # noqa: E402  (benchmarks/ is a folder of scripts, not a package)

SIZES = (1000, 4000, 16000, 100_000, 1_000_000)
QUICK_SIZES = (1000, 16000, 100_000)
BATCH_SIZES = (1, 32)
RATIOS = (1 / 8, 1 / 32)
REPEATS = 7
SEED = 0

# Budgets: what a 24 GiB, 2-core machine runs in about 10 minutes.
MAX_POINTS = 4_000_000  # B * N per measurement
MAX_TRAIN_POINTS = 1_000_000  # B * N for a training step (~5 GiB of activations at 1M)
MAX_DENSE_BYTES = 2 << 30  # the dense reference's [B, M, N] float32 matrix (peak ~2x)
MAX_CASE_S = 60.0  # skip a case predicted (from smaller N) to take longer than this
MAX_SCALING_CASE_S = 300.0  # ... except SampleNet inference at B=1, r=1/32 (target 4)
MAX_MEMORY_CALL_S = 60.0  # calls longer than this are not run again to measure memory
TIME_BUDGET_S = 2.0  # no further repeat once the timed calls add up to this
SINGLE_RUN_ABOVE_S = 10.0  # a warm-up longer than this is the measurement
SMALL_WARMUP_ABOVE_S = 2.0  # memory children warm up on a small input above this

NOISE = 0.01  # of the cloud scale (radius 1): how far "trained" simplified points lie
K = 7

SAMPLERS = ("fps", "random", "voxel_grid", "samplenet_eval", "samplenet_train")
PROJECTIONS = ("soft_projection", "dense_projection")
LABELS = {
    "fps": "fps",
    "random": "random",
    "voxel_grid": "voxel grid",
    "samplenet_eval": "SampleNet inference",
    "samplenet_train": "SampleNet train step",
    "soft_projection": "SoftProjection fwd+bwd",
    "dense_projection": "dense reference fwd+bwd",
    "hard_sample": "hard_sample",
    "pointnet_full": "PointNet on all points",
    "samplenet_pointnet": "SampleNet + PointNet",
}

INPUTS = (
    "B clouds of N points each, uniform on the unit sphere (radius 1), seed 0. SampleNet is "
    "untrained except for its last layer, whose weight is zero and whose bias holds m points "
    f"uniform on the unit sphere jittered by N(0, {NOISE}^2) per coordinate: the simplified "
    "set then lies near every cloud's surface, as a trained sampler's does (a random "
    "network's collapsed output would make the FPS completion do nearly all the work). The "
    "network costs the same whatever its weights. Soft-projection and hard_sample queries "
    f"are M input points per cloud drawn at random and jittered by N(0, {NOISE}^2)."
)


def _tg():
    import tg_samplenet

    return tg_samplenet


def has_torch_cluster() -> bool:
    r"""Whether PyG's :func:`~torch_geometric.nn.fps` and
    :func:`~torch_geometric.nn.voxel_grid` can run (PyG 2.7 calls :obj:`torch_cluster`)."""
    import torch_geometric.typing

    return bool(getattr(torch_geometric.typing, "WITH_TORCH_CLUSTER", False))


def fps_implementation() -> str:
    if has_torch_cluster():
        return "torch_geometric.nn.fps (torch_cluster)"
    return "tg_samplenet.fps (plain PyTorch; torch_cluster is not installed)"


def format_ratio(ratio: float | None) -> str:
    if ratio is None:
        return "–"
    fraction = Fraction(ratio).limit_denominator(1000)
    return f"{fraction.numerator}/{fraction.denominator}" if fraction.numerator else str(ratio)


def samples_per_cloud(num_points: int, ratio: float) -> int:
    r""":math:`\lceil N r \rceil` in float32, as :func:`torch_geometric.nn.fps` counts."""
    return int(_tg().sample_counts(torch.tensor([num_points]), ratio=ratio))


def ratio_for_count(num_points: int, count: int) -> float:
    r"""A ratio for which :func:`torch_geometric.nn.fps` returns exactly :obj:`count` of
    :obj:`num_points` points (float32 rounding may need a nudge)."""
    # The product is taken in float32, so step the ratio in float32 units.
    ratio = torch.tensor(count / num_points, dtype=torch.float32)
    for _ in range(64):
        got = samples_per_cloud(num_points, float(ratio))
        if got == count:
            return float(ratio)
        toward = torch.tensor(0.0 if got > count else 1.0)
        ratio = torch.nextafter(ratio, toward)
    raise ValueError(f"no float ratio gives {count} of {num_points} points")


def sphere_clouds(
    num_points: int, batch_size: int, seed: int = SEED, device: str = "cpu"
) -> tuple[Tensor, Tensor]:
    r""":obj:`batch_size` clouds of :obj:`num_points` points uniform on the unit sphere, in
    PyG's layout :obj:`(pos [B * N, 3], batch [B * N])`."""
    generator = torch.Generator().manual_seed(seed)
    pos = torch.randn(batch_size * num_points, 3, generator=generator)
    pos = pos / pos.norm(dim=1, keepdim=True)
    batch = torch.arange(batch_size).repeat_interleave(num_points)
    return pos.to(device), batch.to(device)


def random_sample(
    batch: Tensor, counts: Tensor, generator: torch.Generator | None = None
) -> Tensor:
    r"""Uniform random sampling without replacement of :obj:`counts[i]` points from each
    cloud, batched: one random permutation of all points, stably sorted by cloud, keeps a
    uniformly random order inside each cloud, of which the first :obj:`counts[i]` are
    taken.

    Args:
        batch (torch.Tensor): Sorted batch vector :obj:`[N]`.
        counts (torch.Tensor): Points to take per cloud :obj:`[B]`, at most its size.
        generator (torch.Generator, optional): A CPU random source; without one the
            permutation is drawn on :obj:`batch`'s device. (default: :obj:`None`)

    :rtype: :class:`torch.LongTensor` of indices, grouped by cloud in batch order.
    """
    from tg_samplenet.ops.batch import rank_in_cloud

    if generator is None:
        perm = torch.randperm(batch.numel(), device=batch.device)
    else:
        perm = torch.randperm(batch.numel(), generator=generator).to(batch.device)
    order = perm[torch.sort(batch[perm], stable=True).indices]
    # batch[order] == batch, since batch is sorted.
    keep = rank_in_cloud(batch, counts.numel()) < counts[batch]
    return order[keep]


def jittered_subset(
    pos: Tensor, batch: Tensor, num_samples: int, seed: int = SEED
) -> tuple[Tensor, Tensor]:
    r""":obj:`num_samples` points per cloud drawn at random from :obj:`pos` and moved by
    :math:`\mathcal{N}(0, \text{NOISE}^2)`: simplified points near the surface, as a trained
    sampler gives. Returns :obj:`(points, batch)`."""
    generator = torch.Generator().manual_seed(seed + 1)
    num_clouds = int(batch[-1]) + 1
    counts = torch.full((num_clouds,), num_samples, dtype=torch.long, device=pos.device)
    index = random_sample(batch, counts, generator)
    noise = NOISE * torch.randn(index.numel(), 3, generator=generator).to(pos.device)
    return pos[index] + noise, batch[index]


def emulated_samplenet(num_out_points: int, seed: int = SEED, device: str = "cpu"):
    r"""A :class:`~tg_samplenet.SampleNet` whose simplified points lie near the unit sphere
    (see :data:`INPUTS`): its last layer outputs a fixed jittered set whatever the cloud."""
    torch.manual_seed(seed)
    sampler = _tg().SampleNet(num_out_points, k=K)
    generator = torch.Generator().manual_seed(seed + 2)
    target = torch.randn(num_out_points, 3, generator=generator)
    target = target / target.norm(dim=1, keepdim=True)
    target = target + NOISE * torch.randn(num_out_points, 3, generator=generator)
    last = sampler.head.lins[-1]
    with torch.no_grad():
        last.weight.zero_()
        last.bias.copy_(target.flatten())
    return sampler.to(device)


def voxel_count(pos: Tensor, batch: Tensor, size: float) -> int:
    from torch_geometric.nn import voxel_grid

    return int(torch.unique(voxel_grid(pos, size, batch)).numel())


def calibrate_voxel_size(num_points: int, ratio: float, seed: int = SEED) -> tuple[float, int]:
    r"""The voxel size for which :class:`~torch_geometric.transforms.GridSampling` keeps about
    :math:`\lceil N r \rceil` points of one sphere cloud (within 2%), and the count it
    keeps. On a surface the count goes as :math:`1 / s^2`, which the updates use."""
    pos, batch = sphere_clouds(num_points, 1, seed)
    target = samples_per_cloud(num_points, ratio)
    size = math.sqrt(4 * math.pi / target)
    best = (size, voxel_count(pos, batch, size))
    for _ in range(12):
        count = voxel_count(pos, batch, size)
        if abs(count - target) < abs(best[1] - target):
            best = (size, count)
        if abs(count - target) <= 0.02 * target:
            break
        size *= math.sqrt(count / target)
    return best


def dense_soft_projection(
    pos: Tensor,
    query: Tensor,
    batch: Tensor,
    query_batch: Tensor,
    k: int,
    sigma: Tensor,
) -> Tensor:
    r"""The soft projection written densely in plain PyTorch, the reference the sparse
    :class:`~tg_samplenet.SoftProjection` is measured against: the full :math:`[B, M, N]`
    squared-distance matrix
    (:math:`\|\mathbf{q}\|^2 - 2 \mathbf{q}^\top \mathbf{p} + \|\mathbf{p}\|^2`, one batched
    matrix product), :math:`k` smallest by :func:`torch.topk` (whose values carry the
    gradient, so the backward pass runs through the dense matrix), gather, softmax over
    :math:`-d / \sigma` and the weighted sum. Padding of unequal clouds is masked.

    :rtype: :class:`torch.Tensor` of shape :obj:`[M, 3]`
    """
    from torch_geometric.utils import to_dense_batch

    num_clouds = int(max(batch.max(), query_batch.max())) + 1
    dense_pos, valid = to_dense_batch(pos, batch, batch_size=num_clouds)  # [B, n, 3]
    dense_query, query_valid = to_dense_batch(query, query_batch, batch_size=num_clouds)
    dist = torch.baddbmm(
        dense_pos.pow(2).sum(-1).unsqueeze(1), dense_query, dense_pos.transpose(1, 2), alpha=-2
    )
    dist = dist + dense_query.pow(2).sum(-1, keepdim=True)  # [B, m, n]
    if not bool(valid.all()):
        dist = dist.masked_fill(~valid.unsqueeze(1), float("inf"))
    nearest_dist, index = dist.topk(k, dim=-1, largest=False)  # [B, m, k]
    weights = torch.softmax(-nearest_dist / sigma, dim=-1)
    offset = torch.arange(num_clouds, device=pos.device).view(-1, 1, 1) * dense_pos.size(1)
    grouped = dense_pos.reshape(-1, 3)[index + offset]  # [B, m, k, 3]
    return (weights.unsqueeze(-1) * grouped).sum(2)[query_valid]


def build_case(
    method: str,
    num_points: int,
    batch_size: int,
    ratio: float | None = None,
    num_samples: int | None = None,
    device: str = "cpu",
    seed: int = SEED,
    voxel_size: float | None = None,
) -> Callable[[], Any]:
    r"""Creates the inputs of one measurement and returns the call to time. Top-level and
    with plain arguments, so that a fresh child process can rebuild it to measure memory.

    Args:
        method (str): One of :data:`SAMPLERS`, :data:`PROJECTIONS`, :obj:`"hard_sample"`,
            :obj:`"pointnet_full"` or :obj:`"samplenet_pointnet"`.
        num_points (int): Points per cloud :math:`N`.
        batch_size (int): Clouds :math:`B`.
        ratio (float, optional): Sampling ratio :math:`r`. (default: :obj:`None`)
        num_samples (int, optional): Points per cloud :math:`M`, instead of
            :math:`\lceil N r \rceil`. (default: :obj:`None`)
        device (str, optional): The device. (default: :obj:`"cpu"`)
        seed (int, optional): Seed of the inputs. (default: :obj:`0`)
        voxel_size (float, optional): Voxel size of :obj:`"voxel_grid"`. (default: :obj:`None`)
    """
    tg = _tg()
    if num_samples is None:
        if ratio is None:
            raise ValueError("build_case needs ratio or num_samples")
        num_samples = samples_per_cloud(num_points, ratio)
    if ratio is None:
        ratio = ratio_for_count(num_points, num_samples)
    pos, batch = sphere_clouds(num_points, batch_size, seed, device)
    counts = torch.full((batch_size,), num_samples, dtype=torch.long, device=device)

    if method == "fps":
        if has_torch_cluster():
            from torch_geometric.nn import fps

            return lambda: fps(pos, batch, ratio=ratio, random_start=False)
        return lambda: tg.fps(pos, batch, ratio=ratio)

    if method == "random":
        return lambda: random_sample(batch, counts)

    if method == "voxel_grid":
        from torch_geometric.data import Data
        from torch_geometric.transforms import GridSampling

        if voxel_size is None:
            voxel_size = calibrate_voxel_size(num_points, ratio, seed)[0]
        transform = GridSampling(voxel_size)
        # GridSampling rewrites the Data it gets: give it a fresh one each call.
        return lambda: transform(Data(pos=pos, batch=batch)).pos

    if method == "samplenet_eval":
        sampler = emulated_samplenet(num_samples, seed, device).eval()

        def infer():
            with torch.no_grad():
                return sampler(pos, batch, ratio=ratio).index

        return infer

    if method == "samplenet_train":
        sampler = emulated_samplenet(num_samples, seed, device).train()

        def train_step():
            sampler.zero_grad(set_to_none=True)
            out = sampler(pos, batch, ratio=ratio)
            task_loss = out.pos.pow(2).sum(-1).mean()  # stands in for the task network
            loss = tg.samplenet_loss(task_loss, out, pos, batch)
            loss.backward()
            return loss.detach()

        return train_step

    if method in PROJECTIONS:
        query, query_batch = jittered_subset(pos, batch, num_samples, seed)
        query.requires_grad_(True)
        projection = tg.SoftProjection(k=K).to(device)
        generator = torch.Generator().manual_seed(seed + 3)
        grad_out = torch.randn(query.size(0), 3, generator=generator).to(device)

        def project():
            query.grad = None
            projection.zero_grad(set_to_none=True)
            if method == "soft_projection":
                out = projection(pos, query, batch, query_batch).pos
            else:
                out = dense_soft_projection(pos, query, batch, query_batch, K, projection.sigma)
            (out * grad_out).sum().backward()
            return out.detach()

        return project

    if method == "hard_sample":
        simplified, simplified_batch = jittered_subset(pos, batch, num_samples, seed)

        def match():
            with torch.no_grad():
                return tg.hard_sample(pos, batch, simplified, simplified_batch, counts)

        return match

    if method in ("pointnet_full", "samplenet_pointnet"):
        from tg_samplenet.tasks import PointNet

        torch.manual_seed(seed)
        classifier = PointNet(40).to(device).eval()  # ModelNet40, with both T-Nets
        if method == "pointnet_full":

            def classify_all():
                with torch.no_grad():
                    return classifier(pos, batch)

            return classify_all
        sampler = emulated_samplenet(num_samples, seed, device).eval()

        def sample_then_classify():
            with torch.no_grad():
                out = sampler(pos, batch)
                return classifier(out.pos, out.batch)

        return sample_then_classify

    raise ValueError(f"unknown method {method!r}")


def skip_reason(method: str, num_points: int, batch_size: int, num_samples: int) -> str:
    r"""Why a measurement is over the budgets, or :obj:`""`."""
    total = batch_size * num_points
    if total > MAX_POINTS:
        return f"B*N = {total:.3g} > {MAX_POINTS:.3g} points"
    if method == "samplenet_train" and total > MAX_TRAIN_POINTS:
        return f"training B*N = {total:.3g} > {MAX_TRAIN_POINTS:.3g} points"
    if method == "dense_projection":
        size = 4 * batch_size * num_samples * num_points
        if size > MAX_DENSE_BYTES:
            limit = common.format_bytes(MAX_DENSE_BYTES)
            return f"dense [B, M, N] matrix {common.format_bytes(size)} > {limit}"
    if method == "voxel_grid" and not has_torch_cluster():
        return "voxel_grid needs torch_cluster"
    return ""


def small_kwargs(kwargs: dict[str, Any]) -> dict[str, Any]:
    r"""The same measurement on one cloud of 1000 points, as a warm-up in memory children."""
    small = dict(kwargs, num_points=1000, batch_size=1)
    if kwargs.get("num_samples") is not None:
        fraction = kwargs["num_samples"] / kwargs["num_points"]
        small["num_samples"] = max(K, round(1000 * fraction))
        small["ratio"] = None
    return small


def predicted_time(history: list[tuple[int, float]], num_points: int, method: str) -> float | None:
    r"""Time of a case extrapolated from the same method at smaller :math:`N` (same B and
    ratio): the log-log slope of the last two sizes clipped to [1, 2], or, with one size, 2
    for fps (:math:`O(N M)` with :math:`M \propto N`) and 1 otherwise."""
    points = sorted(p for p in history if p[0] < num_points)
    if not points:
        return None
    n0, t0 = points[-1]
    if len(points) >= 2:
        slope = common.loglog_slope([p[0] for p in points[-2:]], [p[1] for p in points[-2:]])
        slope = min(max(slope, 1.0), 2.0)
    else:
        slope = 2.0 if method == "fps" else 1.0
    return t0 * (num_points / n0) ** slope


class Runner:
    r"""Times one measurement and, unless disabled, measures its peak memory."""

    def __init__(self, device: str, repeats: int, memory: bool):
        self.device = device
        self.repeats = repeats
        self.memory = memory

    def measure(self, kwargs: dict[str, Any]) -> dict[str, Any]:
        row: dict[str, Any] = {"status": "ok", "note": ""}
        try:
            fn = build_case(**kwargs)
            timing = common.time_call(
                fn,
                self.device,
                warmup=1,
                repeats=self.repeats,
                budget_s=TIME_BUDGET_S,
                single_run_above_s=SINGLE_RUN_ABOVE_S,
            )
            row.update(time_s=timing.median, times_s=timing.times, warmup=timing.warmup)
            row["note"] = timing.note
            if self.memory and self.device.startswith("cuda"):
                row["peak_memory_bytes"] = common.cuda_peak_memory(fn, self.device)
            del fn
            gc.collect()
            if self.memory and not self.device.startswith("cuda"):
                if timing.median > MAX_MEMORY_CALL_S:
                    row["note"] = (
                        f"{row['note']}; " if row["note"] else ""
                    ) + f"memory not measured (one call > {MAX_MEMORY_CALL_S:g} s)"
                else:
                    slow = timing.median > SMALL_WARMUP_ABOVE_S
                    warm = small_kwargs(kwargs) if slow else None
                    row["peak_memory_bytes"] = common.cpu_peak_memory(build_case, kwargs, warm)
        except Exception as error:  # noqa: BLE001  (a failed case must not stop the run)
            row.update(status="error", note=f"{type(error).__name__}: {error}".splitlines()[0])
        return row


def grid_cases(
    sizes: Sequence[int], batch_sizes: Sequence[int], ratios: Sequence[float], device: str
) -> list[dict[str, Any]]:
    r"""Every (method, N, B, r) of the main grid, in the order they run: all methods of one
    (N, B, r) one after the other."""
    cases = []
    for n in sizes:
        for b in batch_sizes:
            for r in ratios:
                m = samples_per_cloud(n, r)
                for method in SAMPLERS + PROJECTIONS:
                    kwargs: dict[str, Any] = dict(
                        method=method, num_points=n, batch_size=b, ratio=r, device=device
                    )
                    case = {
                        "benchmark": "projection" if method in PROJECTIONS else "sampling",
                        "method": method,
                        "num_points": n,
                        "batch_size": b,
                        "ratio": r,
                        "samples_per_cloud": m,
                        "skip": skip_reason(method, n, b, m),
                        "kwargs": kwargs,
                    }
                    cases.append(case)
    return cases


def is_scaling_case(case: dict[str, Any]) -> bool:
    r"""Whether target 4 needs this grid case (SampleNet inference, B=1, ratio 1/32)."""
    return (
        case["method"] == "samplenet_eval"
        and case["batch_size"] == 1
        and abs(case["ratio"] - 1 / 32) < 1e-12
    )


def target_cases(device: str, smoke: bool) -> dict[str, dict[str, Any]]:
    r"""The measurements behind the targets, at their sizes (reduced with :obj:`smoke`)."""
    e2e = dict(num_points=1024, batch_size=32, num_samples=32)
    large = dict(num_points=100_000, batch_size=1, num_samples=4096)
    if smoke:
        e2e = dict(num_points=256, batch_size=4, num_samples=8)
        large = dict(num_points=4000, batch_size=1, num_samples=256)
    return {
        "pointnet_full": dict(method="pointnet_full", device=device, **e2e),
        "samplenet_pointnet": dict(method="samplenet_pointnet", device=device, **e2e),
        "hard_sample": dict(method="hard_sample", device=device, **large),
        "fps": dict(method="fps", device=device, **large),
        "soft_projection": dict(method="soft_projection", device=device, **large),
        "dense_projection": dict(method="dense_projection", device=device, **large),
    }


def duplicate_count(kwargs: dict[str, Any]) -> int:
    r"""How many of :obj:`hard_sample`'s jittered queries match an already matched point
    (what the FPS completion has to refill)."""
    pos, batch = sphere_clouds(kwargs["num_points"], kwargs["batch_size"], SEED, "cpu")
    query, query_batch = jittered_subset(pos, batch, kwargs["num_samples"], SEED)
    matched = _tg().nearest(pos, query, batch, query_batch)
    return int(matched.numel() - torch.unique(matched).numel())


def projection_agreement(kwargs: dict[str, Any]) -> float:
    r"""Largest coordinate difference between :class:`~tg_samplenet.SoftProjection` and
    :func:`dense_soft_projection` on the target's inputs (both forward only)."""
    pos, batch = sphere_clouds(kwargs["num_points"], kwargs["batch_size"], SEED, "cpu")
    query, query_batch = jittered_subset(pos, batch, kwargs["num_samples"], SEED)
    projection = _tg().SoftProjection(k=K)
    with torch.no_grad():
        sparse = projection(pos, query, batch, query_batch).pos
        dense = dense_soft_projection(pos, query, batch, query_batch, K, projection.sigma)
    return float((sparse - dense).abs().max())


def _ratio(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None or b <= 0 else a / b


def evaluate_targets(
    measured: dict[str, dict[str, Any]],
    results: list[dict[str, Any]],
    target_kwargs: dict[str, dict[str, Any]],
    smoke: bool,
    memory: bool,
) -> list[dict[str, Any]]:
    r"""The four targets as rows: measured value, threshold, whether met."""

    def t(name: str) -> float | None:
        return measured[name].get("time_s")

    def mem(name: str) -> int | None:
        return measured[name].get("peak_memory_bytes")

    def row(tid, name, value, op, threshold, conditions, **details):
        met = None
        if value is not None:
            met = value <= threshold if op == "<=" else value >= threshold
        return dict(
            id=tid,
            name=name,
            measured=value,
            op=op,
            threshold=threshold,
            met=met,
            conditions=conditions + (" [smoke: reduced sizes, not a verdict]" if smoke else ""),
            details=details,
        )

    e2e, large = target_kwargs["samplenet_pointnet"], target_kwargs["hard_sample"]
    rows = [
        row(
            "1",
            "SampleNet + PointNet time / PointNet on complete clouds",
            _ratio(t("samplenet_pointnet"), t("pointnet_full")),
            "<=",
            0.10,
            f"B={e2e['batch_size']}, {e2e['num_samples']} of {e2e['num_points']} points, "
            "eval, PointNet with both T-Nets (40 classes)",
            samplenet_pointnet_s=t("samplenet_pointnet"),
            pointnet_full_s=t("pointnet_full"),
        ),
        row(
            "2",
            "fps time / hard_sample time",
            _ratio(t("fps"), t("hard_sample")),
            ">=",
            10.0,
            f"{large['num_samples']} of {large['num_points']} points, B=1; queries: random "
            f"input points + N(0, {NOISE}^2) noise; fps = {fps_implementation()}",
            fps_s=t("fps"),
            hard_sample_s=t("hard_sample"),
            duplicates_completed_by_fps=measured["hard_sample"].get("duplicates"),
        ),
        row(
            "3a",
            "dense reference peak memory / SoftProjection peak memory (fwd+bwd)",
            _ratio(mem("dense_projection"), mem("soft_projection")) if memory else None,
            ">=",
            10.0,
            f"N={large['num_points']}, M={large['num_samples']}, k={K}, B=1",
            soft_projection_bytes=mem("soft_projection"),
            dense_projection_bytes=mem("dense_projection"),
            max_abs_difference=measured["soft_projection"].get("max_abs_difference"),
        ),
        row(
            "3b",
            "dense reference time / SoftProjection time (fwd+bwd)",
            _ratio(t("dense_projection"), t("soft_projection")),
            ">=",
            1.0,
            f"N={large['num_points']}, M={large['num_samples']}, k={K}, B=1 (faster: > 1)",
            soft_projection_s=t("soft_projection"),
            dense_projection_s=t("dense_projection"),
        ),
    ]
    slopes = scaling_slopes(results)
    rows.append(
        row(
            "4",
            "log-log slope of SampleNet inference time against N",
            slopes["samplenet_eval"]["slope"],
            "<=",
            1.15,
            f"B=1, ratio 1/32, N in {slopes['samplenet_eval']['sizes']} (>= 16k); fps slope "
            f"beside it: {_fmt(slopes['fps']['slope'])} over {slopes['fps']['sizes']}",
            fps_slope=slopes["fps"]["slope"],
            sizes=slopes["samplenet_eval"]["sizes"],
            fps_sizes=slopes["fps"]["sizes"],
        )
    )
    return rows


def scaling_slopes(results: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    r"""Least-squares log-log slope of time against N for each sampler at B=1, r=1/32 over
    the measured N >= 16k (:obj:`None` with fewer than two sizes)."""
    out = {}
    for method in SAMPLERS + PROJECTIONS:
        points = sorted(
            (r["num_points"], r["time_s"])
            for r in results
            if r["method"] == method
            and r["batch_size"] == 1
            and abs(r["ratio"] - 1 / 32) < 1e-12
            and r["num_points"] >= 16000
            and r.get("time_s")
        )
        xs = [p[0] for p in points]
        slope = common.loglog_slope(xs, [p[1] for p in points]) if len(set(xs)) >= 2 else None
        out[method] = {"slope": slope, "sizes": xs}
    return out


def _fmt(value: float | None, digits: int = 3) -> str:
    return "–" if value is None else f"{value:.{digits}g}"


def _cell(result: dict[str, Any] | None, key: str) -> str:
    if result is None:
        return "–"
    if result["status"] == "skipped":
        return "skip"
    if result["status"] != "ok":
        return "error"
    value = result.get(key)
    return common.format_seconds(value) if key == "time_s" else common.format_bytes(value)


def render_markdown(report: dict[str, Any]) -> str:
    r"""The whole report as Markdown: run description, targets, tables and notes."""
    meta, settings, results = report["metadata"], report["settings"], report["results"]
    lines = [
        "# Speed and memory: SampleNet against PyG's samplers",
        "",
        common.metadata_markdown(meta),
    ]
    machine = meta["machine"]
    if machine.get("load_average") and machine["load_average"][0] > machine["usable_cores"]:
        lines.append(
            f"- **Busy machine**: the load average ({machine['load_average'][0]:.1f}) exceeded "
            f"the {machine['usable_cores']} usable cores at the start. With more than one "
            "thread, every parallel PyTorch op then waits for descheduled OpenMP threads, "
            "which slows small ops by up to tens of times: rerun on a quiet machine (or "
            "compare with --threads 1)."
        )
    lines += [
        f"- Device: {settings['device']}; neighbour back-end of tg_samplenet: "
        f"{settings['backend']}; fps: {settings['fps_implementation']}",
        "",
        "## Targets",
        "",
        common.markdown_table(
            ["#", "Target", "Measured", "Threshold", "Met", "Conditions"],
            [
                [
                    r["id"],
                    r["name"],
                    _fmt(r["measured"]),
                    f"{r['op']} {r['threshold']:g}",
                    "–" if r["met"] is None else ("met" if r["met"] else "NOT MET"),
                    r["conditions"],
                ]
                for r in report["targets"]
            ],
        ),
        "",
    ]
    index = {(r["method"], r["num_points"], r["batch_size"], r["ratio"]): r for r in results}
    groups = sorted(
        {(r["num_points"], r["batch_size"], r["ratio"]) for r in results},
        key=lambda g: (g[1], -g[2], g[0]),
    )
    for key, title in (("time_s", "median time"), ("peak_memory_bytes", "peak memory")):
        if key == "peak_memory_bytes" and not settings["memory"]:
            continue
        header = ["N", "B", "ratio", "samples/cloud"] + [LABELS[m] for m in SAMPLERS]
        body = []
        for n, b, r in groups:
            first = index.get(("random", n, b, r)) or index.get(("fps", n, b, r))
            body.append(
                [f"{n:,}", b, format_ratio(r), first["samples_per_cloud"] if first else "–"]
                + [_cell(index.get((m, n, b, r)), key) for m in SAMPLERS]
            )
        lines += [f"## Sampling: {title}", "", common.markdown_table(header, body), ""]

    header = ["N", "B", "ratio", "M/cloud", "SoftProjection", "dense", "speed-up"]
    if settings["memory"]:
        header += ["SoftProjection mem", "dense mem", "memory ratio"]
    body = []
    for n, b, r in groups:
        soft, dense = (
            index.get(("soft_projection", n, b, r)),
            index.get(("dense_projection", n, b, r)),
        )
        cells = [f"{n:,}", b, format_ratio(r), soft["samples_per_cloud"] if soft else "–"]
        cells += [_cell(soft, "time_s"), _cell(dense, "time_s")]
        cells.append(_fmt(_ratio(dense and dense.get("time_s"), soft and soft.get("time_s"))))
        if settings["memory"]:
            cells += [_cell(soft, "peak_memory_bytes"), _cell(dense, "peak_memory_bytes")]
            cells.append(
                _fmt(
                    _ratio(
                        dense and dense.get("peak_memory_bytes"),
                        soft and soft.get("peak_memory_bytes"),
                    )
                )
            )
        body.append(cells)
    lines += [
        f"## Soft projection, forward and backward (k={K})",
        "",
        common.markdown_table(header, body),
        "",
    ]

    slopes = report["slopes"]
    lines += [
        "## Scaling: log-log slope of time against N (B=1, ratio 1/32, N >= 16k)",
        "",
        common.markdown_table(
            ["method", "slope", "sizes"],
            [
                [LABELS[m], _fmt(s["slope"]), ", ".join(f"{x:,}" for x in s["sizes"]) or "–"]
                for m, s in slopes.items()
            ],
        ),
        "",
        "## How it was measured",
        "",
        f"- Inputs: {settings['inputs']}",
        f"- Timing: {settings['timing']}",
        f"- Memory: {settings['memory_method'] if settings['memory'] else 'not measured'}",
        f"- Budgets: {settings['budgets']}",
        f"- SampleNet train step: {settings['train_step']}",
        f"- Voxel grid: {settings['voxel_grid']}",
    ]
    if settings.get("load_average_end"):
        load = ", ".join(f"{x:.2f}" for x in settings["load_average_end"])
        lines.append(f"- Load average (1, 5, 15 min) at the end: {load}")
    notes = [
        r
        for r in results
        if r["status"] != "ok" or "once" in r.get("note", "") or "memory" in r.get("note", "")
    ]
    if notes:
        lines += ["", "## Skipped, failed or shortened measurements", ""]
        lines += [
            f"- {LABELS[r['method']]}, N={r['num_points']:,}, B={r['batch_size']}, "
            f"ratio {format_ratio(r['ratio'])}: {r['status']}: {r['note']}"
            for r in notes
        ]
    return "\n".join(lines) + "\n"


def plot(report: dict[str, Any], path: str):
    panels: dict[str, dict[str, tuple[list[float], list[float]]]] = {}
    ordered = sorted(report["results"], key=lambda r: (r["batch_size"], -r["ratio"]))
    for r in ordered:
        if r["status"] != "ok":
            continue
        title = f"B = {r['batch_size']}, ratio {format_ratio(r['ratio'])}"
        xs, ys = panels.setdefault(title, {}).setdefault(LABELS[r["method"]], ([], []))
        xs.append(r["num_points"])
        ys.append(r["time_s"])
    for series in panels.values():
        for label, (xs, ys) in series.items():
            order = sorted(range(len(xs)), key=xs.__getitem__)
            series[label] = ([xs[i] for i in order], [ys[i] for i in order])
    dashed = {"linestyle": "--"}
    styles = {LABELS["soft_projection"]: dashed, LABELS["dense_projection"]: dashed}
    common.plot_loglog(
        path,
        panels,
        "points per cloud N",
        "median time (s)",
        title=f"Sampling time against cloud size ({report['settings']['device']})",
        styles=styles,
    )


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cpu", help="cpu or cuda (default: cpu)")
    parser.add_argument(
        "--sizes",
        type=int,
        nargs="+",
        default=None,
        help=f"points per cloud (default: {' '.join(map(str, SIZES))})",
    )
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=list(BATCH_SIZES))
    parser.add_argument("--ratios", type=float, nargs="+", default=list(RATIOS))
    parser.add_argument(
        "--repeats",
        type=int,
        default=REPEATS,
        help="most timed calls per measurement, after one warm-up",
    )
    parser.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "results"))
    parser.add_argument(
        "--quick", action="store_true", help=f"sizes {' '.join(map(str, QUICK_SIZES))} only"
    )
    parser.add_argument(
        "--smoke",
        action="store_true",
        help="smallest size, B=1, 2 repeats, reduced targets: seconds",
    )
    parser.add_argument("--no-memory", dest="memory", action="store_false", help="time only")
    parser.add_argument(
        "--threads", type=int, default=None, help="torch threads (default: torch's choice)"
    )
    parser.add_argument(
        "--max-case-seconds",
        type=float,
        default=MAX_CASE_S,
        help="skip cases predicted to take longer (default: %(default)s)",
    )
    parser.add_argument(
        "--no-targets", dest="targets", action="store_false", help="skip the target measurements"
    )
    args = parser.parse_args(argv)
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        parser.error("--device cuda: CUDA is not available here")
    if args.device != "cpu" and not args.device.startswith("cuda"):
        parser.error(f"--device must be cpu or cuda (got {args.device!r})")
    if args.threads is not None and args.threads < 1:
        parser.error("--threads must be at least 1")
    if args.repeats < 1:
        parser.error("--repeats must be at least 1")
    if any(n < 1 for n in args.sizes or ()) or any(b < 1 for b in args.batch_sizes):
        parser.error("--sizes and --batch-sizes must be positive")
    if any(not 0 < r <= 1 for r in args.ratios):
        parser.error("--ratios must lie in (0, 1]")
    if args.smoke:
        args.sizes, args.batch_sizes, args.repeats = [1000], [1], min(args.repeats, 2)
    elif args.sizes is None:
        args.sizes = list(QUICK_SIZES if args.quick else SIZES)
    return args


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parse_args(argv)
    from tqdm import tqdm

    if args.threads is not None:
        torch.set_num_threads(args.threads)
    common.set_memory_preload(["torch", "torch_geometric", "tg_samplenet", "tg_samplenet.models"])
    torch.manual_seed(SEED)
    device = args.device
    meta = common.run_metadata("benchmarks/speed.py", argv, device)
    settings = {
        "device": device,
        "sizes": args.sizes,
        "batch_sizes": args.batch_sizes,
        "ratios": args.ratios,
        "repeats": args.repeats,
        "memory": args.memory,
        "smoke": args.smoke,
        "backend": _tg().backend.get_backend(),
        "fps_implementation": fps_implementation(),
        "inputs": INPUTS,
        "timing": (
            "one warm-up call, then the median of up to --repeats timed calls, stopping once "
            f"they add up to {TIME_BUDGET_S:g} s; a warm-up longer than {SINGLE_RUN_ABOVE_S:g} "
            "s is the single measurement; torch.cuda.synchronize() around each call on CUDA"
        ),
        "memory_method": (
            common.CUDA_MEMORY_METHOD if device.startswith("cuda") else common.CPU_MEMORY_METHOD
        )
        + f" Calls longer than {SMALL_WARMUP_ABOVE_S:g} s warm up on one cloud of 1000 points.",
        "budgets": (
            f"skipped: B*N > {MAX_POINTS:.3g} points; SampleNet training with B*N > "
            f"{MAX_TRAIN_POINTS:.3g}; dense reference matrices B*M*N*4 bytes > "
            f"{common.format_bytes(MAX_DENSE_BYTES)} (its peak is about twice that); any "
            f"case whose time, extrapolated from the same method at the smaller N, exceeds "
            f"{MAX_CASE_S:g} s ({MAX_SCALING_CASE_S:g} s for SampleNet inference at B=1, "
            "ratio 1/32, which target 4 needs)"
        ),
        "train_step": (
            "sampler.train(), zero_grad, forward (network + soft projection), "
            "samplenet_loss(task_loss, out, pos, batch) with task_loss = mean |r|^2 standing in "
            "for the task network, backward; no optimiser step"
        ),
        "voxel_grid": (
            "GridSampling(size) on a Data(pos, batch): voxel_grid, consecutive_cluster and a "
            "mean per voxel; the size is calibrated per (N, ratio) on one cloud so that it "
            "keeps ceil(N*ratio) points within 2% (samples/cloud shows the count reached)"
        ),
    }

    cases = grid_cases(args.sizes, args.batch_sizes, args.ratios, device)
    targets = target_cases(device, args.smoke) if args.targets else {}
    runner = Runner(device, args.repeats, args.memory)
    results: list[dict[str, Any]] = []
    measured: dict[str, dict[str, Any]] = {}
    progress = tqdm(total=len(cases) + len(targets), desc="speed", unit="case")
    history: dict[tuple[str, int, float], list[tuple[int, float]]] = {}
    voxel_sizes: dict[tuple[int, float], tuple[float, int]] = {}
    for case in cases:
        progress.set_postfix_str(
            f"{case['method']} N={case['num_points']} B={case['batch_size']} "
            f"r={format_ratio(case['ratio'])}"
        )
        result = {k: v for k, v in case.items() if k not in ("skip", "kwargs")}
        key = (case["method"], case["batch_size"], case["ratio"])
        predicted = predicted_time(history.get(key, []), case["num_points"], case["method"])
        limit = MAX_SCALING_CASE_S if is_scaling_case(case) else args.max_case_seconds
        if case["skip"]:
            result.update(status="skipped", note=case["skip"])
        elif predicted is not None and predicted > limit:
            note = f"predicted {predicted:.0f} s > {limit:g} s from smaller N"
            result.update(status="skipped", note=note)
        else:
            if case["method"] == "voxel_grid":
                # Calibrated once per (N, ratio), outside the timing.
                grid = (case["num_points"], case["ratio"])
                if grid not in voxel_sizes:
                    voxel_sizes[grid] = calibrate_voxel_size(*grid)
                sizes = voxel_sizes[grid]
                case["kwargs"]["voxel_size"] = result["voxel_size"] = sizes[0]
                result["samples_per_cloud"] = sizes[1]
            result.update(runner.measure(case["kwargs"]))
            if result.get("time_s"):
                history.setdefault(key, []).append((case["num_points"], result["time_s"]))
        results.append(result)
        progress.update()
    for name, kwargs in targets.items():
        progress.set_postfix_str(f"target: {name}")
        measured[name] = dict(kwargs, **runner.measure(kwargs))
        progress.update()
    progress.close()

    if hasattr(os, "getloadavg"):
        settings["load_average_end"] = list(os.getloadavg())
    if targets:
        measured["hard_sample"]["duplicates"] = duplicate_count(targets["hard_sample"])
        measured["soft_projection"]["max_abs_difference"] = projection_agreement(
            targets["soft_projection"]
        )
    report = {
        "metadata": meta,
        "settings": settings,
        "results": results,
        "target_measurements": measured,
        "targets": (
            evaluate_targets(measured, results, targets, args.smoke, args.memory) if targets else []
        ),
        "slopes": scaling_slopes(results),
    }
    markdown = render_markdown(report)
    os.makedirs(args.out, exist_ok=True)
    common.write_json(os.path.join(args.out, "speed.json"), report)
    common.write_text(os.path.join(args.out, "speed.md"), markdown)
    plot(report, os.path.join(args.out, "speed.png"))
    print(markdown)
    return report


if __name__ == "__main__":
    main()
