r"""A procedural data set of composite shapes: the default data of every example and
benchmark, built on the fly with no download."""

from __future__ import annotations

import hashlib
import math
import os
from collections.abc import Callable, Sequence
from typing import Optional

import numpy as np
import torch
from torch_geometric.data import Data, InMemoryDataset

from reproduction.shapes.primitives import (
    Box,
    Cylinder,
    Disc,
    Frustum,
    Primitive,
    Sphere,
    sample_surface,
)
from tg_samplenet.datasets import normalize_unit_sphere
from tg_samplenet.ops.checks import (
    InputError,
    InputTypeError,
    check_bool,
    check_choice,
    check_int,
    check_positive_int,
)

__all__ = ["SyntheticShapes"]

# Bump when a recipe changes, so that clouds cached under an old version are not reused.
_GENERATOR_VERSION = 1

_SPLITS = ("train", "val", "test")

Parts = dict[str, Primitive]
Recipe = Callable[[np.random.Generator, int], tuple[Parts, Optional[np.ndarray]]]


def _xyz(x, y, z, n: int) -> np.ndarray:
    return np.stack([np.broadcast_to(np.asarray(c, dtype=np.float64), (n,)) for c in (x, y, z)], 1)


def _uniform(rng: np.random.Generator, low: float, high: float, n: int) -> np.ndarray:
    return rng.uniform(low, high, n)


# Recipes. Each draws the proportions of n instances of one class from rng and returns its
# parts (y is up, the floor is y = 0) and, for shapes that are symmetric about the up axis,
# a random turn about it. Paired classes share every distribution but one small part
# (a drawer, armrests, a fourth leg, a handle, a thick pole, engines), which is what a
# sampler has to keep to tell them apart.


def _table_parts(rng: np.random.Generator, n: int) -> tuple[Parts, dict[str, np.ndarray]]:
    width, depth = _uniform(rng, 1.2, 1.8, n), _uniform(rng, 0.7, 1.0, n)
    thick, height = _uniform(rng, 0.04, 0.07, n), _uniform(rng, 0.65, 0.85, n)
    leg_radius, inset = _uniform(rng, 0.025, 0.045, n), _uniform(rng, 0.04, 0.1, n)
    parts: Parts = {"top": Box(_xyz(0, height - thick / 2, 0, n), _xyz(width, thick, depth, n))}
    leg_x = width / 2 - inset - leg_radius
    leg_z = depth / 2 - inset - leg_radius
    parts.update(_corner_legs(leg_x, leg_z, leg_radius, height - thick, n))
    sizes = dict(width=width, depth=depth, thick=thick, height=height)
    return parts, dict(**sizes, leg_x=leg_x, leg_radius=leg_radius)


def _corner_legs(x, z, radius, height, n: int) -> Parts:
    corners = [(-1, -1), (-1, 1), (1, -1), (1, 1)]
    return {
        f"leg{i}": Cylinder(_xyz(sx * x, height / 2, sz * z, n), radius, height)
        for i, (sx, sz) in enumerate(corners)
    }


def _table(rng: np.random.Generator, n: int):
    return _table_parts(rng, n)[0], None


def _desk(rng: np.random.Generator, n: int):
    # A table with a shallow drawer hung under one end of its top, between the legs.
    parts, s = _table_parts(rng, n)
    size = _xyz(
        _uniform(rng, 0.18, 0.28, n) * s["width"],
        _uniform(rng, 0.08, 0.12, n),
        _uniform(rng, 0.55, 0.75, n) * s["depth"],
        n,
    )
    side = rng.choice([-1.0, 1.0], n)
    x = side * (s["leg_x"] - s["leg_radius"] - size[:, 0] / 2 - 0.01)
    y = s["height"] - s["thick"] - size[:, 1] / 2
    parts["drawer"] = Box(_xyz(x, y, 0, n), size)
    return parts, None


