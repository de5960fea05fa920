import torch

from tg_samplenet.experiments.fit import fit, seed_everything
from tg_samplenet.io import atomic_save, load_checkpoint


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
