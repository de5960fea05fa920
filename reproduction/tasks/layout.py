r"""The per-cloud helpers the task networks share (pooling, one matrix per cloud, layer-width
checks) live in :mod:`tg_samplenet.models` beside the networks the library trains; the
registration network imports them from here."""

from tg_samplenet.models import (
    CloudLayout,
    check_widths,
    cloud_layout,
    max_pool,
    transform_per_cloud,
)

__all__ = ["CloudLayout", "check_widths", "cloud_layout", "max_pool", "transform_per_cloud"]
