r"""``tg-samplenet train`` under torchrun: two CPU processes (gloo) on 127.0.0.1 train both
stages (the task network, then the progressive sampler) data-parallel for each task, end with
identical weights, only rank 0 writes (each file atomically), the result matches one process
that trains on the same global batches, a run one process started is finished by two, and
the held-out table the two processes gather equals the single process's on the same weights.

This file is also the workers' script: torchrun runs it with :obj:`__main__`.

Tolerance. ``train`` works in float32 (the point files' precision), and two processes differ
from one only in the order of sums (per rank, then all-reduced; BatchNorm's statistics
summed over the ranks in float64), about 1e-7 relative per operation: the losses of every
epoch then agree to 1e-7 for the autoencoder and 1e-4 for the sampler (measured; we allow
LOSS_RTOL = 1e-3). The weights drift further apart, since Adam divides every step by the
gradient's running RMS, so a component whose gradient is tiny (the biases before BatchNorm,
which it cancels, ReLU-dead channels) takes steps of size lr made of float32 noise: after the
2 + 2 epochs below the largest weight difference was 1.3e-3 (autoencoder) and 2.9e-3
(sampler), and we allow WEIGHT_ATOL = 1e-2. Without synchronised BatchNorm the same run is
off by more than LOSS_RTOL in its losses and by 0.12 in the sampler's weights, and one process
on other batches by 1.0 (asserted below): the tolerances separate a correct run from a wrong
one. Classification's PointNet trains with dropout, whose masks each process draws from its
own generator, so its task network agrees with one process in distribution, not in value; for
classification the sampler stage is compared (resumed from the single process's checkpoint,
against the same frozen network).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import sys
from pathlib import Path
from typing import Any, Optional
from unittest import mock

import numpy as np
import pytest
import torch
from distributed_support import one_thread, torchrun
from torch_geometric.loader import DataLoader

import tg_samplenet.cli.train as cli_train
import tg_samplenet.training.loop as fit_module
from tg_samplenet.cli.main import main
from tg_samplenet.training import distributed as tdist
from tg_samplenet.training.distributed import DistributedBatchSampler

WORLD = 2
SEED = 3
RECONSTRUCTION = "reconstruction"
TASKS = ("classification", RECONSTRUCTION)
# Global batches: 4 clouds split 2 + 2, and 5 split 3 + 2 (each rank's loss scaled by its share).
BATCH = {"classification": 4, "reconstruction": 5}
EPOCHS = 2
WEIGHT_ATOL = 1e-2
LOSS_RTOL = 1e-3
SAMPLER = "samplenet_progressive"


def write_data(root: Path):
    r"""16 clouds of 60 to 109 points as DATA/<class>/<file>.npy: sphere shells and flat
    squares."""
    rng = np.random.default_rng(12)
    for c in range(2):
        (root / f"class{c}").mkdir(parents=True)
        for i in range(8):
            pos = rng.normal(size=(60 + 7 * i, 3))
            if c == 0:
                pos /= np.linalg.norm(pos, axis=1, keepdims=True)
            else:
                pos[:, 2] = 0.0
            np.save(root / f"class{c}" / f"{i}.npy", pos)


def command(task: str, data: Path, out: Path, batch_size: Optional[int] = None) -> list[str]:
    batch_size = batch_size or BATCH[task]
    return [
        "train", str(data), "--task", task, "-o", str(out), "--profile", "smoke",
        "--num-points", "32", "--epochs", str(EPOCHS), "--task-epochs", str(EPOCHS),
        "--batch-size", str(batch_size), "--seed", str(SEED), "--device", "cpu",
        "--no-progress",
    ]  # fmt: skip


def single_process_loader(dataset, batch_size: int, seed: int = 0, **kwargs) -> DataLoader:
    r"""One process seeing the very global batches of the two-process run."""
    batches = DistributedBatchSampler(dataset, batch_size, seed=seed, num_replicas=1, rank=0)
    return DataLoader(dataset, batch_sampler=batches, **kwargs)


class _Interrupted(Exception):
    pass


def train(
    task: str,
    data: Path,
    out: Path,
    loader: Optional[Any] = None,
    stop_after: Optional[int] = None,
) -> dict[str, Any]:
    r"""Runs ``tg-samplenet train`` in this process and records what it trained (the weights
    of the task network and of the sampler) and which files it wrote (the targets of the
    atomic renames). :obj:`loader` replaces
    :func:`~tg_samplenet.training.distributed.training_loader`; :obj:`stop_after` interrupts
    the run once the sampler's checkpoint holds that epoch."""
    real_save = fit_module.atomic_save

    def save(state, path):
        real_save(state, path)
        if Path(path).name == f"{SAMPLER}.pt" and state["epoch"] == stop_after:
            raise _Interrupted

    with contextlib.ExitStack() as stack:
        patch = stack.enter_context
        fit_model = patch(mock.patch.object(cli_train, "fit_model", wraps=cli_train.fit_model))
        sampler = patch(mock.patch.object(cli_train, "fit_sampler", wraps=cli_train.fit_sampler))
        replace = patch(mock.patch.object(os, "replace", wraps=os.replace))
        patch(mock.patch.object(fit_module, "atomic_save", save))
        if loader is not None:
            patch(mock.patch.object(cli_train, "training_loader", loader))
        try:
            code = main(command(task, data, out))
        except _Interrupted:
            return {}
    return {
        "code": code,
        "task": weights(fit_model.call_args.args[0]),
        "sampler": weights(sampler.call_args.args[0]),
        "written": [str(Path(call.args[1]).relative_to(out)) for call in replace.call_args_list],
    }


