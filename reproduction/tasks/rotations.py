r"""Rotations for the registration task: unit quaternions (scalar first, :math:`(w, x, y, z)`),
rotation matrices, Euler angles, seeded random rotations and the geodesic angle between two
rotations.

All matrices act on column vectors, :math:`\mathbf{p}' = \mathbf{R}\mathbf{p}`; the points of
a cloud are rows, so a cloud rotates as :math:`\mathbf{P}' = \mathbf{P}\mathbf{R}^{\top}`
(:func:`rotate_points`). Functions accept any leading batch shape.
"""

from __future__ import annotations

import math
from typing import Optional, Union

import torch
from torch import Tensor

from tg_samplenet.ops.checks import check_cloud_batch, check_points

__all__ = [
    "quaternion_to_matrix",
    "euler_angles_to_matrix",
    "random_euler_angles",
    "random_rotations",
    "rotation_angle",
    "rotate_points",
]


def _check_last_dims(tensor: Tensor, shape: tuple, name: str):
    if not isinstance(tensor, Tensor):
        raise TypeError(f"{name} must be a torch.Tensor (got {type(tensor).__name__})")
    if not torch.is_floating_point(tensor):
        raise TypeError(f"{name} must be floating point (got {tensor.dtype})")
    if tuple(tensor.shape[-len(shape) :]) != shape or tensor.dim() < len(shape):
        dims = ", ".join(str(s) for s in shape)
        raise ValueError(f"{name} must have shape [..., {dims}] (got {list(tensor.shape)})")


def quaternion_to_matrix(quaternion: Tensor) -> Tensor:
    r"""Converts quaternions :math:`(w, x, y, z)` to rotation matrices.

    The quaternion is normalised first, so any non-zero quaternion is accepted;
    :math:`\mathbf{q}` and :math:`-\mathbf{q}` give the same matrix. The matrix rotates a
    column vector as the quaternion product :math:`\mathbf{q}\,\mathbf{v}\,\mathbf{q}^{*}`:

    .. math::
        \mathbf{R} = \begin{pmatrix}
        1 - 2(y^2 + z^2) & 2(xy - wz) & 2(xz + wy) \\
        2(xy + wz) & 1 - 2(x^2 + z^2) & 2(yz - wx) \\
        2(xz - wy) & 2(yz + wx) & 1 - 2(x^2 + y^2)
        \end{pmatrix}

    Args:
        quaternion (torch.Tensor): Quaternions :obj:`[..., 4]`, scalar first.

    :rtype: :class:`torch.Tensor` :obj:`[..., 3, 3]`
    """
    _check_last_dims(quaternion, (4,), "quaternion")
    q = torch.nn.functional.normalize(quaternion, dim=-1)
    w, x, y, z = q.unbind(-1)
    xx, yy, zz = x * x, y * y, z * z
    xy, xz, yz = x * y, x * z, y * z
    wx, wy, wz = w * x, w * y, w * z
    rows = (
        (1 - 2 * (yy + zz), 2 * (xy - wz), 2 * (xz + wy)),
        (2 * (xy + wz), 1 - 2 * (xx + zz), 2 * (yz - wx)),
        (2 * (xz - wy), 2 * (yz + wx), 1 - 2 * (xx + yy)),
    )
    return torch.stack([torch.stack(row, dim=-1) for row in rows], dim=-2)


def _axis_rotation(axis: str, angle: Tensor) -> Tensor:
    cos, sin = torch.cos(angle), torch.sin(angle)
    one, zero = torch.ones_like(angle), torch.zeros_like(angle)
    if axis == "x":
        rows = ((one, zero, zero), (zero, cos, -sin), (zero, sin, cos))
    elif axis == "y":
        rows = ((cos, zero, sin), (zero, one, zero), (-sin, zero, cos))
    else:
        rows = ((cos, -sin, zero), (sin, cos, zero), (zero, zero, one))
    return torch.stack([torch.stack(row, dim=-1) for row in rows], dim=-2)