def _chair_parts(rng: np.random.Generator, n: int) -> tuple[Parts, dict[str, np.ndarray]]:
    width, depth = _uniform(rng, 0.42, 0.55, n), _uniform(rng, 0.4, 0.52, n)
    thick, seat = _uniform(rng, 0.04, 0.07, n), _uniform(rng, 0.42, 0.5, n)
    back_height, back_thick = _uniform(rng, 0.4, 0.6, n), _uniform(rng, 0.03, 0.06, n)
    leg_radius, inset = _uniform(rng, 0.016, 0.028, n), _uniform(rng, 0.01, 0.04, n)
    parts: Parts = {
        "seat": Box(_xyz(0, seat - thick / 2, 0, n), _xyz(width, thick, depth, n)),
        "back": Box(
            _xyz(0, seat + back_height / 2, -depth / 2 + back_thick / 2, n),
            _xyz(width, back_height, back_thick, n),
        ),
    }
    leg_x = width / 2 - inset - leg_radius
    leg_z = depth / 2 - inset - leg_radius
    parts.update(_corner_legs(leg_x, leg_z, leg_radius, seat - thick, n))
    return parts, dict(width=width, depth=depth, seat=seat, back_thick=back_thick)


def _chair(rng: np.random.Generator, n: int):
    return _chair_parts(rng, n)[0], None


def _armchair(rng: np.random.Generator, n: int):
    # A chair with two thin armrests, each on a thin front post, inside its outline.
    parts, s = _chair_parts(rng, n)
    arm_width, arm_thick = _uniform(rng, 0.04, 0.07, n), _uniform(rng, 0.03, 0.05, n)
    arm_length, arm_rise = _uniform(rng, 0.7, 0.9, n) * s["depth"], _uniform(rng, 0.17, 0.25, n)
    post_radius = _uniform(rng, 0.012, 0.02, n)
    back_face = -s["depth"] / 2 + s["back_thick"]
    post_height = arm_rise - arm_thick / 2
    for i, side in enumerate((-1.0, 1.0)):
        x = side * (s["width"] / 2 - arm_width / 2)
        parts[f"arm{i}"] = Box(
            _xyz(x, s["seat"] + arm_rise, back_face + arm_length / 2, n),
            _xyz(arm_width, arm_thick, arm_length, n),
        )
        post_z = back_face + arm_length - post_radius - 0.01
        parts[f"post{i}"] = Cylinder(
            _xyz(x, s["seat"] + post_height / 2, post_z, n), post_radius, post_height
        )
    return parts, None


def _round_legged(rng: np.random.Generator, n: int, num_legs: int):
    radius, thick = _uniform(rng, 0.16, 0.22, n), _uniform(rng, 0.03, 0.06, n)
    height, leg_radius = _uniform(rng, 0.45, 0.7, n), _uniform(rng, 0.014, 0.024, n)
    spread = _uniform(rng, 0.6, 0.8, n) * radius
    parts: Parts = {"top": Cylinder(_xyz(0, height - thick / 2, 0, n), radius, thick)}
    for i in range(num_legs):
        angle = 2 * math.pi * i / num_legs
        center = _xyz(spread * math.cos(angle), (height - thick) / 2, spread * math.sin(angle), n)
        parts[f"leg{i}"] = Cylinder(center, leg_radius, height - thick)
    return parts, _uniform(rng, 0.0, 2 * math.pi, n)


def _stool(rng: np.random.Generator, n: int):
    return _round_legged(rng, n, num_legs=3)


def _side_table(rng: np.random.Generator, n: int):
    return _round_legged(rng, n, num_legs=4)


def _cup_parts(rng: np.random.Generator, n: int) -> tuple[Parts, dict[str, np.ndarray]]:
    radius, height = _uniform(rng, 0.3, 0.4, n), _uniform(rng, 0.7, 1.0, n)
    body = Cylinder(_xyz(0, height / 2, 0, n), radius, height, bottom=True, top=False)
    return {"body": body}, dict(radius=radius, height=height)


