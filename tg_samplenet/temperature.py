r"""Temperature schedules for the soft projection (paper §4.1, Table 1 and Fig. 8): learned by
the optimiser, or set before each epoch."""

from __future__ import annotations

import math
from typing import Optional

from tg_samplenet.nn.soft_projection import SoftProjection
from tg_samplenet.ops.checks import (
    InputError,
    InputTypeError,
    check_int,
    check_number,
    check_positive_int,
)

__all__ = ["TemperatureSchedule"]


class TemperatureSchedule:
    r"""A schedule of the squared temperature :math:`\sigma` over epochs.

    .. math::
        \sigma_{\text{linear}}(e) &= \max\left(\sigma_0 - (\sigma_0 - \sigma_1)
            \tfrac{e}{E}, \sigma_1\right) \\
        \sigma_{\text{exponential}}(e) &= \sigma_0 (\sigma_1 / \sigma_0)^{\min(e / E, 1)} \\
        \sigma_{\text{constant}}(e) &= \sigma_0

    Args:
        kind (str): :obj:`"learned"`, :obj:`"linear"` (linear rectified),
            :obj:`"exponential"` or :obj:`"constant"`.
        start (float, optional): :math:`\sigma_0`. (default: :obj:`1.0`)
        end (float, optional): :math:`\sigma_1`. (default: :obj:`1e-3`)
        num_epochs (int, optional): :math:`E`, the epochs to reach :math:`\sigma_1`.
            (default: :obj:`100`)
    """

    KINDS = ("learned", "linear", "exponential", "constant")

    def __init__(self, kind: str, start: float = 1.0, end: float = 1e-3, num_epochs: int = 100):
        if not isinstance(kind, str) or kind not in self.KINDS:
            raise InputError(
                "kind", f"Unknown temperature schedule {kind!r} (kind must be one of {self.KINDS})"
            )
        for name, value in (("start", start), ("end", end)):
            try:
                check_number(value, name, positive=True)
            except InputError as error:
                raise type(error)(
                    name, f"start and end must be positive finite numbers (got {name}={value!r})"
                ) from error
        start, end = float(start), float(end)
        num_epochs = check_positive_int(num_epochs, "num_epochs")
        self.kind, self.start, self.end, self.num_epochs = kind, start, end, num_epochs

    @property
    def learned(self) -> bool:
        return self.kind == "learned"

    def sigma(self, epoch: int) -> Optional[float]:
        r"""The squared temperature at :obj:`epoch` (0-based; negative epochs count as 0), or
        :obj:`None` if learned."""
        epoch = check_int(epoch, "epoch")
        progress = min(max(epoch, 0) / self.num_epochs, 1.0)
        if self.kind == "learned":
            return None
        if self.kind == "constant":
            return self.start
        if self.kind == "linear":
            return max(self.start - (self.start - self.end) * progress, self.end)
        return self.start * math.exp(progress * math.log(self.end / self.start))

    def apply(self, projection: SoftProjection, epoch: int):
        r"""Sets :obj:`projection`'s temperature for :obj:`epoch` (no-op when learned)."""
        if not isinstance(projection, SoftProjection):
            raise InputTypeError(
                "projection",
                f"projection must be a SoftProjection (got {type(projection).__name__}); "
                "for a SampleNet pass sampler.projection",
            )
        sigma = self.sigma(epoch)
        if sigma is None:
            return
        projection.temperature.requires_grad_(False)
        projection.set_sigma(sigma)

    def __repr__(self) -> str:
        if self.learned:
            return f"{self.__class__.__name__}('learned')"
        return (
            f"{self.__class__.__name__}({self.kind!r}, start={self.start}, end={self.end}, "
            f"num_epochs={self.num_epochs})"
        )
