r"""Fuzz cases that used to end the process inside a compiled extension (torch_cluster's fps
and knn, torch_scatter's min/max): integer points, empty clouds, identical points, negative,
unsorted or out-of-range batch vectors and indices, cloud counts below what the batch
implies. tests/test_fuzz_native.py runs this file in a subprocess, so that a crash fails one
test instead of taking the test runner down; it is not collected on its own (its name does
not start with test_)."""

import numpy as np
import pytest
import torch
from fuzz_support import clouds, promise, write_counts
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tg_samplenet.losses import average_nn_distance, chamfer_distance, max_nn_distance
from tg_samplenet.ops import available_backends, fps, nearest_index, padded_knn, use_backend

pytestmark = [
    pytest.mark.filterwarnings("ignore::RuntimeWarning"),
    pytest.mark.skipif(
        "torch_cluster" not in available_backends(), reason="torch_cluster is not installed"
    ),
]
FUZZ = settings(
    max_examples=60,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


@pytest.fixture(scope="module", autouse=True)
def counts():
    yield
    write_counts("native")


@FUZZ
@given(c=clouds(dtypes=(torch.float32, torch.float64)), ratio=st.sampled_from([0.5, 1.0, 0.1]))
def test_fps_on_torch_cluster(c, ratio):
    with use_backend("torch_cluster"):
        index, error = promise("fps[torch_cluster]", fps, c.pos, c.batch, ratio, False)
    if not c.valid:
        assert error is not None
        return
    assert error is None, error
    for cloud in range(c.num_clouds):
        mine = [i for i in index.tolist() if c.cloud[i] == cloud]
        assert len(set(mine)) == len(mine), "torch_cluster repeated an index"


@FUZZ
@given(c=clouds(dtypes=(torch.float32, torch.float64)), k=st.sampled_from([1, 4]))
def test_knn_on_torch_cluster(c, k):
    # Queries: the points themselves, under a batch vector that may be broken.
    with use_backend("torch_cluster"):
        out, error = promise(
            "padded_knn[torch_cluster]", padded_knn, c.pos, c.pos, k, c.batch, c.batch
        )
        near, near_error = promise(
            "nearest_index[torch_cluster]", nearest_index, c.pos, c.pos, c.batch, c.batch
        )
    if not c.valid:
        assert error is not None and near_error is not None
        return
    assert error is None and near_error is None, (error, near_error)
    assert bool((out.index >= 0).all()) and bool((near >= 0).all()), "a -1 neighbour"
    assert np.array_equal(c.cloud[near.numpy()], c.cloud), "a neighbour of another cloud"


@FUZZ
@given(
    c=clouds(dims=(3,), dtypes=(torch.float32,)),
    num_clouds=st.sampled_from([None, 0, 1, 2, 5]),
)
def test_scatter_min_max_through_the_losses(c, num_clouds):
    # The per-cloud max of max_nn_distance is a scatter: bad batch vectors or too few
    # clouds must never reach it.
    value, error = promise(
        "max_nn_distance", max_nn_distance, c.pos, c.pos, c.batch, c.batch, num_clouds
    )
    mean, mean_error = promise(
        "average_nn_distance", average_nn_distance, c.pos, c.pos, c.batch, c.batch, num_clouds
    )
    total, total_error = promise(
        "chamfer_distance", chamfer_distance, c.pos, c.pos, c.batch, c.batch, "sum"
    )
    ok = c.valid and (num_clouds is None or num_clouds >= c.num_clouds)
    if not ok:
        assert error is not None and mean_error is not None
        return
    assert error is None and mean_error is None, (error, mean_error)
    sizes = np.bincount(c.cloud, minlength=max(c.num_clouds, num_clouds or 0))
    assert value.shape == mean.shape == (len(sizes),)
    assert torch.equal(torch.isnan(value), torch.from_numpy(sizes == 0))  # NaN: no points
    assert bool((value[sizes > 0] == 0).all()) and bool((mean[sizes > 0] == 0).all())
    if c.valid:
        assert total_error is None and float(total) == 0.0
