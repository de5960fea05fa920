r"""The checks at the public boundary: each bad argument gets an InputError (a ValueError, or
an InputTypeError that is also a TypeError) whose message names it and says what was
wrong."""

import pytest
import torch

from tg_samplenet.losses import chamfer_distance, max_nn_distance, simplification_loss
from tg_samplenet.nn.sampler import SampleNet
from tg_samplenet.nn.soft_projection import SoftProjection
from tg_samplenet.ops import (
    InputError,
    InputTypeError,
    farthest_point_sampling,
    fps,
    nearest_index,
    padded_knn,
    sample_counts,
)
from tg_samplenet.ops.checks import check_ratio


@pytest.fixture
def sampler():
    return SampleNet(num_out_points=4).eval()


@pytest.fixture
def cloud():
    return torch.rand(10, 3), torch.tensor([0] * 6 + [1] * 4)


@pytest.mark.parametrize("shape", [(10, 2), (10,), (10, 3, 1)])
def test_pos_of_the_wrong_shape(sampler, shape):
    with pytest.raises(ValueError, match=r"pos must have shape \[N, 3\]"):
        sampler(torch.rand(shape))


def test_pos_not_floating_point(sampler):
    with pytest.raises(TypeError, match="pos must be floating point"):
        sampler(torch.randint(0, 5, (10, 3)))
    with pytest.raises(TypeError, match="pos must be a torch.Tensor"):
        sampler([[0.0, 0.0, 0.0]])


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_pos_with_nan_or_inf(sampler, cloud, bad):
    pos, batch = cloud
    pos[3, 1] = bad
    with pytest.raises(ValueError, match="pos contains NaN or infinite values"):
        sampler(pos, batch)
    with pytest.raises(ValueError, match="query contains NaN"):
        SoftProjection()(torch.rand(5, 3), pos)


def test_unsorted_batch(sampler, cloud):
    pos, _ = cloud
    with pytest.raises(ValueError, match="batch must be sorted"):
        sampler(pos, torch.tensor([0, 0, 1, 1, 0, 0, 1, 1, 1, 1]))


def test_batch_of_the_wrong_length_or_type(sampler, cloud):
    pos, batch = cloud
    with pytest.raises(ValueError, match=r"batch must have shape \[10\]"):
        sampler(pos, batch[:-1])
    with pytest.raises(TypeError, match="batch must be an integer tensor"):
        sampler(pos, batch.float())
    with pytest.raises(ValueError, match="batch contains negative cloud indices"):
        sampler(pos, batch - 1)
    with pytest.raises(ValueError, match="num_clouds=1 is smaller"):
        sampler(pos, batch, num_clouds=1)
    with pytest.raises(ValueError, match=r"query_batch must have shape \[2\]"):
        SoftProjection()(pos, pos[:2], batch, torch.tensor([0]))


@pytest.mark.parametrize("ratio", [0.0, -0.1, 1.5, float("nan")])
def test_ratio_outside_the_unit_interval(sampler, cloud, ratio):
    with pytest.raises(ValueError, match=r"ratio must lie in \(0, 1\]"):
        sampler(*cloud, ratio=ratio)


def test_ratio_of_the_wrong_type():
    with pytest.raises(TypeError, match="ratio must be a float"):
        check_ratio("0.5")
    with pytest.raises(ValueError, match="ratio must be a single number"):
        check_ratio(torch.tensor([0.5, 0.5]))
    assert check_ratio(torch.tensor(0.25)) == 0.25


def test_num_out_points_below_one():
    with pytest.raises(ValueError, match="num_out_points must be at least 1"):
        SampleNet(num_out_points=0)
    with pytest.raises(TypeError, match="num_out_points must be an int"):
        SampleNet(num_out_points=2.5)


def test_num_samples_below_one(sampler, cloud):
    with pytest.raises(ValueError, match="num_samples must be at least 1"):
        sampler(*cloud, num_samples=0)


def test_k_below_one():
    with pytest.raises(ValueError, match="k must be at least 1"):
        SampleNet(num_out_points=4, k=0)
    with pytest.raises(ValueError, match="k must be at least 1"):
        SoftProjection(k=0)
    with pytest.raises(ValueError, match="k must be at least 1"):
        padded_knn(torch.rand(4, 3), torch.rand(2, 3), 0)
    with pytest.raises(ValueError, match="min_sigma must be at least 0"):
        SoftProjection(min_sigma=-1.0)


