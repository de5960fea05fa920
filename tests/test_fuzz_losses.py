r"""Property-based fuzz of the losses (tg_samplenet.losses): per-cloud values equal to a
float64 brute force (up to rounding, or inf where the dtype overflows), NaN only for clouds
that hold no points, reductions over the clouds that do, or an InputError that names the
bad argument."""

import numpy as np
import pytest
import torch
from fuzz_support import clouds, promise, squared_distances, write_counts
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tg_samplenet.losses import (
    average_nn_distance,
    chamfer_distance,
    max_nn_distance,
    nn_squared_distance,
    simplification_loss,
)
from tg_samplenet.ops import available_backends, use_backend

BACKENDS = [name for name in available_backends() if name != "pyg_lib"]
# NaN and inf inputs make numpy warn inside the checks themselves.
pytestmark = pytest.mark.filterwarnings("ignore::RuntimeWarning")

FUZZ = settings(
    max_examples=100,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
TOLERANCE = {torch.float64: 1e-9, torch.float32: 1e-5, torch.float16: 5e-3, torch.bfloat16: 5e-2}


@pytest.fixture(scope="module", autouse=True)
def counts():
    yield
    write_counts("losses")


@st.composite
def partners(draw, x):
    # Points for every cloud that x holds points in (the losses compare both ways), or one
    # fault: another dtype or dimension, a NaN, a cloud x lacks, or a cloud of x left out.
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    present = [cloud for cloud in range(x.num_clouds) if (x.cloud == cloud).any()]
    cloud, values = [], []
    for c in present:
        members = x.values[x.cloud == c]
        extent = float(np.ptp(members, 0).max()) if len(members) > 1 else 1.0
        for _ in range(rng.integers(1, 5)):
            cloud.append(c)
            values.append(members[rng.integers(len(members))] + rng.normal(0, 0.5) * extent)
    dim = x.values.shape[1]
    values, cloud = np.array(values).reshape(-1, dim), np.array(cloud, dtype=np.int64)
    fault = draw(st.sampled_from([None] * 6 + ["dtype", "dim", "nan", "orphan", "missing"]))
    if fault == "dim":
        values = np.concatenate([values, np.zeros((len(values), 1))], 1)
    elif fault == "nan" and len(values):
        values[-1, 0] = np.nan
    elif fault == "orphan":
        cloud, values = np.append(cloud, x.num_clouds), np.concatenate([values, values[:1] * 0])
    elif fault == "missing" and len(present):
        keep = cloud != present[0]
        cloud, values = cloud[keep], values[keep]
    dtype = x.pos.dtype if x.pos.dtype.is_floating_point else torch.float32
    if fault == "dtype":
        dtype = torch.float64 if dtype != torch.float64 else torch.float32
    y = torch.from_numpy(values).to(dtype)
    valid = (fault is None or (fault in ("nan", "missing") and not present)) and bool(
        torch.isfinite(y).all()
    )
    return y, torch.from_numpy(cloud), y.double().numpy(), valid


def nn(a, b):
    return squared_distances(a, b).min(1)


def close(got, want, dtype):
    # Equal up to the dtype's rounding; inf where the true value overflows the dtype.
    got = np.asarray(got, dtype=np.float64)
    want = np.asarray(want, dtype=np.float64)
    limit = float(torch.finfo(dtype).max)
    huge = want > limit / 16
    scale = np.abs(want).max() if want.size else 0.0
    tol = TOLERANCE[dtype]
    ok = np.isclose(got, want, rtol=tol * 10, atol=tol * scale + float(torch.finfo(dtype).tiny))
    return bool(np.all(np.where(huge, np.isinf(got) | ok, ok)))


@FUZZ
@given(data=st.data(), x=clouds(), backend=st.sampled_from(BACKENDS))
def test_nearest_neighbour_terms(data, x, backend):
    y, y_cloud, y_values, y_ok = data.draw(partners(x))
    num_clouds = data.draw(st.sampled_from([None, None, x.num_clouds + 1, x.num_clouds - 1]))
    with use_backend(backend):
        d, error = promise("nn_squared_distance", nn_squared_distance, x.pos, y, x.batch, y_cloud)
        la, la_error = promise(
            "average_nn_distance", average_nn_distance, x.pos, y, x.batch, y_cloud, num_clouds
        )
        lm, lm_error = promise(
            "max_nn_distance", max_nn_distance, x.pos, y, x.batch, y_cloud, num_clouds
        )
    # One way (x -> y), a cloud that only y holds is no fault: it gets NaN below.
    covered = set(x.cloud.tolist()) <= set(y_cloud.tolist())
    same_kind = y.dtype == x.pos.dtype and y.dim() == 2 and y.size(1) == x.pos.size(-1)
    ok = x.valid and (y_ok or (same_kind and covered and bool(torch.isfinite(y).all())))
    if not ok:
        assert error is not None and la_error is not None and lm_error is not None
        return
    assert error is None, error
    B = max(x.num_clouds, len(y_cloud) and int(y_cloud.max()) + 1)
    if num_clouds is not None and num_clouds < B:
        assert la_error is not None and lm_error is not None
        return
    assert la_error is None and lm_error is None, (la_error, lm_error)
    B = num_clouds or B
    want = np.zeros(len(x.values))
    for cloud in range(B):
        rows = x.cloud == cloud
        if rows.any():
            want[rows] = nn(x.values[rows], y_values[y_cloud.numpy() == cloud])
    assert close(d.double().numpy(), want, x.pos.dtype), (d, want)
    assert la.shape == lm.shape == (B,)
    for cloud in range(B):
        rows = x.cloud == cloud
        if not rows.any():
            assert torch.isnan(la[cloud]) and torch.isnan(lm[cloud])
            continue
        assert close([float(la[cloud])], [want[rows].mean()], x.pos.dtype)
        assert close([float(lm[cloud])], [want[rows].max()], x.pos.dtype)


@FUZZ
@given(
    data=st.data(),
    x=clouds(),
    reduction=st.sampled_from(["mean", "sum", "none", "max", None]),
)
def test_chamfer_distance(data, x, reduction):
    y, y_cloud, y_values, y_ok = data.draw(partners(x))
    value, error = promise(
        "chamfer_distance", chamfer_distance, x.pos, y, x.batch, y_cloud, reduction
    )
    present = [c for c in range(x.num_clouds) if (x.cloud == c).any()]
    if not (x.valid and y_ok and reduction in ("mean", "sum", "none")) or (
        reduction == "mean" and not present
    ):
        assert error is not None
        return
    assert error is None, error
    per_cloud = {}
    for c in present:
        a, b = x.values[x.cloud == c], y_values[y_cloud.numpy() == c]
        per_cloud[c] = nn(a, b).mean() + nn(b, a).mean()
    if reduction == "none":
        assert value.shape == (max(x.num_clouds, 0),)
        for c in range(x.num_clouds):
            if c in per_cloud:
                assert close([float(value[c])], [per_cloud[c]], x.pos.dtype)
            else:
                assert torch.isnan(value[c])  # an id no cloud holds: undefined, not 0
        return
    values = list(per_cloud.values())
    want = np.mean(values) if reduction == "mean" else np.sum(values)
    assert close([float(value)], [want], x.pos.dtype), (value, want)


@FUZZ
@given(
    data=st.data(),
    x=clouds(dims=(3,)),
    beta=st.sampled_from([1.0, 0.0, 2.5, -1.0, float("nan")]),
    delta=st.sampled_from([0.0, 1 / 30, float("inf")]),
)
def test_simplification_loss(data, x, beta, delta):
    q, q_cloud, q_values, q_ok = data.draw(partners(x))
    value, error = promise(
        "simplification_loss",
        simplification_loss,
        q,
        x.pos,
        q_cloud,
        x.batch,
        beta=beta,
        gamma=0.5,
        delta=delta,
        reduction="sum",
    )
    weights_ok = beta >= 0 and np.isfinite(beta) and np.isfinite(delta)
    if not (x.valid and q_ok and weights_ok):
        assert error is not None
        return
    assert error is None, error
    total = 0.0
    for c in range(x.num_clouds):
        p, qq = x.values[x.cloud == c], q_values[q_cloud.numpy() == c]
        if len(p):
            to_p = nn(qq, p)
            total += to_p.mean() + beta * to_p.max() + (0.5 + delta * len(qq)) * nn(p, qq).mean()
    assert close([float(value)], [total], x.pos.dtype), (value, total)


@FUZZ
@given(data=st.data(), x=clouds(bad=False, dims=(3,), dtypes=(torch.float32, torch.float64)))
def test_chamfer_gradients_are_finite(data, x):
    y, y_cloud, _, y_ok = data.draw(partners(x))
    if not (x.valid and y_ok) or float(np.abs(x.values).max(initial=0)) > 1e15:
        return  # squared distances of huge coordinates overflow float32: inf is honest
    pos = x.pos.clone().requires_grad_()
    y = y.clone().requires_grad_()
    value, error = promise("chamfer_distance", chamfer_distance, pos, y, x.batch, y_cloud, "sum")
    assert error is None, error
    value.backward()
    assert bool(torch.isfinite(pos.grad).all()) and bool(torch.isfinite(y.grad).all())
