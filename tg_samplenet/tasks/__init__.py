r"""Task networks SampleNet is trained for: the PointNet classifier, PCRNet for
registration and the point-cloud autoencoder for reconstruction, all in PyG's
:obj:`(pos, batch)` layout."""

from tg_samplenet.tasks.autoencoder import PointCloudAE, ReconstructionOutput
from tg_samplenet.tasks.pcrnet import PCRNet, PCRNetOutput
from tg_samplenet.tasks.pointnet import PointNet, TNet, orthogonality_regularizer

__all__ = [
    "PointNet",
    "TNet",
    "orthogonality_regularizer",
    "PCRNet",
    "PCRNetOutput",
    "PointCloudAE",
    "ReconstructionOutput",
]