def _cup(rng: np.random.Generator, n: int):
    return _cup_parts(rng, n)[0], _uniform(rng, 0.0, 2 * math.pi, n)


def _mug(rng: np.random.Generator, n: int):
    # A cup with a C-shaped handle of three thin rods, at a random side.
    parts, s = _cup_parts(rng, n)
    rod_radius, reach = _uniform(rng, 0.025, 0.04, n), _uniform(rng, 0.12, 0.2, n)
    low, high = _uniform(rng, 0.2, 0.35, n) * s["height"], _uniform(rng, 0.65, 0.8, n) * s["height"]
    for name, y in (("handle_top", high), ("handle_bottom", low)):
        parts[name] = Cylinder(_xyz(s["radius"] + reach / 2, y, 0, n), rod_radius, reach, axis=0)
    grip_center = _xyz(s["radius"] + reach, (low + high) / 2, 0, n)
    parts["handle_grip"] = Cylinder(grip_center, rod_radius, high - low)
    return parts, _uniform(rng, 0.0, 2 * math.pi, n)


def _lamp(rng: np.random.Generator, n: int, pole_radius: tuple[float, float]):
    base_radius, base_thick = _uniform(rng, 0.15, 0.24, n), _uniform(rng, 0.03, 0.06, n)
    pole_height, radius = _uniform(rng, 1.0, 1.5, n), _uniform(rng, *pole_radius, n)
    shade_bottom, shade_top = _uniform(rng, 0.24, 0.34, n), _uniform(rng, 0.1, 0.17, n)
    shade_height = _uniform(rng, 0.22, 0.34, n)
    top = base_thick + pole_height
    parts: Parts = {
        "base": Cylinder(_xyz(0, base_thick / 2, 0, n), base_radius, base_thick),
        "pole": Cylinder(
            _xyz(0, base_thick + pole_height / 2, 0, n), radius, pole_height, 1, False
        ),
        "shade": Frustum(
            _xyz(0, top - 0.2 * shade_height, 0, n), shade_bottom, shade_top, shade_height
        ),
    }
    return parts, None


def _floor_lamp(rng: np.random.Generator, n: int):
    return _lamp(rng, n, pole_radius=(0.012, 0.022))


def _table_lamp(rng: np.random.Generator, n: int):
    return _lamp(rng, n, pole_radius=(0.035, 0.055))


def _plane_parts(rng: np.random.Generator, n: int) -> tuple[Parts, dict[str, np.ndarray]]:
    length, body_radius = _uniform(rng, 1.6, 2.2, n), _uniform(rng, 0.08, 0.12, n)
    span, chord = _uniform(rng, 1.4, 2.0, n), _uniform(rng, 0.2, 0.3, n)
    thick, wing_x = _uniform(rng, 0.02, 0.035, n), _uniform(rng, -0.05, 0.1, n) * length
    tail_span, tail_chord = _uniform(rng, 0.45, 0.65, n), _uniform(rng, 0.1, 0.15, n)
    fin_chord, fin_height = _uniform(rng, 0.14, 0.2, n), _uniform(rng, 0.2, 0.3, n)
    tail = -length / 2 + 0.02
    parts: Parts = {
        "fuselage": Cylinder(_xyz(0, 0, 0, n), body_radius, length, axis=0),
        "nose": Sphere(_xyz(length / 2, 0, 0, n), body_radius),
        "wings": Box(_xyz(wing_x, 0, 0, n), _xyz(chord, thick, span, n)),
        "stabiliser": Box(
            _xyz(tail + tail_chord / 2, 0, 0, n), _xyz(tail_chord, thick, tail_span, n)
        ),
        "fin": Box(
            _xyz(tail + fin_chord / 2, body_radius + fin_height / 2, 0, n),
            _xyz(fin_chord, fin_height, thick, n),
        ),
    }
    return parts, dict(span=span, thick=thick, wing_x=wing_x)


def _glider(rng: np.random.Generator, n: int):
    return _plane_parts(rng, n)[0], None