def test_tensors_on_different_devices(cloud):
    # "meta" tensors have a device but no data, so this runs without a GPU.
    pos, batch = cloud
    with pytest.raises(ValueError, match="one device|same device"):
        SampleNet(num_out_points=4).to("meta")(pos, batch)
    with pytest.raises(ValueError, match="one device|same device"):
        SampleNet(num_out_points=4)(pos, batch.to("meta"))
    with pytest.raises(ValueError, match="one device|same device"):
        SampleNet(num_out_points=4)(pos.to("meta"))
    with pytest.raises(ValueError, match="one device|same device"):
        SoftProjection()(pos, pos[:2].to("meta"))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_tensors_on_cpu_and_cuda(cloud):
    pos, batch = cloud
    with pytest.raises(ValueError, match="one device|same device"):
        SampleNet(num_out_points=4)(pos.cuda(), batch.cuda())
    with pytest.raises(ValueError, match="one device|same device"):
        SoftProjection()(pos, pos[:2].cuda())


def test_dtype_of_pos_and_model_differ(cloud):
    pos, batch = cloud
    with pytest.raises(TypeError, match="pos is torch.float64 but the sampler is"):
        SampleNet(num_out_points=4)(pos.double(), batch)
    with pytest.raises(TypeError, match="pos is torch.float32 but the sampler is"):
        SampleNet(num_out_points=4).double()(pos, batch)


# The library's error type: a ValueError (TypeError for wrong types) naming the argument.


def test_input_error_names_its_argument():
    with pytest.raises(InputError) as info:
        fps(torch.rand(4, 3), ratio=2.0)
    assert info.value.argument == "ratio" and isinstance(info.value, ValueError)
    with pytest.raises(InputTypeError) as info:
        fps(torch.randint(0, 5, (4, 3)))
    assert info.value.argument == "x"
    assert isinstance(info.value, TypeError) and isinstance(info.value, ValueError)


@pytest.mark.parametrize(
    "batch, message",
    [
        (torch.tensor([0, 1, 0, 1]), "batch must be sorted"),
        (torch.tensor([-1, 0, 0, 0]), "batch contains negative cloud indices"),
        (torch.tensor([0.0, 0, 1, 1]), "batch must be an integer tensor"),
        (torch.tensor([[0, 0, 1, 1]]), r"batch must have shape \[4\]"),
        (torch.tensor([0, 0, 1]), r"batch must have shape \[4\]"),
    ],
)
def test_bad_batch_vectors_are_named_by_every_op(batch, message):
    pos = torch.rand(4, 3)
    calls = [
        lambda: fps(pos, batch, 0.5),
        lambda: farthest_point_sampling(pos, batch, torch.tensor([1, 1])),
    ]
    for call in calls:
        with pytest.raises(InputError, match=message):
            call()
    for call in [
        lambda: padded_knn(pos, pos, 2, batch, torch.tensor([0, 0, 1, 1])),
        lambda: chamfer_distance(pos, pos, batch, torch.tensor([0, 0, 1, 1])),
    ]:
        with pytest.raises(InputError, match=message.replace("batch", "batch_x")):
            call()


def test_points_of_any_dimension_but_not_integer_or_mismatched():
    assert fps(torch.rand(6, 1), ratio=0.5, random_start=False).tolist()[0] == 0
    assert padded_knn(torch.rand(6, 5), torch.rand(2, 5), 2).index.shape == (2, 2)
    with pytest.raises(InputError, match="y has 2 coordinates per point but x has 3"):
        padded_knn(torch.rand(6, 3), torch.rand(2, 2), 2)
    with pytest.raises(InputTypeError, match="y is torch.float64 but x is torch.float32"):
        nearest_index(torch.rand(6, 3), torch.rand(2, 3, dtype=torch.float64))
    with pytest.raises(InputError, match=r"x must have shape \[N, D\] with D >= 1"):
        fps(torch.rand(6, 0))


def test_counts_and_ratios():
    with pytest.raises(InputError, match=r"ratio must lie in \(0, 1\] \(got -1.0\)"):
        sample_counts(torch.tensor([4, 5]), ratio=-1)
    with pytest.raises(InputError, match=r"ratio must lie in \(0, 1\] \(got nan\)"):
        sample_counts(torch.tensor([4, 5]), ratio=float("nan"))
    with pytest.raises(InputError, match="sizes contains negative cloud sizes"):
        sample_counts(torch.tensor([4, -5]), num_samples=2)
    assert sample_counts(torch.tensor([25]), ratio=torch.tensor(0.6)).tolist() == [16]
    pos, batch = torch.rand(5, 3), torch.tensor([0, 0, 0, 1, 1])
    with pytest.raises(InputError, match="counts\\[1\\] = 3 exceeds the 2 unselected points"):
        farthest_point_sampling(pos, batch, torch.tensor([1, 3]))
    with pytest.raises(InputError, match="counts\\[0\\] = 2 exceeds the 1 unselected points"):
        farthest_point_sampling(pos, batch, torch.tensor([2, 0]), selected=torch.tensor([2, 0]))
    with pytest.raises(InputError, match="counts must have one entry per cloud"):
        farthest_point_sampling(pos, batch, torch.tensor([1]))
    with pytest.raises(InputError, match="selected holds 5, outside"):
        farthest_point_sampling(pos, batch, torch.tensor([1, 1]), selected=torch.tensor([5]))
    with pytest.raises(InputError, match="batch_size=1 is smaller than the batch vector implies"):
        fps(pos, batch, batch_size=1)