def euler_angles_to_matrix(angles: Tensor, convention: str = "xyz") -> Tensor:
    r"""Converts Euler angles (radians) to rotation matrices.

    The angles are intrinsic: for :obj:`convention="xyz"` and angles
    :math:`(\alpha, \beta, \gamma)`,

    .. math::
        \mathbf{R} = \mathbf{R}_x(\alpha)\,\mathbf{R}_y(\beta)\,\mathbf{R}_z(\gamma),

    a rotation about :math:`x`, then about the new :math:`y`, then about the new :math:`z`
    (SciPy's :obj:`Rotation.from_euler("XYZ", ...)`). This is how the SampleNet registration
    data draws its rotations (the quaternion product :math:`q_x q_y q_z` of its
    :obj:`euler_to_quaternion(angles, "xyz")`).

    Args:
        angles (torch.Tensor): Angles :obj:`[..., 3]` in radians, in the order of
            :obj:`convention`.
        convention (str, optional): The three axes, a permutation of :obj:`"xyz"`, or with a
            repeated axis such as :obj:`"zyz"`. (default: :obj:`"xyz"`)

    :rtype: :class:`torch.Tensor` :obj:`[..., 3, 3]`
    """
    _check_last_dims(angles, (3,), "angles")
    if (
        not isinstance(convention, str)
        or len(convention) != 3
        or set(convention) - set("xyz")
        or convention[0] == convention[1]
        or convention[1] == convention[2]
    ):
        raise ValueError(
            f"convention must be three axes out of 'x', 'y', 'z' with no axis twice in a row, "
            f"e.g. 'xyz' or 'zyz' (got {convention!r})"
        )
    first, second, third = (
        _axis_rotation(a, t) for a, t in zip(convention, angles.unbind(-1), strict=True)
    )
    return first @ second @ third


def _make_generator(generator: Optional[Union[torch.Generator, int]]) -> Optional[torch.Generator]:
    if generator is None or isinstance(generator, torch.Generator):
        return generator
    if isinstance(generator, bool) or not isinstance(generator, int):
        raise TypeError(
            f"generator must be a torch.Generator, an int seed or None "
            f"(got {type(generator).__name__})"
        )
    return torch.Generator().manual_seed(generator)


def random_euler_angles(
    num_rotations: int,
    max_degrees: float = 45.0,
    generator: Optional[Union[torch.Generator, int]] = None,
    dtype: Optional[torch.dtype] = None,
    device: Optional[torch.device] = None,
) -> Tensor:
    r"""Draws Euler angles uniformly in :math:`[-\theta_{max}, \theta_{max}]`, independently
    for each of the three axes, and returns them in radians.

    The numbers are drawn on the CPU, so a seed gives the same angles on every device.

    Args:
        num_rotations (int): How many triples to draw.
        max_degrees (float, optional): The bound :math:`\theta_{max}` in degrees; the
            registration task of the paper uses :obj:`45`. (default: :obj:`45.0`)
        generator (torch.Generator or int, optional): A generator or a seed for a fresh one;
            :obj:`None` uses the global torch generator. (default: :obj:`None`)
        dtype (torch.dtype, optional): The output type. (default: the torch default)
        device (torch.device, optional): The output device. (default: CPU)

    :rtype: :class:`torch.Tensor` :obj:`[num_rotations, 3]`
    """
    if isinstance(num_rotations, bool) or not isinstance(num_rotations, int):
        raise TypeError(f"num_rotations must be an int (got {type(num_rotations).__name__})")
    if num_rotations < 0:
        raise ValueError(f"num_rotations must be non-negative (got {num_rotations})")
    if not isinstance(max_degrees, (int, float)) or not 0 <= max_degrees <= 180:
        raise ValueError(f"max_degrees must be a number in [0, 180] (got {max_degrees!r})")
    dtype = dtype or torch.get_default_dtype()
    unit = torch.rand(num_rotations, 3, generator=_make_generator(generator), dtype=dtype)
    angles = (2 * unit - 1) * math.radians(max_degrees)
    return angles.to(device) if device is not None else angles


def random_rotations(
    num_rotations: int,
    max_degrees: float = 45.0,
    generator: Optional[Union[torch.Generator, int]] = None,
    dtype: Optional[torch.dtype] = None,
    device: Optional[torch.device] = None,
    convention: str = "xyz",
) -> Tensor:
    r"""Draws rotation matrices whose Euler angles are uniform in
    :math:`[-\theta_{max}, \theta_{max}]` (:func:`random_euler_angles` then
    :func:`euler_angles_to_matrix`), as the SampleNet registration pairs are made.

    Args:
        num_rotations (int): How many rotations to draw.
        max_degrees (float, optional): The bound :math:`\theta_{max}` in degrees.
            (default: :obj:`45.0`)
        generator (torch.Generator or int, optional): A generator or a seed for a fresh one.
            (default: :obj:`None`)
        dtype (torch.dtype, optional): The output type. (default: the torch default)
        device (torch.device, optional): The output device. (default: CPU)
        convention (str, optional): The Euler axes. (default: :obj:`"xyz"`)

    .. code-block:: python

        R = random_rotations(4, max_degrees=45.0, generator=0)  # [4, 3, 3]

    :rtype: :class:`torch.Tensor` :obj:`[num_rotations, 3, 3]`
    """
    angles = random_euler_angles(num_rotations, max_degrees, generator, dtype, device)
    return euler_angles_to_matrix(angles, convention)


