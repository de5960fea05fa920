import math
import os

import numpy as np
import pytest
import torch
from torch_geometric.loader import DataLoader

import reproduction.shapes.synthetic as synthetic_module
from reproduction.shapes import SyntheticShapes
from reproduction.shapes.primitives import Box, Cylinder, Disc, Frustum, Sphere, sample_surface
from tg_samplenet.datasets import NormalizeUnitSphere, normalize_unit_sphere


def _binomial_tolerance(p, n, sigmas=5.0):
    return sigmas * math.sqrt(p * (1 - p) / n) + 1e-12


def _composite(n_shapes=1):
    # Five primitives far apart, so that every point can be told by where it lies.
    def at(x):
        return np.tile([[x, 0.0, 0.0]], (n_shapes, 1))

    return [
        Box(at(0.0), np.tile([[1.0, 2.0, 0.5]], (n_shapes, 1))),
        Cylinder(at(10.0), 0.5, 2.0, axis=0, bottom=True, top=False),
        Frustum(at(20.0), 1.0, 0.25, 1.5),
        Disc(at(30.0), 0.75, axis=2),
        Sphere(at(40.0), 0.6),
    ]


def test_primitive_areas_match_closed_forms():
    box, cylinder, frustum, disc, sphere = _composite()
    assert box.area()[0] == pytest.approx(2 * (1 * 2 + 2 * 0.5 + 1 * 0.5))
    assert cylinder.area()[0] == pytest.approx(2 * math.pi * 0.5 * 2 + math.pi * 0.25)
    assert frustum.area()[0] == pytest.approx(math.pi * 1.25 * math.sqrt(0.75**2 + 1.5**2))
    assert disc.area()[0] == pytest.approx(math.pi * 0.75**2)
    assert sphere.area()[0] == pytest.approx(4 * math.pi * 0.36)