def _airplane(rng: np.random.Generator, n: int):
    # The glider's airframe with two small engines hung under the wings.
    parts, s = _plane_parts(rng, n)
    radius, length = _uniform(rng, 0.04, 0.06, n), _uniform(rng, 0.2, 0.3, n)
    offset, drop = _uniform(rng, 0.28, 0.4, n) * s["span"], _uniform(rng, 0.005, 0.02, n)
    x = s["wing_x"] + _uniform(rng, 0.02, 0.08, n)
    y = -(s["thick"] / 2 + radius + drop)
    for i, side in enumerate((-1.0, 1.0)):
        parts[f"engine{i}"] = Cylinder(_xyz(x, y, side * offset, n), radius, length, axis=0)
    return parts, None


def _car(rng: np.random.Generator, n: int):
    length, width = _uniform(rng, 1.6, 2.0, n), _uniform(rng, 0.7, 0.85, n)
    body_height, wheel_radius = _uniform(rng, 0.25, 0.35, n), _uniform(rng, 0.13, 0.18, n)
    wheel_width, axle = _uniform(rng, 0.08, 0.12, n), _uniform(rng, 0.3, 0.36, n) * length
    cabin_length, cabin_height = _uniform(rng, 0.45, 0.6, n) * length, _uniform(rng, 0.2, 0.3, n)
    cabin_x = _uniform(rng, -0.15, 0.05, n) * length
    floor = 0.6 * wheel_radius
    parts: Parts = {
        "body": Box(_xyz(0, floor + body_height / 2, 0, n), _xyz(length, body_height, width, n)),
        "cabin": Box(
            _xyz(cabin_x, floor + body_height + cabin_height / 2, 0, n),
            _xyz(cabin_length, cabin_height, 0.9 * width, n),
        ),
    }
    for i, (sx, sz) in enumerate([(-1, -1), (-1, 1), (1, -1), (1, 1)]):
        center = _xyz(sx * axle, wheel_radius, sz * width / 2, n)
        parts[f"wheel{i}"] = Cylinder(center, wheel_radius, wheel_width, axis=2)
    return parts, None


def _bottle(rng: np.random.Generator, n: int):
    radius, body_height = _uniform(rng, 0.25, 0.35, n), _uniform(rng, 0.6, 0.9, n)
    neck_radius, shoulder = _uniform(rng, 0.07, 0.11, n), _uniform(rng, 0.12, 0.2, n)
    neck_height = _uniform(rng, 0.2, 0.35, n)
    neck_y = body_height + shoulder + neck_height / 2
    parts: Parts = {
        "body": Cylinder(_xyz(0, body_height / 2, 0, n), radius, body_height, 1, True, False),
        "shoulder": Frustum(
            _xyz(0, body_height + shoulder / 2, 0, n), radius, neck_radius, shoulder
        ),
        "neck": Cylinder(_xyz(0, neck_y, 0, n), neck_radius, neck_height, 1, False, False),
        "mouth": Disc(_xyz(0, neck_y + neck_height / 2, 0, n), neck_radius),
    }
    return parts, _uniform(rng, 0.0, 2 * math.pi, n)


# Confusable pairs sit next to each other; the order fixes each class's random stream.
_RECIPES: dict[str, Recipe] = {
    "airplane": _airplane,
    "glider": _glider,
    "car": _car,
    "chair": _chair,
    "armchair": _armchair,
    "table": _table,
    "desk": _desk,
    "stool": _stool,
    "side_table": _side_table,
    "mug": _mug,
    "cup": _cup,
    "floor_lamp": _floor_lamp,
    "table_lamp": _table_lamp,
    "bottle": _bottle,
}


def _rotate_about_up(pos: np.ndarray, angle: np.ndarray) -> np.ndarray:
    cos, sin = np.cos(angle)[:, None], np.sin(angle)[:, None]
    x, z = pos[..., 0], pos[..., 2]
    return np.stack([cos * x + sin * z, pos[..., 1], -sin * x + cos * z], axis=-1)


