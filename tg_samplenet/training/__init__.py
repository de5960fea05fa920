r"""Training a sampler for any frozen model (:func:`fit_sampler`), the resumable training loop
and data-parallel training under torchrun (:mod:`~tg_samplenet.training.distributed`)."""

from tg_samplenet.training.fit import (
    PAPER_LOSS_WEIGHTS,
    LossWeights,
    default_inputs,
    fit_sampler,
    freeze,
)
from tg_samplenet.training.loop import fit, fit_model, learning_rate_schedule, seed_everything
from tg_samplenet.training.upgrade import upgrade_fps

__all__ = [
    "LossWeights",
    "PAPER_LOSS_WEIGHTS",
    "default_inputs",
    "fit",
    "fit_model",
    "fit_sampler",
    "freeze",
    "learning_rate_schedule",
    "seed_everything",
    "upgrade_fps",
]
