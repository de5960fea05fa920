r"""What the property-based suites (tests/test_fuzz_*.py) share: input strategies of the kinds
a careful user tries (empty, tiny and larger clouds; identical, collinear, coplanar and
near-duplicate points; coordinates from 1e-30 to 1e30 and 1e6 offsets; NaN and inf;
integer and half dtypes; unsorted, negative, float, 2-D and short batch vectors), the
promise every public call keeps (a correct result, or an :class:`InputError` that names one
of the call's arguments) and independent float64 checks of the results.

Each call through :func:`promise` is counted per entry point; the suites print the counts
(run with :obj:`-s`) and, when :obj:`TG_SAMPLENET_FUZZ_COUNTS` names a file, add them to it.
"""

from __future__ import annotations

import collections
import inspect
import json
import os
from dataclasses import dataclass
from typing import Any, Callable, Optional

import numpy as np
import torch
from hypothesis import strategies as st

from tg_samplenet.ops.checks import InputError

CASES: collections.Counter = collections.Counter()
OUTCOMES: collections.Counter = collections.Counter()  # (entry, "result" or the error's name)

FLOAT_DTYPES = (torch.float32, torch.float64, torch.float16, torch.bfloat16)


def promise(entry: str, fn: Callable, *args, extra: tuple[str, ...] = (), **kwargs):
    r"""Calls :obj:`fn` and returns :obj:`(result, None)`, or :obj:`(None, error)` for an
    :class:`InputError` whose :attr:`argument` is a parameter of :obj:`fn` (or an attribute
    of one, or one of :obj:`extra`) and appears in its message. Any other exception fails
    the test."""
    CASES[entry] += 1
    try:
        result = fn(*args, **kwargs)
        OUTCOMES[entry, "result"] += 1
        return result, None
    except InputError as error:
        OUTCOMES[entry, "InputError"] += 1
        target = fn.forward if isinstance(fn, torch.nn.Module) else fn
        names = set(inspect.signature(target).parameters) | set(extra)
        root = error.argument.split(".")[0].split("[")[0]
        assert root in names, f"{entry}: error names {error.argument!r}, not one of {names}"
        try:  # a file argument is named by its path
            value = str(inspect.signature(target).bind_partial(*args, **kwargs).arguments[root])
        except (KeyError, TypeError):
            value = error.argument
        named = error.argument in str(error) or value in str(error)
        assert named, f"{entry}: message names neither {error.argument!r} nor its value: {error}"
        return None, error


def outcome(entry: str, kind: str, counted: bool = False):
    r"""Counts one case of :obj:`entry` that ended in :obj:`kind`, e.g. a training run stopped
    by a :class:`FloatingPointError` that :func:`promise` let through (:obj:`counted`: the
    case itself was counted there)."""
    CASES[entry] += not counted
    OUTCOMES[entry, kind] += 1


def write_counts(suite: str):
    r"""Prints the cases per entry point, with their outcomes, and adds them to the counts
    file, if any: :obj:`{entry: {"cases": n, outcome: n, ...}}`."""
    counts = {name: {"cases": CASES[name]} for name in sorted(CASES)}
    for (name, kind), count in OUTCOMES.items():
        counts[name][kind] = count
    total = sum(c["cases"] for c in counts.values())
    print(f"\n[{suite}] cases per entry point: {counts} (total {total})")
    path = os.environ.get("TG_SAMPLENET_FUZZ_COUNTS")
    if path:
        saved = json.load(open(path)) if os.path.exists(path) else {}
        for name, parts in counts.items():
            into = saved.setdefault(name, {})
            for kind, count in parts.items():
                into[kind] = into.get(kind, 0) + count
        with open(path, "w") as f:
            json.dump(saved, f, indent=1, sort_keys=True)
    CASES.clear()
    OUTCOMES.clear()