def rotation_angle(rotation_est: Tensor, rotation_gt: Tensor, degrees: bool = True) -> Tensor:
    r"""The geodesic angle between two rotations, the angle of
    :math:`\mathbf{R}_{est}^{\top}\mathbf{R}_{gt}`:

    .. math::
        \theta = \arccos\left(\frac{\mathrm{tr}(\mathbf{R}_{est}^{\top}\mathbf{R}_{gt}) - 1}
        {2}\right) \in [0, 180^{\circ}].

    It is evaluated as :math:`\mathrm{atan2}(\sin\theta, \cos\theta)`, with
    :math:`\sin\theta` from the skew part of the relative rotation, which equals the
    :math:`\arccos` above on rotation matrices but stays accurate near :math:`0^{\circ}` and
    :math:`180^{\circ}` and cannot give NaN when rounding pushes the cosine past
    :math:`\pm 1`.

    .. note::
        The SampleNet authors' registration code reports
        :math:`2\arccos(2\langle \mathbf{q}_1, \mathbf{q}_2\rangle^2 - 1)`, which is
        :math:`2\theta`: its mean rotation error is twice the geodesic angle. This function
        reports :math:`\theta` itself (a rotation by 10 degrees gives 10, not 20).

    Args:
        rotation_est (torch.Tensor): Rotations :obj:`[..., 3, 3]`.
        rotation_gt (torch.Tensor): Rotations :obj:`[..., 3, 3]`, broadcastable against
            :obj:`rotation_est`.
        degrees (bool, optional): Return degrees, else radians. (default: :obj:`True`)

    :rtype: :class:`torch.Tensor` :obj:`[...]`
    """
    _check_last_dims(rotation_est, (3, 3), "rotation_est")
    _check_last_dims(rotation_gt, (3, 3), "rotation_gt")
    relative = rotation_est.transpose(-1, -2) @ rotation_gt
    cos2 = relative.diagonal(dim1=-2, dim2=-1).sum(-1) - 1  # 2 cos(theta)
    skew = torch.stack(
        [
            relative[..., 2, 1] - relative[..., 1, 2],
            relative[..., 0, 2] - relative[..., 2, 0],
            relative[..., 1, 0] - relative[..., 0, 1],
        ],
        dim=-1,
    )
    sin2 = torch.linalg.vector_norm(skew, dim=-1)  # 2 sin(theta)
    angle = torch.atan2(sin2, cos2)
    return torch.rad2deg(angle) if degrees else angle


def rotate_points(pos: Tensor, rotation: Tensor, batch: Optional[Tensor] = None) -> Tensor:
    r"""Rotates each cloud of a PyG mini-batch by its own matrix,
    :math:`\mathbf{p}_i' = \mathbf{R}_{b_i}\,\mathbf{p}_i`.

    Args:
        pos (torch.Tensor): Point positions :obj:`[N, 3]`.
        rotation (torch.Tensor): One rotation per cloud, :obj:`[B, 3, 3]` (or :obj:`[3, 3]`
            for all points).
        batch (torch.Tensor, optional): The batch vector
            :math:`\mathbf{b} \in {\{ 0, \ldots, B-1\}}^N`. (default: :obj:`None`)

    :rtype: :class:`torch.Tensor` :obj:`[N, 3]`
    """
    check_points(pos)
    _check_last_dims(rotation, (3, 3), "rotation")
    if rotation.dim() == 2:
        return pos @ rotation.transpose(0, 1)
    if rotation.dim() != 3:
        raise ValueError(f"rotation must have shape [B, 3, 3] (got {list(rotation.shape)})")
    batch, _ = check_cloud_batch(batch, pos)
    if batch.numel() > 0 and int(batch[-1]) >= rotation.size(0):
        raise ValueError(
            f"batch refers to cloud {int(batch[-1])} but rotation holds only "
            f"{rotation.size(0)} matrices"
        )
    # [N, 3, 3] is 3x the size of pos itself, cheaper than a padded dense batch.
    return torch.einsum("nij,nj->ni", rotation[batch], pos)