def test_points_are_area_uniform_over_the_union():
    parts = _composite(n_shapes=2)
    n = 100_000
    pos, part_index = sample_surface(parts, n // 2, np.random.default_rng(0))
    pos, part_index = pos.reshape(-1, 3), part_index.reshape(-1)
    areas = np.array([part.area()[0] for part in parts])

    # The part a point lies on, from its position alone, agrees with the reported index.
    np.testing.assert_array_equal(np.rint(pos[:, 0] / 10.0).clip(0, 4), part_index)
    for k, share in enumerate(areas / areas.sum()):
        assert abs((part_index == k).mean() - share) < _binomial_tolerance(share, n)


def test_points_are_uniform_within_each_primitive():
    box, cylinder, frustum, disc, sphere = _composite()
    rng = np.random.default_rng(1)
    n = 40_000
    rows = np.zeros(n, dtype=np.int64)

    # Box: each pair of faces gets its share of the area; all points on the surface.
    p = box.sample(rows, rng)
    half = np.array([0.5, 1.0, 0.25])
    on_face = np.isclose(np.abs(p), half)
    assert on_face.any(axis=1).all() and (np.abs(p) <= half + 1e-12).all()
    faces = np.array([2 * 0.5, 1 * 0.5, 1 * 2])
    for axis, share in enumerate(faces / faces.sum()):
        assert abs(on_face[:, axis].mean() - share) < _binomial_tolerance(share, n)

    # Cylinder along x with its bottom cap only.
    p = cylinder.sample(rows, rng) - [10.0, 0.0, 0.0]
    radial = np.linalg.norm(p[:, 1:], axis=1)
    on_cap = np.isclose(p[:, 0], -1.0)
    assert np.allclose(radial[~on_cap], 0.5) and (radial[on_cap] <= 0.5 + 1e-12).all()
    assert not np.isclose(p[:, 0], 1.0).any()
    share = 0.25 / (2 * 0.5 * 2 + 0.25)  # cap pi r^2 over 2 pi r h + pi r^2
    assert abs(on_cap.mean() - share) < _binomial_tolerance(share, n)

    # Frustum: the radius follows the height, and the lower half holds the lower half's area
    # (slant lengths are equal, so areas are proportional to the mean radii).
    p = frustum.sample(rows, rng) - [20.0, 0.0, 0.0]
    t = p[:, 1] / 1.5 + 0.5
    assert np.allclose(np.linalg.norm(p[:, [0, 2]], axis=1), 1.0 - 0.75 * t)
    middle = (1.0 + 0.25) / 2
    share = (1.0 + middle) / 2 / (1.0 + 0.25)
    assert abs((t < 0.5).mean() - share) < _binomial_tolerance(share, n)

    # Disc normal to z: the fraction inside half the radius is a quarter.
    p = disc.sample(rows, rng) - [30.0, 0.0, 0.0]
    assert np.allclose(p[:, 2], 0.0)
    assert abs((np.linalg.norm(p, axis=1) < 0.375).mean() - 0.25) < _binomial_tolerance(0.25, n)

    # Sphere: by Archimedes' theorem the height of a uniform point is uniform.
    p = sphere.sample(rows, rng) - [40.0, 0.0, 0.0]
    assert np.allclose(np.linalg.norm(p, axis=1), 0.6)
    assert abs((p[:, 1] > 0.3).mean() - 0.25) < _binomial_tolerance(0.25, n)


def test_sample_surface_rejects_bad_parts():
    with pytest.raises(ValueError, match="at least one"):
        sample_surface([], 10, np.random.default_rng(0))
    mixed = [Sphere(np.zeros((2, 3)), 1.0), Sphere(np.zeros((3, 3)), 1.0)]
    with pytest.raises(ValueError, match="same number"):
        sample_surface(mixed, 10, np.random.default_rng(0))
    with pytest.raises(ValueError, match="positive total"):
        sample_surface([Sphere(np.zeros((1, 3)), 0.0)], 10, np.random.default_rng(0))
    with pytest.raises(ValueError, match="center"):
        Sphere(np.zeros(3), 1.0)
    with pytest.raises(ValueError, match="axis"):
        Disc(np.zeros((1, 3)), 1.0, axis=3)
    with pytest.raises(ValueError, match="radius"):
        Disc(np.zeros((1, 3)), -1.0)


def test_normalize_unit_sphere_against_numpy():
    rng = np.random.default_rng(0)
    clouds = rng.normal(size=(4, 50, 3)) * [3.0, 1.0, 0.5] + [5.0, -2.0, 1.0]
    centred = clouds - clouds.mean(axis=1, keepdims=True)
    expected = centred / np.linalg.norm(centred, axis=2).max(axis=1)[:, None, None]
    out = normalize_unit_sphere(torch.from_numpy(clouds))
    np.testing.assert_allclose(out.numpy(), expected, atol=1e-12)
    single = NormalizeUnitSphere()(torch_geometric_data(clouds[0])).pos
    np.testing.assert_allclose(single.numpy(), expected[0], atol=1e-12)
    # A degenerate cloud is centred, not divided by zero.
    assert torch.equal(normalize_unit_sphere(torch.ones(5, 3)), torch.zeros(5, 3))
    with pytest.raises(ValueError, match="shape"):
        normalize_unit_sphere(torch.zeros(5, 2))


def torch_geometric_data(cloud):
    from torch_geometric.data import Data

    return Data(pos=torch.from_numpy(cloud))


def test_items_counts_types_and_normalisation():
    ds = SyntheticShapes(num_points=300, samples_per_class=3, seed=1)
    assert len(ds) == 3 * len(SyntheticShapes.ALL_CLASSES) >= 3 * 10
    assert ds.classes == list(SyntheticShapes.ALL_CLASSES)
    assert ds.num_classes == len(ds.classes)
    data = ds[4]
    assert data.pos.shape == (300, 3) and data.pos.dtype == torch.float32
    assert data.y.shape == (1,) and data.y.dtype == torch.long

    batch = next(iter(DataLoader(ds, batch_size=len(ds))))
    pos = batch.pos.view(len(ds), 300, 3)
    assert pos.mean(dim=1).abs().max() < 1e-5
    norms = pos.norm(dim=2).amax(dim=1)
    assert (norms <= 1 + 1e-6).all() and (norms >= 1 - 1e-6).all()
    expected = torch.arange(ds.num_classes).repeat_interleave(3)
    assert torch.equal(batch.y, expected)
    assert str(ds) == "SyntheticShapes(42, split='train', num_points=300, num_classes=14)"


def test_deterministic_under_seed_and_splits_differ():
    kwargs = dict(num_points=128, samples_per_class=2, classes=["mug", "stool"])
    a = SyntheticShapes(seed=3, **kwargs)
    b = SyntheticShapes(seed=3, **kwargs)
    assert torch.equal(a._data.pos, b._data.pos)
    assert not torch.equal(a._data.pos, SyntheticShapes(seed=4, **kwargs)._data.pos)
    test = SyntheticShapes(seed=3, split="test", **kwargs)
    val = SyntheticShapes(seed=3, split="val", **kwargs)
    assert not torch.equal(a._data.pos, test._data.pos)
    assert not torch.equal(test._data.pos, val._data.pos)


def test_class_filter_relabels_in_given_order_and_keeps_clouds():
    full = SyntheticShapes(num_points=64, samples_per_class=2, seed=5)
    picked = SyntheticShapes(num_points=64, samples_per_class=2, seed=5, classes=["table", "car"])
    assert picked.classes == ["table", "car"] and picked.num_classes == 2
    assert [int(picked[i].y) for i in range(4)] == [0, 0, 1, 1]
    for i, name in enumerate(["table", "table", "car", "car"]):
        j = 2 * full.classes.index(name) + i % 2
        assert int(full[j].y) == full.classes.index(name)
        assert torch.equal(picked[i].pos, full[j].pos)


def test_random_rotation_turns_about_the_up_axis():
    kwargs = dict(num_points=200, samples_per_class=2, classes=["chair", "airplane"], seed=2)
    plain = SyntheticShapes(**kwargs)._data.pos
    turned = SyntheticShapes(random_rotation=True, **kwargs)._data.pos
    assert torch.allclose(plain[:, 1], turned[:, 1], atol=1e-6)
    assert torch.allclose(plain[:, [0, 2]].norm(dim=1), turned[:, [0, 2]].norm(dim=1), atol=1e-5)
    assert not torch.allclose(plain, turned, atol=1e-3)


def test_paired_classes_differ_only_by_a_small_part():
    # The handle is the only part a mug has beyond a cup's body: few points, all of them
    # farther from the axis than the body wall.
    rng = np.random.default_rng(0)
    mug_parts, _ = synthetic_module._RECIPES["mug"](rng, 500)
    cup_parts, _ = synthetic_module._RECIPES["cup"](np.random.default_rng(0), 500)
    assert set(cup_parts) < set(mug_parts)
    areas = {name: part.area() for name, part in mug_parts.items()}
    handle = sum(a for name, a in areas.items() if name.startswith("handle"))
    assert (handle / sum(areas.values()) < 0.12).all()


def test_transform_and_pre_transform_are_applied():
    def shift(data):
        data.pos = data.pos + 10.0
        return data

    ds = SyntheticShapes(num_points=16, samples_per_class=1, classes=["cup"], transform=shift)
    assert ds[0].pos.mean(dim=0).sub(10.0).abs().max() < 1e-4
    assert ds._data.pos.mean(dim=0).abs().max() < 1e-4
    pre = SyntheticShapes(num_points=16, samples_per_class=1, classes=["cup"], pre_transform=shift)
    assert pre._data.pos.mean(dim=0).sub(10.0).abs().max() < 1e-4


def test_root_caches_to_processed_and_reloads(tmp_path, monkeypatch):
    kwargs = dict(num_points=32, samples_per_class=2, classes=["bottle", "desk"], seed=7)
    first = SyntheticShapes(root=str(tmp_path), **kwargs)
    files = os.listdir(tmp_path / "processed")
    assert any(f.startswith("synthetic_") and "_n32_" in f for f in files)

    def fail(*args, **kwargs):
        raise AssertionError("regenerated instead of reading the cache")

    monkeypatch.setattr(synthetic_module, "_generate_class", fail)
    second = SyntheticShapes(root=str(tmp_path), **kwargs)
    assert torch.equal(first._data.pos, second._data.pos)
    assert torch.equal(first._data.y, second._data.y)
    # Other parameters are another file, so they are generated, not read from this one.
    with pytest.raises(AssertionError, match="regenerated"):
        SyntheticShapes(root=str(tmp_path), **{**kwargs, "num_points": 33})


def test_without_root_nothing_is_written(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    SyntheticShapes(num_points=8, samples_per_class=1)
    assert os.listdir(tmp_path) == []


@pytest.mark.parametrize(
    "kwargs, error, message",
    [
        (dict(split="dev"), ValueError, "split"),
        (dict(num_points=0), ValueError, "num_points"),
        (dict(num_points=2.5), TypeError, "num_points"),
        (dict(samples_per_class=0), ValueError, "samples_per_class"),
        (dict(classes=["chair", "sofa"]), ValueError, "sofa"),
        (dict(classes="chair"), TypeError, "classes"),
        (dict(classes=[]), ValueError, "at least one"),
        (dict(classes=["cup", "cup"]), ValueError, "duplicates"),
        (dict(seed=-1), ValueError, "seed"),
        (dict(root=3), TypeError, "root"),
    ],
)
def test_bad_arguments(kwargs, error, message):
    with pytest.raises(error, match=message):
        SyntheticShapes(**kwargs)


# SHA-256 of the pos and y bytes of two data sets with every class turned about the up axis
# (turn_symmetric=True): the generator's clouds, pinned bit for bit.
_PINNED_HASHES = [
    (
        dict(split="train", num_points=64, samples_per_class=3, seed=0),
        "f667878dd6dca697338758a78aed044557063f1814a01e284cfec43b40701354",
    ),
    (
        dict(split="test", num_points=128, samples_per_class=2, seed=5, random_rotation=True),
        "1c9c384b3a38a870334de08ddeb8ff26b946da9987cf68bbd69eda076b120e63",
    ),
]


@pytest.mark.parametrize("kwargs, expected", _PINNED_HASHES)
def test_pinned_clouds_are_unchanged(kwargs, expected):
    import hashlib

    ds = SyntheticShapes(**kwargs, turn_symmetric=True)
    raw = ds._data.pos.numpy().tobytes() + ds._data.y.numpy().tobytes()
    assert hashlib.sha256(raw).hexdigest() == expected


def test_classes_without_a_turn_are_the_same_either_way():
    # turn_symmetric only turns the symmetric classes: the others (those of registration
    # and reconstruction among them) are the same clouds, bit for bit.
    classes = ["airplane", "car", "chair", "table", "desk", "floor_lamp"]
    kwargs = dict(num_points=64, samples_per_class=3, classes=classes, seed=4)
    first = SyntheticShapes(turn_symmetric=True, **kwargs)._data.pos
    assert torch.equal(SyntheticShapes(**kwargs)._data.pos, first)
    symmetric = dict(kwargs, classes=["stool", "side_table", "cup", "mug", "bottle"])
    turned = SyntheticShapes(turn_symmetric=True, **symmetric)._data.pos
    assert not torch.equal(SyntheticShapes(**symmetric)._data.pos, turned)


def _radial_profile(pos):
    # Sorted distances to the up axis through the centroid: invariant to a turn about it.
    centred = pos - pos.mean(dim=1, keepdim=True)
    return centred[..., [0, 2]].norm(dim=-1).sort(dim=1).values


def test_turn_symmetric_false_keeps_symmetric_classes_aligned():
    kwargs = dict(num_points=256, samples_per_class=6, classes=["stool", "mug"], seed=1)
    turned = SyntheticShapes(turn_symmetric=True, **kwargs)._data.pos.view(12, 256, 3)
    aligned = SyntheticShapes(**kwargs)._data.pos.view(12, 256, 3)  # the default
    # The same shapes: only the turn about the up axis differs.
    assert torch.allclose(turned[..., 1], aligned[..., 1], atol=1e-6)
    assert torch.allclose(_radial_profile(turned), _radial_profile(aligned), atol=1e-5)
    # Aligned, every mug's handle lies on +x (the recipe's side), not at a random angle.
    mugs = aligned[6:]
    far = mugs[..., [0, 2]].norm(dim=-1) > 0.9 * mugs[..., [0, 2]].norm(dim=-1).amax(1, True)
    assert (mugs[..., 0][far] > 0).all()
    turned_mugs = turned[6:]
    far = turned_mugs[..., [0, 2]].norm(dim=-1) > 0.9 * turned_mugs[..., [0, 2]].norm(dim=-1).amax(
        1, True
    )
    assert (turned_mugs[..., 0][far] < 0).any()


def test_bad_turn_symmetric():
    with pytest.raises(TypeError, match="turn_symmetric"):
        SyntheticShapes(num_points=8, samples_per_class=1, turn_symmetric=1)


def test_turned_clouds_cache_under_their_own_file(tmp_path):
    kwargs = dict(root=str(tmp_path), num_points=32, samples_per_class=2, classes=["cup"])
    aligned = SyntheticShapes(**kwargs)
    turned = SyntheticShapes(turn_symmetric=True, **kwargs)
    assert aligned.processed_file_names != turned.processed_file_names
    assert not torch.equal(aligned._data.pos, turned._data.pos)
