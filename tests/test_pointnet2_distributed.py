r"""PointNet++ with learned sampling trained data-parallel: two CPU processes (gloo) launched
by torchrun on 127.0.0.1 train the joint model of examples/pointnet2_samplenet.py with
:func:`~reproduction.pointnet2.train_pointnet2` and end with identical weights,
match one process that trains on the same global batches, and gather exactly the single
process's test accuracy; the example itself runs under torchrun and only rank 0 writes.

This file is also the workers' script: torchrun runs it with :obj:`__main__`.

Tolerance. The run is in float64 with the head's dropout off (its masks are drawn per
process, so two processes draw other masks than one). The two-process run differs from the
single process only in the order of sums (per-rank losses and gradients averaged,
BatchNorm's statistics all-reduced), about 1e-16 relative per operation: the epoch losses
agree to 1e-10 relative. Adam turns the rounding noise of gradients that vanish analytically
(the biases right before a BatchNorm, which cancels them) into steps of up to
lr * noise / eps; after 4 steps at the samplers' lr 1e-2 we measured a largest difference of
3.4e-6 (the first bias of the second sampler's point MLP; every weight that is not such a
bias or the running mean behind it within 5e-8), and allow ATOL = 2e-5.
"""

from __future__ import annotations

import json
import sys
from dataclasses import replace
from pathlib import Path

import pytest
import torch
from distributed_support import one_thread, torchrun
from torch_geometric.loader import DataLoader

from reproduction.config import POINTNET2
from reproduction.datasets import get_dataset
from reproduction.pointnet2 import accuracy, build_pointnet2, train_pointnet2
from reproduction.tasks.pointnet2 import evaluate_pointnet2
from tg_samplenet.training import distributed as tdist
from tg_samplenet.training import seed_everything
from tg_samplenet.training.distributed import DistributedBatchSampler

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "pointnet2_samplenet.py"
WORLD = 2
SEED = 4
BATCH = 6  # global batch, split 3 + 3
EPOCHS = 2
ATOL = 2e-5
PROFILE = replace(POINTNET2["smoke"], task_epochs=EPOCHS, batch_size=BATCH)


def splits():
    def split(name: str, per_class: int):
        data = get_dataset("synthetic", None, name, num_points=64, seed=0,
                           samples_per_class=per_class)  # fmt: skip
        return [d.clone().apply(lambda t: t.double() if t.is_floating_point() else t)
                for d in data], len(data.classes)  # fmt: skip

    (train, num_classes), (test, _) = split("train", 1), split("test", 1)
    return train, test, num_classes


def new_model(num_classes: int):
    seed_everything(0)
    model = build_pointnet2(num_classes, PROFILE, learned=True).double()
    model.mlp.dropout = [0.0] * len(model.mlp.dropout)
    return model


def weights(model) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def worker(out: Path):
    r"""What each of the torchrun processes runs."""
    torch.set_num_threads(1)
    tdist.init_distributed("cpu")
    train, test, num_classes = splits()
    model = new_model(num_classes)
    loader = tdist.training_loader(train, BATCH, seed=SEED)
    history = train_pointnet2(model, loader, PROFILE, out / "joint.pt", "cpu", False)
    test_loader = DataLoader(test, BATCH)
    gathered = accuracy(model, test_loader, tdist.shard_loader(test_loader), "cpu")
    result = dict(history=history, weights=weights(model), accuracy=gathered)
    torch.save(result, out / f"rank{tdist.get_rank()}.pt")


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    r"""One torchrun launch of two processes, then one process on the same global batches."""
    out = tmp_path_factory.mktemp("pointnet2_distributed")
    torchrun(Path(__file__), str(out))
    ranks = [torch.load(out / f"rank{r}.pt", weights_only=True) for r in range(WORLD)]
    with one_thread():
        train, test, num_classes = splits()
        model = new_model(num_classes)
        batches = DistributedBatchSampler(train, BATCH, seed=SEED, num_replicas=1, rank=0)
        loader = DataLoader(train, batch_sampler=batches)
        history = train_pointnet2(model, loader, PROFILE, out / "single.pt", "cpu", False)
        two = new_model(num_classes)
        two.load_state_dict(ranks[0]["weights"])
        expected = evaluate_pointnet2(two, DataLoader(test, BATCH), "cpu")
    return dict(ranks=ranks, history=history, weights=weights(model), expected=expected)


@pytest.mark.slow
def test_both_ranks_end_with_identical_weights(runs):
    first, second = runs["ranks"]
    assert first["weights"].keys() == second["weights"].keys()
    for name, value in first["weights"].items():
        assert torch.equal(value, second["weights"][name]), name
    assert first["history"] == second["history"] and len(first["history"]) == EPOCHS


@pytest.mark.slow
def test_two_processes_match_one_on_the_same_global_batches(runs):
    two, one = runs["ranks"][0], runs["weights"]
    largest = max((two["weights"][k] - one[k]).abs().max().item() for k in one
                  if one[k].is_floating_point())  # fmt: skip
    assert largest < ATOL
    assert two["history"] == pytest.approx(runs["history"], rel=1e-9)


@pytest.mark.slow
def test_gathered_accuracy_equals_the_single_process(runs):
    # Each rank counted its whole test batches with the same weights: the sum is exact.
    assert runs["ranks"][0]["accuracy"] == runs["ranks"][1]["accuracy"] == runs["expected"]


@pytest.mark.slow
def test_example_under_torchrun_writes_once_from_rank_0(tmp_path):
    out = tmp_path / "run"
    done = torchrun(EXAMPLE, "--smoke", "--no-progress", "--out", str(out))
    data = json.loads((out / "results.json").read_text())
    assert {"pointnet2_fps", "pointnet2_samplenet", "dropin_samplenet"} <= set(data["results"])
    assert all(0.0 <= v <= 1.0 for row in data["results"].values() for v in row.values())
    assert done.stdout.count("wrote ") == 1  # rank 1's standard output goes to devnull
    assert sorted(p.name for p in out.iterdir()) == [
        "accuracy.png",
        "checkpoints",
        "results.json",
        "results.md",
    ]


if __name__ == "__main__":
    worker(Path(sys.argv[1]))