@dataclass
class Clouds:
    r"""A drawn input: :obj:`pos` and :obj:`batch` as passed, the float64 values the call
    sees, the true cloud of each point, and whether the input is one the library must
    accept."""

    pos: Any
    batch: Optional[Any]
    values: np.ndarray  # [N, D] float64 of what pos holds (after its cast)
    cloud: np.ndarray  # [N] the true cloud of each point
    num_clouds: int
    valid: bool
    kind: str

    def sizes(self) -> list[int]:
        return np.bincount(self.cloud, minlength=self.num_clouds).tolist()


_KINDS = ("uniform", "identical", "collinear", "coplanar", "grid", "near_duplicates")
_SCALES = (1.0, 1.0, 1.0, 1e-30, 1e-12, 1e12, 1e20, 1e30)
_OFFSETS = (0.0, 1e6, -3e7)
_FAULTS = ("nan", "inf", "int", "unsorted", "negative", "float_batch", "2d_batch", "short_batch")


def _shape(rng: np.random.Generator, kind: str, n: int, dim: int) -> np.ndarray:
    if kind == "identical":
        return np.repeat(rng.uniform(-1, 1, (1, dim)), n, 0)
    if kind == "collinear":
        return rng.uniform(-1, 1, (n, 1)) * rng.uniform(-1, 1, (1, dim))
    if kind == "coplanar" and dim >= 3:
        return rng.uniform(-1, 1, (n, 2)) @ rng.uniform(-1, 1, (2, dim))
    if kind == "grid":
        return rng.integers(-2, 3, (n, dim)).astype(np.float64)
    if kind == "near_duplicates":
        base = rng.uniform(-1, 1, (max(1, n // 2), dim))
        return base[rng.integers(0, len(base), n)] + rng.normal(0, 1e-4, (n, dim))
    return rng.uniform(-1, 1, (n, dim))


@st.composite
def clouds(
    draw,
    dims: tuple[int, ...] = (1, 2, 3, 4),
    max_clouds: int = 4,
    max_size: int = 9,
    bad: bool = True,
    dtypes: tuple[torch.dtype, ...] = FLOAT_DTYPES,
) -> Clouds:
    r"""Point clouds in PyG's layout: half of them (with :obj:`bad`) with one fault."""
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    dim = draw(st.sampled_from(dims))
    sizes = draw(st.lists(st.integers(0, max_size), min_size=1, max_size=max_clouds))
    kind = draw(st.sampled_from(_KINDS))
    scale, offset = draw(st.sampled_from(_SCALES)), draw(st.sampled_from(_OFFSETS))
    mixed = draw(st.integers(0, 3)) == 0  # each cloud its own scale and offset
    parts = []
    for n in sizes:
        if mixed:
            scale, offset = rng.choice(_SCALES), rng.choice(_OFFSETS)
        parts.append(_shape(rng, kind, n, dim) * scale + offset)
    values = np.concatenate(parts)
    fault = draw(st.sampled_from((None,) * len(_FAULTS) + _FAULTS)) if bad else None
    if fault in ("nan", "inf") and len(values):
        values[rng.integers(0, len(values)), rng.integers(0, dim)] = (
            np.nan if fault == "nan" else -np.inf
        )
    dtype = torch.int64 if fault == "int" else draw(st.sampled_from(dtypes))
    if dtype.is_floating_point:
        pos = torch.from_numpy(values).to(dtype)
    else:
        pos = torch.from_numpy(np.nan_to_num(values).clip(-1e9, 1e9)).to(dtype)
    cloud = np.repeat(np.arange(len(sizes)), sizes)
    layout = draw(st.sampled_from(("sorted", "none", "int32", "gapped")))
    if layout == "none" and len(sizes) > 1:
        layout = "sorted"
    batch = None if layout == "none" else torch.from_numpy(cloud.copy())
    if layout == "int32":
        batch = batch.int()
    elif layout == "gapped":
        batch = batch * 2  # clouds 0, 2, 4: valid, with empty clouds between
    if fault in ("unsorted", "negative", "float_batch", "2d_batch", "short_batch"):
        batch = torch.from_numpy(cloud.copy()) if batch is None else batch
    if fault == "unsorted":
        batch = batch[torch.from_numpy(rng.permutation(len(cloud)))]
    elif fault == "negative":
        batch = batch - 1
    elif fault == "float_batch":
        batch = batch.float()
    elif fault == "2d_batch":
        batch = batch.view(-1, 1)
    elif fault == "short_batch":
        batch = batch[:-1]
    valid = dtype.is_floating_point and bool(torch.isfinite(pos).all())
    if batch is not None:
        b = batch.numpy()
        valid = valid and b.ndim == 1 and len(b) == len(values)
        valid = valid and (batch.dtype in (torch.int32, torch.int64) or len(b) == 0)
        valid = valid and (len(b) == 0 or (b.min() >= 0 and bool(np.all(np.diff(b) >= 0))))
    true_cloud = batch.numpy().astype(np.int64) if valid and batch is not None else cloud
    num_clouds = int(true_cloud.max()) + 1 if len(true_cloud) else 0
    as_float = pos.double().numpy() if dtype.is_floating_point else pos.numpy().astype(float)
    return Clouds(pos, batch, as_float, true_cloud, num_clouds, valid, kind)


def squared_distances(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    r"""All squared distances :obj:`[len(a), len(b)]` in float64, from differences."""
    return ((a[:, None, :] - b[None, :, :]) ** 2).sum(-1)


def check_fps_run(
    values: np.ndarray, picked: list[int], selected: list[int] = (), first: Optional[int] = None
):
    r"""Checks that :obj:`picked` (indices into one cloud's :obj:`values`) is a greedy
    farthest-point run continuing :obj:`selected`: unique, disjoint from it, each pick at
    the largest distance to the chosen set up to rounding (1e-4 relative)."""
    assert len(set(picked)) == len(picked), f"repeated index in {picked}"
    assert not set(picked) & set(selected), "picked an already selected point"
    chosen = list(selected)
    for step, p in enumerate(picked):
        if not chosen:
            if first is not None:
                assert p == first, f"started at {p}, not {first}"
        else:
            free = [j for j in range(len(values)) if j not in chosen]
            d = squared_distances(values[free], values[chosen]).min(1)
            best = d.max()
            mine = d[free.index(p)]
            assert mine >= best * (1 - 1e-4), f"step {step}: picked {mine}, best {best}"
        chosen.append(p)


def check_knn(x: Clouds, y: Clouds, index, mask, k: int, tolerance: float = 1e-5):
    r"""Checks a padded kNN table against float64 distances: per query, min(k, n) real
    neighbours of its own cloud, nearest first, at the k smallest distances up to rounding
    (relative to the squared extent of the cloud)."""
    index, mask = index.numpy(), mask.numpy()
    for i, cloud in enumerate(y.cloud):
        members = np.flatnonzero(x.cloud == cloud)
        assert mask[i].sum() == min(k, len(members)), (i, mask[i], len(members))
        real = index[i][mask[i]]
        assert set(real) <= set(members), f"query {i}: neighbours outside its cloud"
        assert len(set(real)) == len(real), f"query {i}: repeated neighbour"
        assert set(index[i][~mask[i]]) <= {index[i][0]}, "padding must repeat slot 0"
        every = squared_distances(y.values[i : i + 1], x.values[members])[0]
        got = squared_distances(y.values[i : i + 1], x.values[real])[0]
        want = np.sort(every)[: len(real)]
        points = np.concatenate([x.values[members], y.values[i : i + 1]])
        extent = float(np.ptp(points, 0).max()) if len(points) > 1 else 0.0
        atol = tolerance * extent**2 + 1e-300
        assert np.allclose(got, want, rtol=tolerance, atol=atol), (got, want)
        assert np.all(np.diff(got) >= -atol - tolerance * np.abs(got[1:])), "not nearest first"
