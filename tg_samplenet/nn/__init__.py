r"""The learned sampler's modules: :class:`SoftProjection`, :class:`SampleNet` and its output,
and :class:`SampleNetFPS`, a callable with :func:`torch_geometric.nn.fps`'s signature."""

from tg_samplenet.nn.fps_drop_in import SampleNetFPS
from tg_samplenet.nn.output import SampleNetOutput
from tg_samplenet.nn.sampler import SampleNet
from tg_samplenet.nn.soft_projection import SoftProjection, SoftProjectionOutput

__all__ = ["SampleNet", "SampleNetFPS", "SampleNetOutput", "SoftProjection", "SoftProjectionOutput"]
