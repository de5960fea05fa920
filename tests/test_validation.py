import pytest
import torch

from tg_samplenet.nn.sampler import SampleNet
from tg_samplenet.nn.soft_projection import SoftProjection
from tg_samplenet.ops.checks import check_ratio
from tg_samplenet.ops.neighbors import padded_knn


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
    with pytest.raises(ValueError, match="k must be an integer >= 1"):
        SoftProjection(k=0)
    with pytest.raises(ValueError, match="k must be at least 1"):
        padded_knn(torch.rand(4, 3), torch.rand(2, 3), 0)
    with pytest.raises(ValueError, match="min_sigma must be >= 0"):
        SoftProjection(min_sigma=-1.0)


def test_tensors_on_different_devices(cloud):
    # "meta" tensors have a device but no data, so this runs without a GPU.
    pos, batch = cloud
    with pytest.raises(ValueError, match="Expected all tensors on one device"):
        SampleNet(num_out_points=4).to("meta")(pos, batch)
    with pytest.raises(ValueError, match="Expected all tensors on one device"):
        SampleNet(num_out_points=4)(pos, batch.to("meta"))
    with pytest.raises(ValueError, match="Expected all tensors on one device"):
        SampleNet(num_out_points=4)(pos.to("meta"))
    with pytest.raises(ValueError, match="Expected all tensors on one device"):
        SoftProjection()(pos, pos[:2].to("meta"))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_tensors_on_cpu_and_cuda(cloud):
    pos, batch = cloud
    with pytest.raises(ValueError, match="Expected all tensors on one device"):
        SampleNet(num_out_points=4)(pos.cuda(), batch.cuda())
    with pytest.raises(ValueError, match="Expected all tensors on one device"):
        SoftProjection()(pos, pos[:2].cuda())


def test_dtype_of_pos_and_model_differ(cloud):
    pos, batch = cloud
    with pytest.raises(TypeError, match="pos is torch.float64 but SampleNet's parameters are"):
        SampleNet(num_out_points=4)(pos.double(), batch)
    with pytest.raises(TypeError, match="pos is torch.float32 but SampleNet's parameters are"):
        SampleNet(num_out_points=4).double()(pos, batch)
