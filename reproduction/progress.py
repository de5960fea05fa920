r"""What a long run tells its user while it runs: one numbered line per stage (which stage of
how many, what it does, the time so far), and a tqdm bar with its own estimate of the time
left inside each stage (the training loops' bars over epochs, :meth:`Stages.bar` over the
evaluations). Under :obj:`torchrun` only rank 0 prints."""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator
from typing import TypeVar

from tqdm.auto import tqdm

from tg_samplenet.training.distributed import is_main_process

__all__ = ["Stages"]

T = TypeVar("T")


class Stages:
    r"""Numbers the stages of a run and prints a line as each starts:

    .. code-block:: text

        [3/9] train S-NET, m = 32 (8 epochs) - 1:42 so far

    Args:
        total (int): The number of stages the run will go through.
        bars (bool, optional): Show the tqdm bars of :meth:`bar`. (default: :obj:`True`)
    """

    def __init__(self, total: int, bars: bool = True):
        self.total, self.bars, self.count, self.started = total, bars, 0, time.time()

    def __call__(self, what: str) -> None:
        r"""Starts the next stage: prints :obj:`[i/total] what - time so far`."""
        self.count += 1
        if is_main_process():
            minutes, seconds = divmod(int(time.time() - self.started), 60)
            print(
                f"[{self.count}/{self.total}] {what} - {minutes}:{seconds:02d} so far", flush=True
            )

    def bar(self, items: Iterable[T], desc: str) -> Iterator[T]:
        r""":obj:`items` with a tqdm bar (count, rate and time left) while they run."""
        show = self.bars and is_main_process()
        return iter(tqdm(items, desc=desc, disable=not show, leave=False, dynamic_ncols=True))

    def __repr__(self) -> str:
        return f"{self.__class__.__name__}({self.count}/{self.total})"
