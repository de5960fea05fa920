import os
import shutil

import pytest
import torch

from tg_samplenet.datasets import ModelNetPointClouds

MODELNET10 = [
    "bathtub",
    "bed",
    "chair",
    "desk",
    "dresser",
    "monitor",
    "night_stand",
    "sofa",
    "table",
    "toilet",
]

# A tetrahedron with one vertex at the origin: its faces are the three coordinate planes
# (within the unit simplex) and the plane x + y + z = 1.
TETRAHEDRON = "OFF\n4 4 0\n0 0 0\n1 0 0\n0 1 0\n0 0 1\n3 0 2 1\n3 0 1 3\n3 0 3 2\n3 1 2 3\n"


def _write_modelnet(root, categories=MODELNET10, train_per_category=2):
    for category in categories:
        for split, count in (("train", train_per_category), ("test", 1)):
            folder = root / "raw" / category / split
            folder.mkdir(parents=True)
            for i in range(count):
                (folder / f"{category}_{i + 1:04d}.off").write_text(TETRAHEDRON)
    return root


def test_points_sampled_from_meshes_and_normalised(tmp_path):
    root = _write_modelnet(tmp_path)
    ds = ModelNetPointClouds(str(root), "10", "train", num_points=256)
    assert len(ds) == 20 and ds.classes == MODELNET10 and ds.num_classes == 10
    assert sorted(int(ds[i].y) for i in range(20)) == sorted(list(range(10)) * 2)
    data = ds[0]
    assert data.pos.shape == (256, 3) and data.pos.dtype == torch.float32
    assert sorted(data.keys()) == ["pos", "y"]
    assert data.pos.mean(dim=0).abs().max() < 1e-5
    assert data.pos.norm(dim=1).max() == pytest.approx(1.0, abs=1e-6)

    test = ModelNetPointClouds(str(root), "10", "test", num_points=256)
    assert len(test) == 10


def test_points_lie_on_the_mesh_surface(tmp_path):
    root = _write_modelnet(tmp_path)
    ds = ModelNetPointClouds(str(root), "10", "test", num_points=512)
    pos = ds[3].pos.double()
    # Normalisation is a shift and a positive scale: recover them from the known surface.
    # On the tetrahedron, the minimum of each coordinate is 0 and the maximum of x+y+z is 1.
    low = pos.min(dim=0).values
    scale = ((pos - low).sum(dim=1)).max()
    surface = (pos - low) / scale
    on_plane = (surface.abs() < 1e-4).any(dim=1)
    on_slant = (surface.sum(dim=1) - 1).abs() < 1e-4
    assert bool((on_plane | on_slant).all())
    # The slanted face has area sqrt(3)/2 of the total 3/2 + sqrt(3)/2.
    share = (3**0.5 / 2) / (1.5 + 3**0.5 / 2)
    assert abs(on_slant.double().mean().item() - share) < 5 * (share * (1 - share) / 512) ** 0.5


def test_reproducible_under_seed_and_global_rng_untouched(tmp_path):
    a = _write_modelnet(tmp_path / "a")
    b = tmp_path / "b"
    shutil.copytree(a, b)
    state = torch.random.get_rng_state()
    first = ModelNetPointClouds(str(a), "10", "train", num_points=64, seed=3)
    assert torch.equal(state, torch.random.get_rng_state())
    second = ModelNetPointClouds(str(b), "10", "train", num_points=64, seed=3)
    assert torch.equal(first._data.pos, second._data.pos)
    other = ModelNetPointClouds(str(b), "10", "train", num_points=64, seed=4)
    assert not torch.equal(first._data.pos, other._data.pos)


def test_categories_filter_and_relabel(tmp_path):
    root = _write_modelnet(tmp_path)
    ds = ModelNetPointClouds(str(root), "10", "train", 32, categories=["toilet", "bed"])
    assert ds.classes == ["toilet", "bed"] and ds.num_classes == 2
    assert [int(ds[i].y) for i in range(len(ds))] == [0, 0, 1, 1]
    with pytest.raises(ValueError, match="sofa2"):
        ModelNetPointClouds(str(root), "10", "train", 32, categories=["sofa2"])


