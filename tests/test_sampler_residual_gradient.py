r"""SampleNet(residual_gradient=True): the same training points as the paper's soft
projection, with the identity added to its Jacobian with respect to the simplified points."""

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from tg_samplenet import SampleNet
from tg_samplenet.ops.checks import InputError


def _pair(m: int, k: int, seed: int) -> tuple[SampleNet, SampleNet]:
    torch.manual_seed(seed)
    plain = SampleNet(m, k=k, point_channels=(8, 16), head_channels=(16,))
    residual = SampleNet(
        m, k=k, point_channels=(8, 16), head_channels=(16,), residual_gradient=True
    )
    residual.load_state_dict(plain.state_dict())
    return plain.train(), residual.train()


@settings(max_examples=20, deadline=None)
@given(
    sizes=st.lists(st.integers(8, 24), min_size=1, max_size=3),
    m=st.integers(1, 8),
    k=st.integers(1, 5),
    seed=st.integers(0, 2**16),
)
def test_values_equal_and_gradient_adds_identity(sizes, m, k, seed):
    g = torch.Generator().manual_seed(seed)
    pos = torch.rand(sum(sizes), 3, generator=g, dtype=torch.float64)
    batch = torch.repeat_interleave(torch.arange(len(sizes)), torch.tensor(sizes))
    plain, residual = _pair(m, k, seed)
    plain, residual = plain.double(), residual.double()
    outs = [sampler(pos, batch) for sampler in (plain, residual)]
    torch.testing.assert_close(outs[1].pos, outs[0].pos, rtol=0, atol=0)
    weight = torch.randn(outs[0].pos.shape, generator=g, dtype=torch.float64)
    grads = [
        torch.autograd.grad(
            (out.pos * weight).sum(), (out.simplified, sampler.projection.temperature)
        )
        for out, sampler in zip(outs, (plain, residual))
    ]
    # Every cloud has at least m points, so each simplified point is queried once.
    torch.testing.assert_close(grads[1][0], grads[0][0] + weight)
    torch.testing.assert_close(grads[1][1], grads[0][1])  # t learns as in the paper


def test_inference_is_unchanged_and_config_round_trips(tmp_path):
    plain, residual = _pair(4, 3, 0)
    pos = torch.rand(40, 3)
    batch = torch.repeat_interleave(torch.arange(2), 20)
    plain(pos, batch), residual(pos, batch)  # one training step of BatchNorm statistics each
    plain.eval(), residual.eval()
    assert torch.equal(plain(pos, batch).index, residual(pos, batch).index)
    residual.save(tmp_path / "s.pt")
    loaded = SampleNet.load(tmp_path / "s.pt")
    assert loaded.residual_gradient and "residual_gradient=True" in repr(loaded)
    assert plain.config["residual_gradient"] is False and "residual" not in repr(plain)


def test_residual_gradient_must_be_bool():
    with pytest.raises(InputError, match="residual_gradient"):
        SampleNet(4, residual_gradient=1)
