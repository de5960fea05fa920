r"""A small training loop shared by the examples: tqdm progress, an atomic checkpoint after
every epoch, and resuming from it exactly where it stopped."""

from __future__ import annotations

import os
import random
from pathlib import Path
from typing import Any, Callable, Iterable, Optional, Union

import numpy as np
import torch
from tqdm.auto import tqdm

from tg_samplenet.io import atomic_save, load_checkpoint

__all__ = ["seed_everything", "fit", "rng_state", "set_rng_state"]


def seed_everything(seed: int):
    r"""Seeds Python's, NumPy's and PyTorch's random generators."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def rng_state() -> dict[str, Any]:
    r"""The state of every random generator the training touches (for exact resuming)."""
    name, keys, position, has_gauss, gauss = np.random.get_state()
    state = {
        "python": random.getstate(),
        # As a tensor, so that checkpoints load with torch.load(weights_only=True).
        "numpy": (name, torch.from_numpy(keys.astype(np.int64)), position, has_gauss, gauss),
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]):
    r"""Restores what :func:`rng_state` returned."""
    random.setstate(state["python"])
    name, keys, position, has_gauss, gauss = state["numpy"]
    np.random.set_state((name, keys.numpy().astype(np.uint32), position, has_gauss, gauss))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def fit(
    step: Callable[[Any], float],
    loader: Iterable,
    num_epochs: int,
    checkpoint: Union[str, os.PathLike],
    state: dict[str, Any],
    desc: str = "train",
    on_epoch_start: Optional[Callable[[int], None]] = None,
    progress: bool = True,
) -> list[float]:
    r"""Runs :obj:`step` on every batch of :obj:`loader` for :obj:`num_epochs` epochs.

    After each epoch it writes :obj:`checkpoint` atomically with the state dicts of
    :obj:`state` (models, optimisers, schedulers), the epoch, the loss history and the
    random generators. If :obj:`checkpoint` exists, training resumes after its last epoch
    and reproduces the uninterrupted run; a finished run returns at once.

    Args:
        step (callable): Trains on one batch and returns its loss as a float.
        loader (iterable): The training batches.
        num_epochs (int): Total number of epochs.
        checkpoint (str or Path): Checkpoint file.
        state (dict): Objects with :meth:`state_dict` / :meth:`load_state_dict` to save.
        desc (str, optional): Progress-bar label. (default: :obj:`"train"`)
        on_epoch_start (callable, optional): Called with the epoch index before each epoch
            (e.g. a temperature profile). (default: :obj:`None`)
        progress (bool, optional): Show a tqdm bar. (default: :obj:`True`)

    :rtype: the mean loss of each epoch, :obj:`list[float]`
    """
    checkpoint = Path(checkpoint)
    history: list[float] = []
    start = 0
    if checkpoint.exists():
        saved = load_checkpoint(checkpoint)
        for name, obj in state.items():
            obj.load_state_dict(saved["state"][name])
        start, history = saved["epoch"], list(saved["history"])
        set_rng_state(saved["rng"])

    bar = tqdm(range(start, num_epochs), desc=desc, disable=not progress, leave=False)
    for epoch in bar:
        if on_epoch_start is not None:
            on_epoch_start(epoch)
        losses = [step(batch) for batch in loader]
        history.append(float(np.mean(losses)) if losses else float("nan"))
        bar.set_postfix(loss=f"{history[-1]:.4g}")
        atomic_save(
            {
                "epoch": epoch + 1,
                "history": history,
                "state": {name: obj.state_dict() for name, obj in state.items()},
                "rng": rng_state(),
            },
            checkpoint,
        )
    return history