def weights(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


def max_difference(a: dict, b: dict) -> float:
    return max((a[k].double() - b[k].double()).abs().max().item() for k in a)


def history(out: Path, name: str) -> list[float]:
    return torch.load(out / "checkpoints" / f"{name}.pt", weights_only=True)["history"]


def validation(out: Path) -> dict[str, Any]:
    return json.loads((out / "train.json").read_text())["validation"]


def worker(data: Path, out: Path):
    r"""What each of the torchrun processes runs: per task, a fresh run, and the resumption
    of the run that one process started."""
    results = {}
    for task in TASKS:
        results[task] = train(task, data, out / f"two-{task}")
        results[task, "resumed"] = train(task, data, out / f"from-one-{task}")
    # The same run without synchronised BatchNorm: what the tolerance must exclude.
    with mock.patch.object(tdist, "sync_batch_norm", contextlib.nullcontext):
        results["unsynced"] = train(RECONSTRUCTION, data, out / "unsynced")
    results["too_small"] = main(command(RECONSTRUCTION, data, out / "too_small", batch_size=1))
    torch.save(results, out / f"rank{os.environ['RANK']}.pt")


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict[str, Any]:
    r"""Per task, in one process: a run on the two processes' global batches, interrupted
    after the sampler's first epoch (a copy is left for the two processes to finish) and
    resumed; a plain reconstruction run (its own shuffle); then one torchrun launch of two
    processes; then one process rerunning each finished two-process run."""
    out = tmp_path_factory.mktemp("cli_distributed")
    data = out / "data"
    write_data(data)
    result: dict[Any, Any] = {"out": out}
    with one_thread():
        for task in TASKS:
            one = out / f"one-{task}"
            assert train(task, data, one, single_process_loader, stop_after=1) == {}
            shutil.copytree(one, out / f"from-one-{task}")
            result[task, "one"] = train(task, data, one, single_process_loader)
        result[RECONSTRUCTION, "plain"] = train(RECONSTRUCTION, data, out / "plain")
        result["stderr"] = torchrun(Path(__file__), data, out, timeout=300).stderr
        result["ranks"] = [torch.load(out / f"rank{r}.pt", weights_only=True) for r in range(WORLD)]
        for task in TASKS:
            shutil.copytree(out / f"two-{task}", out / f"back-{task}")
            result[task, "back"] = train(task, data, out / f"back-{task}")
    return result


@pytest.mark.slow
@pytest.mark.parametrize("task", TASKS)
def test_both_ranks_end_with_identical_weights(runs, task):
    for key in (task, (task, "resumed")):
        first, second = (rank[key] for rank in runs["ranks"])
        assert first["code"] == second["code"] == 0
        for network in ("task", "sampler"):
            for name, value in first[network].items():
                assert torch.equal(value, second[network][name]), (key, network, name)


@pytest.mark.slow
@pytest.mark.parametrize("task", TASKS)
def test_only_rank_0_writes_each_file_atomically(runs, task):
    first, second = (rank[task] for rank in runs["ranks"])
    assert second["written"] == []
    out = runs["out"] / f"two-{task}"
    files = sorted(str(p.relative_to(out)) for p in out.rglob("*") if p.is_file())
    assert sorted(set(first["written"])) == files  # no temporary file left, none written else
    assert first["written"].count(f"{SAMPLER}.sampler.pt") == 1
    assert first["written"].count("train.json") == 1
    # The resumable checkpoints, once per epoch.
    assert first["written"].count(f"checkpoints/{SAMPLER}.pt") == EPOCHS
    assert json.loads((out / "train.json").read_text())["processes"] == WORLD


@pytest.mark.slow
def test_two_processes_match_one_on_the_same_global_batches(runs):
    # Reconstruction: both stages are deterministic (classification's PointNet draws its
    # dropout masks per process, see the module's docstring).
    two, one = runs["ranks"][0][RECONSTRUCTION], runs[RECONSTRUCTION, "one"]
    unsynced, plain = runs["ranks"][0]["unsynced"], runs[RECONSTRUCTION, "plain"]
    out = runs["out"]
    for network in ("task", "sampler"):
        assert max_difference(two[network], one[network]) < WEIGHT_ATOL, network
    for name in ("autoencoder", SAMPLER):
        expected = history(out / f"one-{RECONSTRUCTION}", name)
        assert history(out / f"two-{RECONSTRUCTION}", name) == pytest.approx(
            expected, rel=LOSS_RTOL
        )
        # Without synchronised BatchNorm the losses are off by more than the tolerance.
        assert history(out / "unsynced", name) != pytest.approx(expected, rel=LOSS_RTOL)
    assert max_difference(unsynced["sampler"], one["sampler"]) > 10 * WEIGHT_ATOL
    # So is one process on other batches (the plain run's own shuffle).
    assert max_difference(plain["sampler"], one["sampler"]) > 10 * WEIGHT_ATOL


@pytest.mark.slow
@pytest.mark.parametrize("task", TASKS)
def test_two_processes_finish_what_one_started(runs, task):
    resumed, one = runs["ranks"][0][task, "resumed"], runs[task, "one"]
    # The task network was finished by the single process: loaded, not retrained.
    for name, value in one["task"].items():
        assert torch.equal(value, resumed["task"][name]), name
    assert resumed["written"].count(f"checkpoints/{SAMPLER}.pt") == EPOCHS - 1
    assert max_difference(resumed["sampler"], one["sampler"]) < WEIGHT_ATOL
    finished = history(runs["out"] / f"from-one-{task}", SAMPLER)
    expected = history(runs["out"] / f"one-{task}", SAMPLER)
    assert finished[:1] == expected[:1]  # the single process's epoch, carried over
    assert finished == pytest.approx(expected, rel=LOSS_RTOL)


@pytest.mark.slow
@pytest.mark.parametrize("task", TASKS)
def test_gathered_validation_equals_the_single_process(runs, task):
    # One process reruns the finished two-process run: every stage loads its checkpoint and
    # the held-out table is measured again, on the same weights and batches, bit for bit.
    back, two = runs[task, "back"], runs["ranks"][0][task]
    out = runs["out"]
    for network in ("task", "sampler"):
        for name, value in two[network].items():
            assert torch.equal(value, back[network][name]), (network, name)
    assert validation(out / f"back-{task}") == validation(out / f"two-{task}")
    assert validation(out / f"two-{task}")["complete"] > 0


@pytest.mark.slow
def test_too_small_a_batch_for_the_processes_is_one_error(runs):
    assert [rank["too_small"] for rank in runs["ranks"]] == [2, 2]
    assert runs["stderr"].count("too few for 2 processes") == 1  # reported by rank 0 only


if __name__ == "__main__":
    worker(Path(sys.argv[1]), Path(sys.argv[2]))
