r"""The resumable training loop of :mod:`tg_samplenet.fit`: resuming reproduces the
uninterrupted run, a finished run does not train again, checkpoints are atomic, and the
learning-rate schedules follow their closed forms."""

import math
import os

import pytest
import torch

from tg_samplenet.io import atomic_path, atomic_save, load_checkpoint
from tg_samplenet.training.loop import fit, fit_model, learning_rate_schedule, seed_everything


def _run(tmp_path, num_epochs: int, checkpoint):
    seed_everything(0)
    model = torch.nn.Linear(3, 1)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    data = torch.randn(64, 3)
    target = data @ torch.tensor([1.0, -2.0, 0.5]) + 0.3
    loader = torch.utils.data.DataLoader(list(zip(data, target)), batch_size=8, shuffle=True)

    def step(batch) -> float:
        x, y = batch
        loss = (model(x).squeeze(-1) - y).pow(2).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        return loss.item()

    state = {"model": model, "optimizer": optimizer}
    history = fit(step, loader, num_epochs, checkpoint, state, progress=False)
    return model, history


def test_resume_reproduces_uninterrupted_run(tmp_path):
    straight, history = _run(tmp_path, 4, tmp_path / "a.pt")
    _run(tmp_path, 2, tmp_path / "b.pt")  # "interrupted" after two epochs
    resumed, resumed_history = _run(tmp_path, 4, tmp_path / "b.pt")
    assert resumed_history == history
    for p, q in zip(straight.parameters(), resumed.parameters()):
        assert torch.equal(p, q)
    assert history[-1] < history[0]
    assert load_checkpoint(tmp_path / "b.pt")["epoch"] == 4


def test_finished_run_does_not_train_again(tmp_path):
    model, history = _run(tmp_path, 3, tmp_path / "c.pt")
    again, again_history = _run(tmp_path, 3, tmp_path / "c.pt")
    assert again_history == history
    for p, q in zip(model.parameters(), again.parameters()):
        assert torch.equal(p, q)


def test_atomic_save_keeps_old_file_when_writing_fails(tmp_path):
    path = tmp_path / "ckpt.pt"
    atomic_save({"epoch": 1}, path)

    class Unpicklable:
        def __reduce__(self):
            raise RuntimeError("boom")

    try:
        atomic_save({"epoch": 2, "bad": Unpicklable()}, path)
    except RuntimeError:
        pass
    assert load_checkpoint(path) == {"epoch": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["ckpt.pt"]  # no temporary file left


def test_atomic_path_renames_a_finished_file_and_drops_a_failed_one(tmp_path):
    path = tmp_path / "sub" / "cache.pt"
    with atomic_path(path) as tmp:
        assert os.path.dirname(tmp) == str(path.parent) and not path.exists()
        torch.save([1, 2], tmp)
    assert torch.load(path) == [1, 2]
    with pytest.raises(RuntimeError, match="killed"):
        with atomic_path(path) as tmp:
            torch.save([3], tmp)
            raise RuntimeError("killed")
    assert torch.load(path) == [1, 2]  # the old file stands
    assert [p.name for p in path.parent.iterdir()] == ["cache.pt"]  # no temporary file left


def test_fit_without_checkpoint_trains_and_writes_nothing(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    _, history = _run(tmp_path, 3, None)
    assert len(history) == 3 and history[-1] < history[0]
    assert list(tmp_path.iterdir()) == []


def _regression(seed: int = 0):
    generator = torch.Generator().manual_seed(seed)
    data = torch.randn(48, 3, generator=generator)
    target = data @ torch.tensor([1.0, -2.0, 0.5])
    return torch.utils.data.DataLoader(list(zip(data, target)), batch_size=6, shuffle=True)


class Pair(list):
    r"""A batch that :func:`fit_model` can move with :meth:`to`."""

    def to(self, device):
        return Pair(t.to(device) for t in self)


class Interrupted(Exception):
    pass


def _fit_model(checkpoint, epochs: int, schedule: str, stop_at=None):
    seed_everything(0)
    model = torch.nn.Linear(3, 1)
    loader = [Pair(b) for b in _regression()]

    def loss(batch):
        x, y = batch
        return (model(x).squeeze(-1) - y).pow(2).mean()

    def interrupt(epoch: int):
        if epoch == stop_at:
            raise Interrupted

    history = fit_model(
        model,
        loss,
        loader,
        epochs=epochs,
        lr=0.05,
        checkpoint=checkpoint,
        lr_schedule=schedule,
        device="cpu",
        on_epoch_start=interrupt,
        progress=False,
    )
    return model, history


@pytest.mark.parametrize("schedule", ["constant", "cosine", "staircase"])
def test_fit_model_resumes_exactly_with_every_schedule(tmp_path, schedule):
    straight, history = _fit_model(tmp_path / "a.pt", 4, schedule)
    with pytest.raises(Interrupted):  # killed at the start of the third epoch
        _fit_model(tmp_path / "b.pt", 4, schedule, stop_at=2)
    assert load_checkpoint(tmp_path / "b.pt")["epoch"] == 2
    resumed, resumed_history = _fit_model(tmp_path / "b.pt", 4, schedule)
    assert resumed_history == history and history[-1] < history[0]
    for p, q in zip(straight.parameters(), resumed.parameters()):
        assert torch.equal(p, q)
    saved = load_checkpoint(tmp_path / "b.pt")["state"]
    assert ("scheduler" in saved) == (schedule != "constant")


@pytest.mark.parametrize("kind", ["cosine", "staircase"])
def test_learning_rate_schedules_follow_their_closed_forms(kind):
    optimizer = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=0.5)
    scheduler = learning_rate_schedule(optimizer, kind, 30, batch_size=4, decay_samples=12)
    rates = []
    for _ in range(40):
        rates.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    if kind == "cosine":  # down to zero at step 30, then held there
        expected = [0.25 * (1 + math.cos(math.pi * min(s, 30) / 30)) for s in range(40)]
    else:  # x0.7 after every 12 samples = 3 steps of 4 clouds, never below 1e-5
        expected = [max(0.5 * 0.7 ** (s * 4 // 12), 1e-5) for s in range(40)]
    assert rates == pytest.approx(expected)
    assert min(rates) >= (0.0 if kind == "cosine" else 1e-5)
    # Held at the full rate for 5 steps, then the same schedule from its step 0.
    optimizer = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=0.5)
    scheduler = learning_rate_schedule(
        optimizer, kind, 30, batch_size=4, decay_samples=12, hold_steps=5
    )
    held = []
    for _ in range(45):
        held.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    assert held == pytest.approx([0.5] * 5 + expected)


def test_constant_schedule_is_no_scheduler_and_bad_kind_is_named():
    optimizer = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=0.5)
    assert learning_rate_schedule(optimizer, "constant", 10) is None
    with pytest.raises(ValueError, match="kind must be one of"):
        learning_rate_schedule(optimizer, "linear", 10)
