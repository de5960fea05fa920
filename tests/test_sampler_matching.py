r"""SampleNet's choice of inference step: the paper's nearest-point matching (default) or the
matching to distinct input points, with and without a cap on the matched points."""

import pytest
import torch

from reproduction.testing import random_clouds
from tg_samplenet import SampleNet
from tg_samplenet.ops import distinct_sample, hard_sample
from tg_samplenet.ops.checks import InputError


def trained_looking_sampler(**kwargs) -> SampleNet:
    torch.manual_seed(0)
    sampler = SampleNet(24, k=4, **kwargs)
    pos, batch = random_clouds([60, 45], seed=1)
    sampler(pos, batch)  # moves the BatchNorm statistics off their initial values
    return sampler.eval()


@pytest.mark.parametrize("max_matched", [None, 8])
def test_distinct_matching_is_the_ops_function_on_the_simplified_points(max_matched):
    sampler = trained_looking_sampler(matching="distinct", max_matched=max_matched)
    pos, batch = random_clouds([50, 70, 30], seed=2)
    with torch.no_grad():
        out = sampler(pos, batch, num_samples=20)
    expected = distinct_sample(
        pos, batch, out.simplified, out.simplified_batch, out.counts, max_matched
    )
    assert torch.equal(out.index, expected)
    for cloud in range(3):  # unique within each cloud, and from that cloud
        chosen = out.index[out.batch == cloud]
        assert chosen.numel() == 20 and chosen.unique().numel() == 20
        assert bool((batch[chosen] == cloud).all())


def test_default_matching_is_the_papers():
    sampler = trained_looking_sampler()
    pos, batch = random_clouds([50, 70], seed=3)
    with torch.no_grad():
        out = sampler(pos, batch)
    expected = hard_sample(pos, batch, out.simplified, out.simplified_batch, out.counts)
    assert torch.equal(out.index, expected)
    assert sampler.config["matching"] == "nearest"


def test_matching_survives_save_and_load(tmp_path):
    sampler = trained_looking_sampler(matching="distinct", max_matched=8)
    sampler.save(tmp_path / "s.pt")
    loaded = SampleNet.load(tmp_path / "s.pt")
    assert not loaded.training
    assert (loaded.matching, loaded.max_matched) == ("distinct", 8)
    assert "matching='distinct', max_matched=8" in repr(loaded)


@pytest.mark.parametrize(
    "kwargs, argument",
    [
        (dict(matching="hungarian"), "matching"),
        (dict(max_matched=8), "max_matched"),
        (dict(matching="distinct", max_matched=0), "max_matched"),
    ],
)
def test_bad_matching_options_name_the_argument(kwargs, argument):
    with pytest.raises(InputError) as error:
        SampleNet(16, **kwargs)
    assert error.value.argument == argument
