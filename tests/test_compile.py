r"""SampleNet under :func:`torch.compile` (``dynamic=True``): the eval forward and a training
step give the eager results, on every installed neighbour back-end, for two cloud sizes.

The extension calls (``torch_cluster.knn``/``fps``, which have no fake kernel and made
``torch.compile`` fail outright) run as the opaque operators of
:mod:`tg_samplenet.ops.custom_ops`. The graph breaks that remain (printed by
:func:`test_remaining_graph_breaks`, ``pytest -s``) and why:

- ``check_sorted``: the number of clouds a batch vector implies is its last id plus one, a
  value (pass ``num_clouds`` and it is not read);
- ``cloud_sizes``: :func:`torch.bincount`'s output size depends on the largest value, even
  with ``minlength`` (a ``scatter_add_`` into ``[num_clouds]`` zeros would not);
- ``SampleNet.forward``: dropping the simplified points of empty clouds and keeping each
  cloud's first ``counts[i]`` queries are boolean masks, whose sizes depend on values;
- eval only, ``_hard_sample``: the de-duplicated matches and the farthest point
  completion (``counts.sum()`` new points) have value-dependent sizes too.

With ``torch._dynamo.config.capture_dynamic_output_shape_ops`` and ``capture_scalar_outputs``
some of these become unbacked sizes instead of breaks.
"""

import pytest
import torch
import torch._dynamo
from torch._dynamo.utils import counters

from tg_samplenet import SampleNet
from tg_samplenet.losses import simplification_loss
from tg_samplenet.ops.neighbors import available_backends, use_backend


def clouds(sizes, seed=0):
    gen = torch.Generator().manual_seed(seed)
    pos = torch.rand(sum(sizes), 3, generator=gen) * 2 - 1
    batch = torch.repeat_interleave(torch.arange(len(sizes)), torch.tensor(sizes))
    return pos, batch


def make_sampler(seed=0):
    torch.manual_seed(seed)
    return SampleNet(16, k=4)


def eval_forward(sampler, pos, batch):
    out = sampler(pos, batch)
    return out.index, out.pos


def train_step(sampler, pos, batch):
    out = sampler(pos, batch)
    loss = out.pos.square().mean() + 0.1 * out.sigma
    loss = loss + simplification_loss(out.simplified, pos, out.simplified_batch, batch)
    loss.backward()
    return loss.detach(), out.index


@pytest.fixture(autouse=True)
def fresh_dynamo():
    torch._dynamo.reset()
    counters.clear()
    yield
    torch._dynamo.reset()


@pytest.mark.parametrize("backend", available_backends())
def test_compiled_eval_forward_equals_eager(backend):
    sampler = make_sampler().eval()
    compiled = torch.compile(eval_forward, backend="eager", dynamic=True)
    with use_backend(backend), torch.no_grad():
        graphs = []
        for sizes in ([64, 40, 80], [200, 150, 90], [120, 33, 170]):
            pos, batch = clouds(sizes, seed=sizes[0])
            want_index, want_pos = eval_forward(sampler, pos, batch)
            got_index, got_pos = compiled(sampler, pos, batch)
            assert torch.equal(got_index, want_index)
            assert torch.equal(got_pos, want_pos)
            graphs.append(counters["stats"]["unique_graphs"])
    # Not yet asserted: frames that resume after the eval graph breaks still recompile for
    # new cloud sizes (19 graphs for the first size, 20 after the third, on CPU).
    print(f"\neval graphs after each cloud size: {graphs}")


@pytest.mark.parametrize("backend", available_backends())
def test_compiled_training_step_equals_eager(backend):
    eager, compiled_sampler = make_sampler(), make_sampler()
    compiled = torch.compile(train_step, backend="aot_eager", dynamic=True)
    with use_backend(backend):
        graphs = []
        for sizes in ([64, 40, 80], [200, 150, 90]):
            pos, batch = clouds(sizes, seed=sizes[0])
            eager.zero_grad()
            compiled_sampler.zero_grad()
            want_loss, want_index = train_step(eager, pos, batch)
            got_loss, got_index = compiled(compiled_sampler, pos, batch)
            assert torch.equal(got_index, want_index)
            torch.testing.assert_close(got_loss, want_loss)
            for (name, a), b in zip(eager.named_parameters(), compiled_sampler.parameters()):
                torch.testing.assert_close(b.grad, a.grad, msg=name)
            graphs.append(counters["stats"]["unique_graphs"])
    assert graphs[1] == graphs[0]


@pytest.mark.xfail(
    strict=True,
    reason="open: with inductor the loss matches to 2e-5 but some gradients differ by up to 7%",
)
def test_compiled_training_step_inductor():
    # The default back-end generates and builds C++ kernels: one size only, to stay fast.
    eager, compiled_sampler = make_sampler(), make_sampler()
    compiled = torch.compile(train_step, dynamic=True)
    pos, batch = clouds([64, 40, 80])
    want_loss, want_index = train_step(eager, pos, batch)
    got_loss, got_index = compiled(compiled_sampler, pos, batch)
    assert torch.equal(got_index, want_index)
    # Inductor fuses reductions, which reorders float sums.
    torch.testing.assert_close(got_loss, want_loss, rtol=1e-4, atol=1e-6)
    for a, b in zip(eager.parameters(), compiled_sampler.parameters()):
        torch.testing.assert_close(b.grad, a.grad, rtol=1e-4, atol=1e-5)


def test_remaining_graph_breaks():
    # The neighbour search never breaks the graph; the breaks that remain are the
    # value-dependent sizes listed in the module docstring.
    sampler = make_sampler()
    pos, batch = clouds([64, 40, 80])
    for mode in ("train", "eval"):
        sampler.train(mode == "train")
        torch._dynamo.reset()
        with torch.set_grad_enabled(mode == "train"):
            explained = torch._dynamo.explain(eval_forward)(sampler, pos, batch)
        where = []
        for reason in explained.break_reasons:
            frame = reason.user_stack[-1]
            where.append(f"{frame.filename.split('/')[-1]}:{frame.name}")
            assert "knn" not in frame.name and "fps" not in frame.name
        print(f"\n{mode}: {explained.graph_count} graphs, {explained.graph_break_count} breaks")
        for place, reason in zip(where, explained.break_reasons):
            print(f"  {place}: {reason.reason.splitlines()[0][:100]}")
        allowed = {
            "checks.py:check_sorted",
            "checks.py:check_cloud_batch",
            "batch.py:cloud_sizes",
            "sampler.py:forward",
        }
        if mode == "eval":
            allowed |= {
                "matching.py:_hard_sample",
                "matching.py:first_occurrence",
                "farthest_point.py:_farthest_point_sampling",
            }
        assert set(where) <= allowed, set(where) - allowed