def test_second_construction_reads_the_cache(tmp_path):
    root = _write_modelnet(tmp_path)
    first = ModelNetPointClouds(str(root), "10", "test", num_points=48)
    # Keep the category folders (PyG checks them), drop every mesh.
    for path in (root / "raw").rglob("*.off"):
        os.remove(path)
    second = ModelNetPointClouds(str(root), "10", "test", num_points=48)
    assert torch.equal(first._data.pos, second._data.pos)
    # Another number of points is another cache entry, which now has no meshes to read.
    with pytest.raises(FileNotFoundError, match="no meshes"):
        ModelNetPointClouds(str(root), "10", "test", num_points=49)


def test_modelnet40_layout(tmp_path):
    extra = [f"extra_{i:02d}" for i in range(30)]
    root = _write_modelnet(tmp_path, MODELNET10 + extra, train_per_category=1)
    ds = ModelNetPointClouds(str(root), "40", "train", num_points=16)
    assert len(ds) == 40 and ds.num_classes == 40 and ds.classes == sorted(MODELNET10 + extra)


def test_missing_raw_folder_says_where_to_put_the_data(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"ModelNet40/ folder .* into .*raw"):
        ModelNetPointClouds(str(tmp_path), "40")
    with pytest.raises(FileNotFoundError, match="not a folder"):
        ModelNetPointClouds(str(tmp_path / "nowhere"))


def test_wrong_layout_and_arguments(tmp_path):
    root = _write_modelnet(tmp_path)
    with pytest.raises(ValueError, match="holds 10 category folders but ModelNet40 has 40"):
        ModelNetPointClouds(str(root), "40")
    with pytest.raises(ValueError, match="'10' or '40'"):
        ModelNetPointClouds(str(root), "20")
    with pytest.raises(ValueError, match="splits"):
        ModelNetPointClouds(str(root), "10", "val")
    with pytest.raises(ValueError, match="num_points"):
        ModelNetPointClouds(str(root), "10", num_points=0)
    with pytest.raises(TypeError, match="seed"):
        ModelNetPointClouds(str(root), "10", seed="0")


def test_modelnet10_folders_must_exist(tmp_path):
    # PyG's ModelNet checks the ten ModelNet10 category folders, even for ModelNet40.
    others = [f"other_{i:02d}" for i in range(10)]
    root = _write_modelnet(tmp_path, others, train_per_category=1)
    with pytest.raises(FileNotFoundError, match="is not downloaded here"):
        ModelNetPointClouds(str(root), "10")


def test_bad_off_files_are_named_or_skipped(tmp_path):
    root = _write_modelnet(tmp_path)
    bad = {
        "bed/train/bed_0001.off": "OFF\nfour 4 0\n",
        "chair/train/chair_0002.off": TETRAHEDRON.replace("1 0 0\n", "nan 0 0\n", 1),
        "sofa/train/sofa_0001.off": TETRAHEDRON.replace("3 1 2 3", "3 1 2 7"),
    }
    for name, text in bad.items():
        (root / "raw" / name).write_text(text)
    with pytest.raises(ValueError, match="3 bad files") as info:
        ModelNetPointClouds(str(root), "10", "train", num_points=16)
    message = str(info.value)
    assert "bed_0001.off cannot be read as OFF" in message
    assert "chair_0002.off: NaN or infinite coordinates" in message
    assert "sofa_0001.off has faces that index vertices outside [0, 4)" in message
    with pytest.warns(UserWarning, match="sofa_0001.off"):
        kept = ModelNetPointClouds(str(root), "10", "train", 16, on_bad_file="skip")
    assert len(kept) == 20 - 3 and bool(torch.isfinite(kept._data.pos).all())