def test_selected_in_any_order_continues_the_same_run():
    pos = torch.tensor([[0.0, 0, 0], [1, 0, 0], [5, 0, 0], [10, 0, 0], [0, 3, 0], [0, 9, 0]])
    batch = torch.tensor([0, 0, 0, 0, 1, 1])
    grouped = farthest_point_sampling(pos, batch, torch.tensor([1, 1]), torch.tensor([0, 4]))
    mixed = farthest_point_sampling(pos, batch, torch.tensor([1, 1]), torch.tensor([4, 0, 4]))
    assert grouped.tolist() == mixed.tolist() == [3, 5]


def test_losses_reject_missing_clouds_and_too_few_clouds():
    x, batch = torch.rand(6, 3), torch.tensor([0, 0, 1, 1, 2, 2])
    with pytest.raises(InputError, match="num_clouds=2 is smaller than the batch vector"):
        max_nn_distance(x, x, batch, batch, num_clouds=2)
    with pytest.raises(InputError, match="y has no points in cloud 2, where x has some"):
        chamfer_distance(x, x[:4], batch, batch[:4])
    with pytest.raises(InputError, match="x and y hold no points"):
        chamfer_distance(torch.empty(0, 3), torch.empty(0, 3))
    with pytest.raises(InputError, match="beta must be at least 0.0"):
        simplification_loss(x, x, batch, batch, beta=-1.0)


def test_an_absent_cloud_id_is_left_out_of_the_mean():
    x = torch.tensor([[0.0, 0, 0], [1, 0, 0], [0, 0, 0], [0, 2, 0]])
    y = torch.tensor([[0.0, 0, 0], [0, 0, 0]])
    batch_x, batch_y = torch.tensor([0, 0, 2, 2]), torch.tensor([0, 2])
    per_cloud = chamfer_distance(x, y, batch_x, batch_y, reduction="none")
    assert per_cloud[0].item() == 0.5 and per_cloud[2].item() == 2.0
    assert torch.isnan(per_cloud[1])  # cloud 1 holds no points: undefined, not 0
    assert chamfer_distance(x, y, batch_x, batch_y).item() == 1.25


def test_soft_projection_needs_a_positive_finite_sigma():
    with pytest.raises(InputError, match="gives sigma = t\\^2 \\+ min_sigma = 0"):
        SoftProjection(initial_temperature=0.0, min_sigma=0.0)
    with pytest.raises(InputError, match="initial_temperature must be finite"):
        SoftProjection(initial_temperature=float("nan"))
    with pytest.raises(InputError, match="sigma must be positive"):
        SoftProjection(min_sigma=0.0).set_sigma(0.0)
    proj = SoftProjection()
    with torch.no_grad():
        proj.temperature.fill_(float("inf"))
    with pytest.raises(InputError, match="temperature gives sigma = inf"):
        proj(torch.rand(5, 3), torch.rand(2, 3))


def test_samplenet_construction_arguments():
    with pytest.raises(InputError, match=r"point_channels must hold at least one layer width"):
        SampleNet(4, point_channels=())
    with pytest.raises(InputError, match="head_channels must hold positive ints"):
        SampleNet(4, head_channels=(16, 0))
    with pytest.raises(InputTypeError, match="complete_fps must be a bool"):
        SampleNet(4, complete_fps="no")


@pytest.mark.parametrize(
    "content, message",
    [
        (b"", "is empty"),
        (b"\x80\x04garbage", "is not a readable checkpoint"),
        (None, "is not a readable checkpoint"),  # the first half of a real file
    ],
)
def test_samplenet_load_names_the_file(tmp_path, content, message):
    path = tmp_path / "sampler.pt"
    SampleNet(4, point_channels=(8,), head_channels=()).save(path)
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2] if content is None else content)
    with pytest.raises(InputError, match=message) as info:
        SampleNet.load(path)
    assert str(path) in str(info.value) and info.value.argument == "path"
    with pytest.raises(FileNotFoundError, match="nowhere.pt"):
        SampleNet.load(tmp_path / "nowhere.pt")
