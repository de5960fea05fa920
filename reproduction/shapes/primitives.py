r"""Surface primitives with closed-form areas, and area-uniform point sampling over a union of
them.

Every primitive holds one instance per shape of a batch (its parameters are arrays of length
:math:`B`), so a whole class of shapes is sampled at once, without a Python loop over points
or clouds.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

__all__ = ["Primitive", "Box", "Cylinder", "Frustum", "Disc", "Sphere", "sample_surface"]

ArrayLike = float | Sequence[float] | np.ndarray

# World coordinates of a point given in a local frame whose "up" axis is local y: the local
# y coordinate goes to the world axis :obj:`axis`, the other two fill the remaining axes.
_AXIS_PERMUTATION = {0: [1, 2, 0], 1: [0, 1, 2], 2: [2, 0, 1]}


class Primitive:
    r"""Base class of a batch of :math:`B` surface primitives of one kind.

    Args:
        center (numpy.ndarray): The centres, of shape :obj:`[B, 3]`.
    """

    def __init__(self, center: np.ndarray) -> None:
        center = np.asarray(center, dtype=np.float64)
        if center.ndim != 2 or center.shape[1] != 3:
            raise ValueError(f"center must have shape [B, 3] (got {list(center.shape)})")
        self.center = center

    @property
    def num_shapes(self) -> int:
        r"""The number of instances :math:`B`."""
        return self.center.shape[0]

    def _param(self, value: ArrayLike, name: str) -> np.ndarray:
        value = np.broadcast_to(np.asarray(value, dtype=np.float64), (self.num_shapes,))
        if (value < 0).any():
            raise ValueError(f"{name} must be non-negative")
        return value.copy()

    def area(self) -> np.ndarray:
        r"""The surface area of each instance, of shape :obj:`[B]`."""
        raise NotImplementedError

    def sample(self, rows: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        r"""Draws one point uniformly by area on the surface of instance :obj:`rows[i]` for
        every :obj:`i`, returning world coordinates of shape :obj:`[len(rows), 3]`."""
        raise NotImplementedError


class _AxialPrimitive(Primitive):
    r"""A primitive symmetric about an axis, sampled in a local frame with the axis along y."""

    def __init__(self, center: np.ndarray, axis: int) -> None:
        super().__init__(center)
        if axis not in _AXIS_PERMUTATION:
            raise ValueError(f"axis must be 0, 1 or 2 (got {axis})")
        self.axis = axis

    def _to_world(self, local: np.ndarray, rows: np.ndarray) -> np.ndarray:
        return local[:, _AXIS_PERMUTATION[self.axis]] + self.center[rows]


def _disc_points(radius: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    # The radius of a uniform point on a disc has density 2r / R^2, hence R * sqrt(u).
    r = radius * np.sqrt(rng.random(radius.shape[0]))
    theta = rng.uniform(0.0, 2.0 * math.pi, radius.shape[0])
    return r * np.cos(theta), r * np.sin(theta)


class Box(Primitive):
    r"""The six faces of axis-aligned boxes.

    .. math::
        A = 2 (s_x s_y + s_y s_z + s_x s_z)

    Args:
        center (numpy.ndarray): The box centres, of shape :obj:`[B, 3]`.
        size (numpy.ndarray): The edge lengths along x, y and z, of shape :obj:`[B, 3]`.
    """

    def __init__(self, center: np.ndarray, size: np.ndarray) -> None:
        super().__init__(center)
        size = np.broadcast_to(np.asarray(size, dtype=np.float64), (self.num_shapes, 3)).copy()
        if (size < 0).any():
            raise ValueError("size must be non-negative")
        self.size = size

    def _face_areas(self) -> np.ndarray:
        # Area of one face normal to x, y and z.
        s = self.size
        return np.stack([s[:, 1] * s[:, 2], s[:, 0] * s[:, 2], s[:, 0] * s[:, 1]], axis=1)

    def area(self) -> np.ndarray:
        return 2.0 * self._face_areas().sum(axis=1)

    def sample(self, rows: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        n = rows.shape[0]
        size = self.size[rows]
        faces = self._face_areas()[rows]
        cdf = np.cumsum(faces, axis=1)
        normal = (rng.random(n) * cdf[:, -1] > cdf[:, :2].T).sum(axis=0)
        local = (rng.random((n, 3)) - 0.5) * size
        side = np.where(rng.random(n) < 0.5, -0.5, 0.5)
        local[np.arange(n), normal] = side * size[np.arange(n), normal]
        return local + self.center[rows]


class Cylinder(_AxialPrimitive):
    r"""Cylinders, with or without their end caps.

    .. math::
        A = 2 \pi r h + (c_{\mathrm{bottom}} + c_{\mathrm{top}}) \pi r^2

    Args:
        center (numpy.ndarray): The centres (middle of the axis), of shape :obj:`[B, 3]`.
        radius (numpy.ndarray or float): The radii.
        height (numpy.ndarray or float): The lengths along the axis.
        axis (int, optional): The world axis of the cylinder (0 = x, 1 = y, 2 = z).
            (default: :obj:`1`)
        bottom (bool, optional): Whether the cap at the low end is part of the surface.
            (default: :obj:`True`)
        top (bool, optional): Whether the cap at the high end is part of the surface.
            (default: :obj:`True`)
    """

    def __init__(
        self,
        center: np.ndarray,
        radius: ArrayLike,
        height: ArrayLike,
        axis: int = 1,
        bottom: bool = True,
        top: bool = True,
    ) -> None:
        super().__init__(center, axis)
        self.radius = self._param(radius, "radius")
        self.height = self._param(height, "height")
        self.bottom = bool(bottom)
        self.top = bool(top)

    def _areas(self, rows: slice | np.ndarray = slice(None)) -> np.ndarray:
        r, h = self.radius[rows], self.height[rows]
        cap = math.pi * r**2
        return np.stack([2.0 * math.pi * r * h, cap * self.bottom, cap * self.top], axis=1)

    def area(self) -> np.ndarray:
        return self._areas().sum(axis=1)

    def sample(self, rows: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        n = rows.shape[0]
        r, h = self.radius[rows], self.height[rows]
        cdf = np.cumsum(self._areas(rows), axis=1)
        component = (rng.random(n) * cdf[:, -1] > cdf[:, :2].T).sum(axis=0)

        theta = rng.uniform(0.0, 2.0 * math.pi, n)
        local = np.stack([r * np.cos(theta), (rng.random(n) - 0.5) * h, r * np.sin(theta)], 1)
        on_cap = component > 0
        cap_x, cap_z = _disc_points(r[on_cap], rng)
        local[on_cap, 0], local[on_cap, 2] = cap_x, cap_z
        local[on_cap, 1] = np.where(component[on_cap] == 1, -0.5, 0.5) * h[on_cap]
        return self._to_world(local, rows)


class Frustum(_AxialPrimitive):
    r"""Lateral surfaces of truncated cones (a cone when one radius is zero), without caps.

    .. math::
        A = \pi (r_0 + r_1) \sqrt{(r_0 - r_1)^2 + h^2}

    The height :math:`t \in [0, 1]` of a uniform point has density proportional to the radius
    :math:`r_0 + (r_1 - r_0) t` there, sampled by inverting its quadratic distribution function.

    Args:
        center (numpy.ndarray): The centres (middle of the axis), of shape :obj:`[B, 3]`.
        radius_bottom (numpy.ndarray or float): The radii at the low end.
        radius_top (numpy.ndarray or float): The radii at the high end.
        height (numpy.ndarray or float): The lengths along the axis.
        axis (int, optional): The world axis of the frustum (0 = x, 1 = y, 2 = z).
            (default: :obj:`1`)
    """

    def __init__(
        self,
        center: np.ndarray,
        radius_bottom: ArrayLike,
        radius_top: ArrayLike,
        height: ArrayLike,
        axis: int = 1,
    ) -> None:
        super().__init__(center, axis)
        self.radius_bottom = self._param(radius_bottom, "radius_bottom")
        self.radius_top = self._param(radius_top, "radius_top")
        self.height = self._param(height, "height")

    def area(self) -> np.ndarray:
        r0, r1, h = self.radius_bottom, self.radius_top, self.height
        return math.pi * (r0 + r1) * np.sqrt((r0 - r1) ** 2 + h**2)

    def sample(self, rows: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        n = rows.shape[0]
        r0, r1, h = self.radius_bottom[rows], self.radius_top[rows], self.height[rows]
        u = rng.random(n)
        # Root of (r1 - r0) t^2 / 2 + r0 t = u (r0 + r1) / 2 in the form that stays finite
        # for r0 == r1 (a cylinder) and r0 == 0 (a cone).
        denominator = r0 + np.sqrt(r0**2 + u * (r1**2 - r0**2))
        t = np.divide(u * (r0 + r1), denominator, out=u.copy(), where=denominator > 0)
        r = r0 + (r1 - r0) * t
        theta = rng.uniform(0.0, 2.0 * math.pi, n)
        local = np.stack([r * np.cos(theta), (t - 0.5) * h, r * np.sin(theta)], axis=1)
        return self._to_world(local, rows)


class Disc(_AxialPrimitive):
    r"""Flat discs.

    .. math::
        A = \pi r^2

    Args:
        center (numpy.ndarray): The centres, of shape :obj:`[B, 3]`.
        radius (numpy.ndarray or float): The radii.
        axis (int, optional): The world axis normal to the discs (0 = x, 1 = y, 2 = z).
            (default: :obj:`1`)
    """

    def __init__(self, center: np.ndarray, radius: ArrayLike, axis: int = 1) -> None:
        super().__init__(center, axis)
        self.radius = self._param(radius, "radius")

    def area(self) -> np.ndarray:
        return math.pi * self.radius**2

    def sample(self, rows: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        x, z = _disc_points(self.radius[rows], rng)
        local = np.stack([x, np.zeros_like(x), z], axis=1)
        return self._to_world(local, rows)


class Sphere(Primitive):
    r"""Spheres.

    .. math::
        A = 4 \pi r^2

    Args:
        center (numpy.ndarray): The centres, of shape :obj:`[B, 3]`.
        radius (numpy.ndarray or float): The radii.
    """

    def __init__(self, center: np.ndarray, radius: ArrayLike) -> None:
        super().__init__(center)
        self.radius = self._param(radius, "radius")

    def area(self) -> np.ndarray:
        return 4.0 * math.pi * self.radius**2

    def sample(self, rows: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        # Normalised Gaussian vectors are uniform on the sphere.
        direction = rng.standard_normal((rows.shape[0], 3))
        direction /= np.linalg.norm(direction, axis=1, keepdims=True)
        return direction * self.radius[rows, None] + self.center[rows]


def sample_surface(
    parts: Sequence[Primitive],
    num_points: int,
    rng: np.random.Generator,
) -> tuple[np.ndarray, np.ndarray]:
    r"""Samples :obj:`num_points` points uniformly by area on the union of the surfaces of
    :obj:`parts`, independently for each of the :math:`B` shapes they describe.

    Each point first picks a part with probability :math:`A_k / \sum_j A_j` (the areas of
    that shape), then a uniform point on it. Overlaps between parts are not removed: their
    area counts once per part.

    Args:
        parts (Sequence[Primitive]): The parts, each holding :math:`B` instances.
        num_points (int): The number of points :math:`P` per shape.
        rng (numpy.random.Generator): The random number generator.

    :rtype: (:class:`numpy.ndarray`, :class:`numpy.ndarray`): the points of shape
        :obj:`[B, P, 3]` and the index of the part each point lies on, of shape :obj:`[B, P]`.
    """
    if len(parts) == 0:
        raise ValueError("parts must hold at least one primitive")
    num_shapes = parts[0].num_shapes
    if any(part.num_shapes != num_shapes for part in parts):
        raise ValueError("all parts must hold the same number of shapes")

    areas = np.stack([part.area() for part in parts], axis=1)  # [B, K]
    total = areas.sum(axis=1, keepdims=True)
    if (total <= 0).any():
        raise ValueError("every shape needs a positive total surface area")
    cdf = np.cumsum(areas / total, axis=1)
    u = rng.random((num_shapes, num_points))
    part_index = (u[:, :, None] >= cdf[:, None, :-1]).sum(axis=2)

    pos = np.empty((num_shapes, num_points, 3))
    for k, part in enumerate(parts):
        rows, cols = np.nonzero(part_index == k)
        if rows.size > 0:
            pos[rows, cols] = part.sample(rows, rng)
    return pos, part_index
