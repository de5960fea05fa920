r"""SampleNet's inference fast path: the folded, chunked point MLP gives the bits of the
folded MLP on all points at once, for chunk sizes from 16 rows (chunks that straddle clouds,
clouds longer than a chunk, an empty cloud, a short last chunk), so that the chunk size
changes no sample; and the chunks keep the borders of the earlier 16384-point chunks."""

import pytest
import torch
from torch_geometric.nn import MLP, global_max_pool

import tg_samplenet.nn.inference_fast_path as fast_path
from reproduction.testing import random_clouds
from tg_samplenet.nn.inference_fast_path import chunk_bounds, chunked_max_pool, folded_mlp


def trained_mlp(channels, plain_last, seed=0) -> MLP:
    torch.manual_seed(seed)
    mlp = MLP(channels, norm="batch_norm", plain_last=plain_last)
    with torch.no_grad():  # BatchNorm statistics and affine parameters away from identity
        for norm in mlp.norms:
            bn = norm.module
            bn.running_mean.uniform_(-0.5, 0.5)
            bn.running_var.uniform_(0.5, 2.0)
            bn.weight.uniform_(-1.5, 1.5)
            bn.bias.uniform_(-0.5, 0.5)
    return mlp.eval()


@pytest.mark.parametrize("chunk", [16, 24, 64, 1000, 1 << 14])
def test_chunks_give_the_bits_of_the_whole(chunk, monkeypatch):
    pos, batch = random_clouds([130, 0, 45, 300, 1], seed=2)
    mlp = trained_mlp([3, 32, 16, 64], plain_last=False)
    with torch.no_grad():
        expected = global_max_pool(folded_mlp(mlp, pos), batch, size=6)
        monkeypatch.setattr(fast_path, "POOL_CHUNK", chunk)
        got = chunked_max_pool(mlp, pos, batch, 6)
    assert torch.equal(got, expected)
    assert torch.equal(got[1], torch.zeros(64)) and torch.equal(got[5], torch.zeros(64))


@pytest.mark.parametrize("plain_last", [False, True])
def test_folded_layers_equal_the_eval_modules(plain_last):
    x = torch.randn(50, 8, generator=torch.Generator().manual_seed(3))
    mlp = trained_mlp([8, 16, 16, 4], plain_last=plain_last, seed=1)
    with torch.no_grad():
        assert torch.allclose(folded_mlp(mlp, x), mlp(x), atol=1e-5)


@pytest.mark.parametrize("num_points", [0, 1, 3, 2048, 2049, 2063, 2064, 16384, 16387, 40000])
def test_chunk_bounds_keep_the_16384_point_blocks(num_points):
    bounds = chunk_bounds(num_points)
    assert bounds[0][0] == 0 and bounds[-1][1] == num_points
    assert all(a[1] == b[0] for a, b in zip(bounds, bounds[1:]))
    starts = {start for start, _ in bounds}
    assert set(range(0, num_points, 1 << 14)) <= starts  # the earlier borders stay
    for start, end in bounds:
        block_end = min(start // (1 << 14) * (1 << 14) + (1 << 14), num_points)
        assert end <= block_end  # no chunk crosses an earlier border
        # Short only where the earlier block itself was short.
        assert end - start >= 16 or (start % (1 << 14) == 0 and end == block_end)
        assert end - start <= fast_path.POOL_CHUNK + 15