def _generate_class(
    name: str,
    num_shapes: int,
    num_points: int,
    split: str,
    seed: int,
    random_rotation: bool,
    turn_symmetric: bool,
) -> np.ndarray:
    # One stream per (seed, split, class): a class's clouds do not depend on which other
    # classes are selected, and the splits never share a stream.
    class_id = list(_RECIPES).index(name)
    rng = np.random.default_rng([seed, _SPLITS.index(split), class_id, _GENERATOR_VERSION])
    parts, turn = _RECIPES[name](rng, num_shapes)
    if not turn_symmetric:
        turn = None
    pos, _ = sample_surface(list(parts.values()), num_points, rng)
    if random_rotation:
        extra = rng.uniform(0.0, 2 * math.pi, num_shapes)
        turn = extra if turn is None else turn + extra
    if turn is not None:
        pos = _rotate_about_up(pos, turn)
    return pos


class SyntheticShapes(InMemoryDataset):
    r"""A procedural data set of composite shapes (tables, chairs, mugs, lamps, planes, ...),
    the built-in default data of the examples and benchmarks: it needs no download.

    Every shape is a union of primitives (boxes, cylinders, discs, frustums, spheres) whose
    proportions vary randomly per instance. Points are drawn uniformly by surface area over
    the union (see :func:`~reproduction.shapes.primitives.sample_surface`), and every cloud
    is centred and scaled into the unit sphere (see :func:`normalize_unit_sphere`).

    The classes come in confusable pairs that differ only by a small, thin or low-area part,
    so that a few evenly spread points (e.g. 32 by farthest point sampling) often miss it:
    :obj:`airplane` / :obj:`glider` (two engines under the wings), :obj:`chair` /
    :obj:`armchair` (armrests), :obj:`table` / :obj:`desk` (a drawer under the top),
    :obj:`stool` / :obj:`side_table` (three or four legs), :obj:`mug` / :obj:`cup` (a handle),
    :obj:`floor_lamp` / :obj:`table_lamp` (a thin or a thick pole); :obj:`car` and
    :obj:`bottle` stand alone. The up axis is y.

    The data are deterministic: the clouds of a class depend only on :obj:`seed`,
    :obj:`split`, :obj:`num_points` and :obj:`samples_per_class` (not on which other classes
    are selected), and the splits draw from different random streams.

    .. code-block:: python

        from reproduction.shapes import SyntheticShapes

        train = SyntheticShapes(split="train", num_points=1024)
        train[0]  # Data(pos=[1024, 3], y=[1])

    Args:
        root (str, optional): Where to cache the generated clouds (in :obj:`root/processed`);
            :obj:`None` builds them in memory. (default: :obj:`None`)
        split (str, optional): :obj:`"train"`, :obj:`"val"` or :obj:`"test"`.
            (default: :obj:`"train"`)
        num_points (int, optional): Points per cloud. (default: :obj:`1024`)
        samples_per_class (int, optional): Clouds per class. (default: :obj:`100`)
        classes (Sequence[str], optional): The classes to keep, labelled :obj:`0, ..., C-1` in
            the given order; :obj:`None` keeps all of :attr:`ALL_CLASSES`. (default: :obj:`None`)
        seed (int, optional): The random seed. (default: :obj:`0`)
        transform (callable, optional): A transform applied to each item on access.
            (default: :obj:`None`)
        pre_transform (callable, optional): A transform applied to each item once, before
            caching. (default: :obj:`None`)
        force_reload (bool, optional): Whether to regenerate a cached data set.
            (default: :obj:`False`)
        random_rotation (bool, optional): Whether every shape gets a random turn about the up
            axis. (default: :obj:`False`)
        turn_symmetric (bool, optional): Whether the classes that are symmetric about the up
            axis (stool, side table, cup, mug, bottle) get a random turn about it; real scans
            such as aligned ModelNet have none, and without it the built-in data order the
            samplers as real scans do (``docs/real-data-study.md``). (default: :obj:`False`)
    """

    ALL_CLASSES: tuple[str, ...] = tuple(_RECIPES)

    def __init__(
        self,
        root: Optional[str] = None,
        split: str = "train",
        num_points: int = 1024,
        samples_per_class: int = 100,
        classes: Optional[Sequence[str]] = None,
        seed: int = 0,
        transform: Optional[Callable] = None,
        pre_transform: Optional[Callable] = None,
        force_reload: bool = False,
        random_rotation: bool = False,
        turn_symmetric: bool = False,
    ) -> None:
        check_choice(split, "split", _SPLITS)
        check_positive_int(num_points, "num_points")
        check_positive_int(samples_per_class, "samples_per_class")
        seed = check_int(seed, "seed", minimum=0)
        if isinstance(root, os.PathLike):
            root = os.fspath(root)
        if root is not None and not isinstance(root, str):
            raise InputTypeError("root", f"root must be a str or None (got {type(root).__name__})")
        self.split = split
        self.num_points = num_points
        self.samples_per_class = samples_per_class
        self.classes: list[str] = _check_classes(classes)
        self.seed = seed
        self.random_rotation = check_bool(random_rotation, "random_rotation")
        self.turn_symmetric = check_bool(turn_symmetric, "turn_symmetric")
        self._cached = root is not None

        super().__init__(root, transform, pre_transform, force_reload=force_reload)
        if self._cached:
            self.load(self.processed_paths[0])
        else:
            self._data, self.slices = self.collate(self._generate())

    @property
    def has_process(self) -> bool:
        # Without a root there is nothing to cache: the clouds are generated in __init__.
        return self._cached

    @property
    def processed_file_names(self) -> list[str]:
        # Each class selection caches to its own file.
        tag = hashlib.sha1(",".join(self.classes).encode()).hexdigest()[:10]
        return [
            f"synthetic_v{_GENERATOR_VERSION}_{self.split}_n{self.num_points}"
            f"_s{self.samples_per_class}_seed{self.seed}_rot{int(self.random_rotation)}"
            f"_turn{int(self.turn_symmetric)}_c{tag}.pt"
        ]

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def process(self) -> None:
        self.save(self._generate(), self.processed_paths[0])

    def _generate(self) -> list[Data]:
        pos = np.concatenate(
            [
                _generate_class(
                    name,
                    self.samples_per_class,
                    self.num_points,
                    self.split,
                    self.seed,
                    self.random_rotation,
                    self.turn_symmetric,
                )
                for name in self.classes
            ]
        )
        pos = normalize_unit_sphere(torch.from_numpy(pos)).to(torch.float32)
        y = torch.arange(len(self.classes)).repeat_interleave(self.samples_per_class)
        data_list = [Data(pos=p, y=label.view(1)) for p, label in zip(pos, y, strict=True)]
        if self.pre_transform is not None:
            data_list = [self.pre_transform(data) for data in data_list]
        return data_list

    def __repr__(self) -> str:
        return (
            f"{self.__class__.__name__}({len(self)}, split={self.split!r}, "
            f"num_points={self.num_points}, num_classes={self.num_classes})"
        )


def _check_classes(classes: Optional[Sequence[str]]) -> list[str]:
    if classes is None:
        return list(_RECIPES)
    if isinstance(classes, str) or not hasattr(classes, "__iter__"):
        raise InputTypeError(
            "classes", f"classes must be a sequence of names (got {type(classes).__name__})"
        )
    classes = list(classes)
    if not classes:
        raise InputError("classes", "classes must name at least one class")
    if len(set(classes)) != len(classes):
        raise InputError("classes", f"classes contains duplicates: {classes}")
    unknown = [name for name in classes if name not in _RECIPES]
    if unknown:
        raise InputError("classes", f"unknown classes {unknown}: choose from {list(_RECIPES)}")
    return classes
