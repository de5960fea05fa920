r"""Property-based fuzz of the modules and what they produce: SoftProjection (construction and
projection), SampleNet (construction, eval and training), its losses on its own output,
TemperatureSchedule, and SampleNet.load on truncated, corrupt and foreign files. Each call
returns a correct result or raises an InputError that names the bad argument."""

import io
import pickle
import zipfile

import numpy as np
import pytest
import torch
from fuzz_support import check_knn, clouds, promise, squared_distances, write_counts
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tg_samplenet.losses import progressive_loss, samplenet_loss
from tg_samplenet.nn.sampler import SampleNet
from tg_samplenet.nn.soft_projection import SoftProjection
from tg_samplenet.temperature import TemperatureSchedule

# NaN and inf inputs make numpy warn inside the checks themselves.
pytestmark = pytest.mark.filterwarnings("ignore::RuntimeWarning")

FUZZ = settings(
    max_examples=60,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
NUMBERS = [1.0, 0.1, 0.0, -1.0, float("nan"), float("inf"), "1", True]


@pytest.fixture(scope="module", autouse=True)
def counts():
    yield
    write_counts("modules")


def finite_number(value, minimum=None):
    ok = isinstance(value, float) and np.isfinite(value)
    return ok and (minimum is None or value >= minimum)


@FUZZ
@given(
    k=st.sampled_from([1, 3, 7, 0, -2, 2.5]),
    temperature=st.sampled_from(NUMBERS),
    min_sigma=st.sampled_from([1e-4, 0.0, 0.5] + NUMBERS[3:]),
    learn=st.sampled_from([True, False, 1]),
)
def test_soft_projection_construction(k, temperature, min_sigma, learn):
    proj, error = promise("SoftProjection", SoftProjection, k, temperature, min_sigma, learn)
    ok = isinstance(k, int) and k >= 1 and finite_number(temperature)
    ok = ok and finite_number(min_sigma, 0.0) and isinstance(learn, bool)
    ok = ok and (temperature != 0 or min_sigma > 0)
    if not ok:
        assert error is not None
        return
    assert error is None, error
    sigma = proj.sigma.item()
    assert sigma > 0 and np.isfinite(sigma)


@st.composite
def projection_problems(draw):
    x = draw(clouds())
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    present = [c for c in range(x.num_clouds) if (x.cloud == c).any()]
    cloud = np.array(sorted(rng.choice(present, rng.integers(1, 5))) if present else [], int)
    values = []
    for c in cloud:
        members = x.values[x.cloud == c]
        extent = float(np.ptp(members, 0).max()) if len(members) > 1 else 1.0
        values.append(members[rng.integers(len(members))] + rng.normal(0, 0.2) * extent)
    dtype = x.pos.dtype if x.pos.dtype.is_floating_point else torch.float32
    query = torch.from_numpy(np.array(values).reshape(-1, x.values.shape[1])).to(dtype)
    return x, query, torch.from_numpy(cloud)


@FUZZ
@given(
    problem=projection_problems(),
    k=st.sampled_from([1, 3, 7]),
    temperature=st.sampled_from([1.0, 0.1, 0.01, 0.0]),
    hard=st.sampled_from([False, True, 0]),
)
def test_soft_projection(problem, k, temperature, hard):
    x, query, query_batch = problem
    dtype = x.pos.dtype if x.pos.dtype.is_floating_point else torch.float32
    proj = SoftProjection(k, temperature, min_sigma=1e-4).to(dtype)
    out, error = promise("SoftProjection.forward", proj, x.pos, query, x.batch, query_batch, hard)
    ok = x.valid and bool(torch.isfinite(query).all()) and isinstance(hard, bool)
    if not ok:
        assert error is not None
        return
    assert error is None, error
    if query.size(0) == 0:
        return
    queries = type(x)(query, query_batch, query.double().numpy(), query_batch.numpy(), 0, True, "")
    mask = out.weights > -1
    sizes = np.bincount(x.cloud, minlength=x.num_clouds)[query_batch.numpy()]
    mask[:] = torch.arange(k).unsqueeze(0) < torch.from_numpy(np.minimum(sizes, k)).unsqueeze(1)
    check_knn(x, queries, out.neighbors, mask, k)
    real = mask.numpy()
    weights = out.weights.detach().double().numpy()
    result = out.pos.detach().double().numpy()
    assert np.all(np.isfinite(result)), "NaN or inf projected points"
    assert np.all(weights >= 0) and np.all(weights[~real] == 0)
    assert np.allclose(weights.sum(1), 1, atol=1e-2)
    sigma = proj.sigma.item()
    for i in range(len(query)):
        neighbours = x.values[out.neighbors[i].numpy()[real[i]]]
        low, high = neighbours.min(0), neighbours.max(0)
        eps = float(torch.finfo(x.pos.dtype).eps)
        slack = 1e-2 * (high - low).max() + 4 * eps * np.abs(neighbours).max()
        assert np.all(result[i] >= low - slack) and np.all(result[i] <= high + slack)
        d = squared_distances(queries.values[i : i + 1], neighbours)[0]
        if hard:
            assert weights[i][real[i]].max() == 1
            continue
        logits = -(d - d.min()) / sigma
        want = np.exp(logits) / np.exp(logits).sum()
        atol = min(1.0, 50 * eps * (d.max() + 1e-300) / sigma) + 2 * eps + 1e-4
        assert np.allclose(weights[i][real[i]], want, atol=atol), (weights[i], want)


def test_soft_projection_rejects_a_diverged_temperature():
    proj = SoftProjection()
    with torch.no_grad():
        proj.temperature.fill_(float("nan"))
    _, error = promise(
        "SoftProjection.forward", proj, torch.rand(5, 3), torch.rand(2, 3), extra=("temperature",)
    )
    assert error is not None and error.argument == "temperature"


@FUZZ
@given(
    num_out_points=st.sampled_from([1, 4, 0, -1, 2.5, True]),
    k=st.sampled_from([1, 3, 0]),
    point_channels=st.sampled_from([(8,), (8, 16), (), (0,), (8, "a"), "16", 16]),
    head_channels=st.sampled_from([(), (16,), (-1,)]),
    temperature=st.sampled_from([1.0, 0.0, float("nan")]),
    min_sigma=st.sampled_from([1e-4, 0.0, -1.0]),
    flag=st.sampled_from([True, False, 1, "yes"]),
)
def test_samplenet_construction(
    num_out_points, k, point_channels, head_channels, temperature, min_sigma, flag
):
    sampler, error = promise(
        "SampleNet",
        SampleNet,
        num_out_points,
        k,
        skip_projection=flag,
        initial_temperature=temperature,
        min_sigma=min_sigma,
        point_channels=point_channels,
        head_channels=head_channels,
    )
    ok = isinstance(num_out_points, int) and not isinstance(num_out_points, bool)
    ok = ok and num_out_points >= 1 and k >= 1 and isinstance(flag, bool)
    ok = ok and isinstance(point_channels, tuple) and len(point_channels) > 0
    ok = ok and all(isinstance(c, int) and c >= 1 for c in point_channels + head_channels)
    ok = ok and np.isfinite(temperature) and min_sigma >= 0 and (temperature or min_sigma)
    if not ok:
        assert error is not None
        return
    assert error is None, error
    assert sampler.num_out_points == num_out_points


SAMPLERS = {}


def sampler_for(dtype, m=4, skip=False):
    key = (dtype, m, skip)
    if key not in SAMPLERS:
        torch.manual_seed(0)
        SAMPLERS[key] = SampleNet(
            m, k=3, skip_projection=skip, point_channels=(16,), head_channels=(16,)
        ).to(dtype)
    return SAMPLERS[key]


@settings(FUZZ, max_examples=120)
@given(
    x=clouds(dims=(3, 3, 2), dtypes=(torch.float32, torch.float64, torch.float16)),
    training=st.booleans(),
    skip=st.booleans(),
    request=st.sampled_from([None, ("ratio", 0.5), ("ratio", 1.0), ("num_samples", 2)]),
    extra_clouds=st.sampled_from([None, 0, 1, -1]),
)
def test_samplenet_forward(x, training, skip, request, extra_clouds):
    dtype = x.pos.dtype if x.pos.dtype in (torch.float32, torch.float64) else torch.float32
    sampler = sampler_for(dtype, skip=skip).train(training)
    num_clouds = None if extra_clouds is None else x.num_clouds + extra_clouds
    kwargs = {} if request is None else {request[0]: request[1]}
    out, error = promise(
        "SampleNet.forward", sampler, x.pos, x.batch, num_clouds=num_clouds, **kwargs
    )
    ok = x.valid and x.pos.dtype == dtype and x.values.shape[1] == 3
    ok = ok and (num_clouds is None or num_clouds >= x.num_clouds)
    if not ok:
        assert error is not None
        return
    if error is not None:  # the network itself overflows on coordinates near float's max
        assert error.argument == "pos" and "simplification network" in str(error)
        assert np.abs(x.values).max() > 1e15
        return
    B = num_clouds if num_clouds is not None else x.num_clouds
    sizes = np.bincount(x.cloud, minlength=B)
    if request and request[0] == "ratio":
        wanted = np.ceil(np.float32(sizes) * np.float32(request[1])).astype(int)
    else:
        wanted = np.minimum(sizes, request[1] if request else 4)
    if training:
        wanted = np.minimum(wanted, 4)
    assert out.counts.tolist() == wanted.tolist()
    got = x.cloud[out.index.numpy()] if len(out.index) else np.zeros(0, int)
    assert np.bincount(got, minlength=B).tolist() == wanted.tolist()
    assert np.array_equal(got, out.batch.numpy()), "an index outside its cloud"
    assert bool(torch.isfinite(out.pos).all()), "NaN or inf output points"
    if not training:
        assert len(set(out.index.tolist())) == len(out.index), "eval repeats an index"
        assert torch.equal(out.pos, x.pos[out.index])


@settings(FUZZ, max_examples=100)
@given(
    x=clouds(bad=False, dims=(3,), dtypes=(torch.float64,), max_size=6),
    task=st.sampled_from(["scalar", "vector", "number", "int"]),
    alpha=st.sampled_from([30.0, 0.0, -1.0, float("nan")]),
    progressive=st.booleans(),
)
def test_losses_on_samplenet_output(x, task, alpha, progressive):
    sampler = sampler_for(torch.float64, m=4).train()
    if float(np.abs(x.values).max(initial=0)) > 1e15 or x.pos.size(0) == 0:
        return  # squared distances overflow, or no cloud to average over
    out = sampler(x.pos, x.batch)
    task_loss = {
        "scalar": out.pos.pow(2).sum(),
        "vector": out.pos.pow(2).sum(0),
        "number": 1.0,
        "int": torch.tensor(1),
    }[task]
    if progressive:
        loss, error = promise(
            "progressive_loss",
            progressive_loss,
            lambda part: task_loss,
            out,
            x.pos,
            x.batch,
            alpha=alpha,
        )
        ok = alpha >= 0
    else:
        loss, error = promise(
            "samplenet_loss", samplenet_loss, task_loss, out, x.pos, x.batch, alpha=alpha
        )
        ok = task == "scalar" and alpha >= 0
    if not ok:
        assert error is not None
        return
    if progressive and task != "scalar":
        return  # the callable's value is the user's: only the loss's own checks apply
    assert error is None, error
    assert loss.dim() == 0 and bool(torch.isfinite(loss)), loss


@FUZZ
@given(
    kind=st.sampled_from(["learned", "linear", "exponential", "constant", "cosine", 3]),
    start=st.sampled_from([1.0, 1e-3, 0.0, float("nan"), "1"]),
    end=st.sampled_from([1e-3, 1.0, -1.0, float("inf")]),
    num_epochs=st.sampled_from([10, 1, 0, 2.5]),
    epoch=st.sampled_from([0, 3, 50, -1, 1.5]),
)
def test_temperature_profile(kind, start, end, num_epochs, epoch):
    profile, error = promise(
        "TemperatureSchedule", TemperatureSchedule, kind, start, end, num_epochs
    )
    ok = kind in ("learned", "linear", "exponential", "constant")
    ok = ok and finite_number(start) and start > 0 and finite_number(end) and end > 0
    ok = ok and isinstance(num_epochs, int) and num_epochs >= 1
    if not ok:
        assert error is not None
        return
    assert error is None, error
    sigma, error = promise("TemperatureSchedule.sigma", profile.sigma, epoch)
    if not isinstance(epoch, int):
        assert error is not None
        return
    if kind == "learned":
        assert sigma is None
    else:
        assert min(start, end) * (1 - 1e-9) <= sigma <= max(start, end) * (1 + 1e-9)


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    path = tmp_path_factory.mktemp("checkpoint") / "sampler.pt"
    sampler_for(torch.float32).save(path)
    return path.read_bytes()


@FUZZ
@given(
    damage=st.sampled_from(
        ["none", "truncate", "flip", "empty", "random", "pickle", "zip", "config", "weights"]
    ),
    where=st.floats(0.0, 1.0),
)
def test_samplenet_load(saved, tmp_path_factory, damage, where):
    path = tmp_path_factory.mktemp("load") / "sampler.pt"
    data = bytearray(saved)
    at = int(where * (len(data) - 1))
    if damage == "truncate":
        data = data[:at]
    elif damage == "flip":
        data[at] ^= 0xFF
    elif damage == "empty":
        data = b""
    elif damage == "random":
        data = np.random.default_rng(at).integers(0, 256, 300, dtype=np.uint8).tobytes()
    elif damage == "pickle":
        data = pickle.dumps({"config": {"num_out_points": 2}})
    elif damage == "zip":
        buffer = io.BytesIO()
        with zipfile.ZipFile(buffer, "w") as archive:
            archive.writestr("archive/data.pkl", b"not a pickle")
        data = buffer.getvalue()
    elif damage in ("config", "weights"):
        state = torch.load(io.BytesIO(saved), weights_only=True)
        if damage == "config":
            state["config"]["colour"] = "red"
        else:
            state["config"]["num_out_points"] = 5
        buffer = io.BytesIO()
        torch.save(state, buffer)
        data = buffer.getvalue()
    path.write_bytes(bytes(data))
    loaded, error = promise("SampleNet.load", SampleNet.load, path)
    if damage in ("empty", "random", "pickle", "zip", "config", "weights") or (
        damage == "truncate" and at < len(saved)
    ):
        assert error is not None and str(path) in str(error)
        return
    if error is not None:  # a flipped byte that the archive's checks notice
        assert str(path) in str(error)
        return
    assert isinstance(loaded, SampleNet)
