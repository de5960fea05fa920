r"""SampleNet(straight_through=True): in training, the task gets the hard sample that the
inference step takes from the same simplified points (values), with the soft projection's
gradient where a simplified point owns the sample point."""

import pytest
import torch

from tg_samplenet import SampleNet
from tg_samplenet.ops import hard_sample


@pytest.mark.parametrize("ratio", [0.1, 0.25, 0.5])
def test_values_are_the_inference_steps_sample_and_gradients_reach_the_sampler(ratio):
    torch.manual_seed(0)
    sampler = SampleNet(16, k=4, straight_through=True)  # fewer outputs than some counts
    pos = torch.rand(300, 3)
    batch = torch.tensor([0] * 120 + [1] * 180)
    x = torch.randn(300, 5, requires_grad=True)
    out = sampler(pos, batch, ratio=ratio)
    counts = torch.ceil(torch.tensor([120.0, 180.0]) * ratio).long()
    expected = hard_sample(pos, batch, out.simplified.detach(), out.simplified_batch, counts)
    assert torch.equal(out.index, expected) and torch.equal(out.counts, counts)
    assert torch.equal(out.pos, pos[out.index]) and torch.equal(out.batch, batch[out.index])
    assert torch.equal(out.carry(x), x[out.index])
    (out.pos.pow(2).sum() + out.carry(x).sum()).backward()
    for name, p in sampler.named_parameters():
        assert p.grad is not None and bool(p.grad.abs().sum() > 0), name
    # The features' gradient: 1 per selected point (hard part) plus the soft mix's share.
    assert bool((x.grad[out.index] != 0).all())


def test_points_of_the_farthest_point_completion_carry_no_sampler_gradient():
    torch.manual_seed(1)
    sampler = SampleNet(4, k=3, straight_through=True)
    pos = torch.rand(100, 3)
    out = sampler(pos, ratio=0.3)  # 30 points: at most 4 matched, the rest completion
    owned = out.weights[:, 1:].abs().sum(1) > 0  # one-hot rows: completion points
    grads = torch.autograd.grad(out.pos[~owned].sum(), sampler.head.lins[-1].weight,
                                allow_unused=True)[0]  # fmt: skip
    assert grads is None or bool((grads == 0).all())
    assert int(owned.sum()) <= 4


def test_the_setting_is_saved_and_shown(tmp_path):
    sampler = SampleNet(8, straight_through=True, head_norm=False)
    assert repr(sampler) == "SampleNet(8, k=7, straight_through=True, head_norm=False)"
    sampler.save(tmp_path / "s.pt")
    loaded = SampleNet.load(tmp_path / "s.pt")
    assert loaded.straight_through and not loaded.head_norm
