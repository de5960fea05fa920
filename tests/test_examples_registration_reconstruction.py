r"""The registration and reconstruction examples: their pair generator and metrics against
brute-force references, and both scripts end to end on the smoke profile (outputs, and a
second run that resumes from the checkpoints)."""

from __future__ import annotations

import importlib.util
import json
import math
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from scipy.spatial.transform import Rotation
from torch_geometric.data import Data
from torch_geometric.loader import DataLoader

from tg_samplenet.tasks import PCRNetOutput, ReconstructionOutput

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def load_example(name: str):
    spec = importlib.util.spec_from_file_location(f"example_{name}", EXAMPLES / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


registration = load_example("registration")
reconstruction = load_example("reconstruction")


def random_clouds(num_clouds: int, num_points: int, seed: int = 0) -> list[Data]:
    generator = torch.Generator().manual_seed(seed)
    return [
        Data(pos=torch.rand(num_points, 3, generator=generator) - 0.5, y=torch.tensor([i % 2]))
        for i in range(num_clouds)
    ]


def brute_chamfer(x: np.ndarray, y: np.ndarray) -> float:
    d = ((x[:, None, :] - y[None, :, :]) ** 2).sum(-1)
    return float(d.min(1).mean() + d.min(0).mean())


# Pairs ----------------------------------------------------------------------------------


def test_pairs_are_seeded():
    clouds = random_clouds(3, 20)
    a = registration.make_pairs(clouds, 4, seed=7)
    b = registration.make_pairs(clouds, 4, seed=7)
    c = registration.make_pairs(clouds, 4, seed=8)
    assert len(a) == 12
    for p, q in zip(a, b, strict=True):
        assert torch.equal(p.rotation, q.rotation) and torch.equal(p.source, q.source)
    assert not torch.equal(torch.cat([p.rotation for p in a]), torch.cat([p.rotation for p in c]))


@pytest.mark.parametrize("max_degrees", [45.0, 10.0])
def test_pair_angles_within_bounds_and_match_rotation(max_degrees):
    pairs = registration.make_pairs(random_clouds(5, 8), 40, seed=0, max_degrees=max_degrees)
    angles = torch.cat([p.angles for p in pairs]).double()
    assert angles.abs().max() <= max_degrees
    # Uniform draws fill the range: every axis gets angles near both ends.
    assert (angles.amax(0) > 0.8 * max_degrees).all()
    assert (angles.amin(0) < -0.8 * max_degrees).all()
    # Intrinsic x-y-z Euler angles, checked against SciPy.
    expected = Rotation.from_euler("XYZ", angles.numpy(), degrees=True).as_matrix()
    rotations = torch.cat([p.rotation for p in pairs]).double().numpy()
    np.testing.assert_allclose(rotations, expected, atol=1e-5)


def test_source_is_rotated_template_point_for_point():
    clouds = random_clouds(2, 16, seed=3)
    pairs = registration.make_pairs(clouds, 3, seed=1)
    for i, pair in enumerate(pairs):
        template = clouds[i // 3].pos
        assert torch.equal(pair.pos, template)
        R = pair.rotation[0].double().numpy()
        expected = np.stack([R @ p for p in template.double().numpy()])
        np.testing.assert_allclose(pair.source.double().numpy(), expected, atol=1e-6)


def test_pairs_reject_no_rotations():
    with pytest.raises(ValueError, match="rotations_per_shape"):
        registration.make_pairs(random_clouds(1, 4), 0, seed=0)


# Registration metrics as the example computes them ------------------------------------


class FixedRotation(torch.nn.Module):
    r"""Stands in for PCRNet: returns R_gt of each pair turned by a known angle about z."""

    def __init__(self, rotation_gt: torch.Tensor, degrees: torch.Tensor):
        super().__init__()
        c, s = torch.cos(torch.deg2rad(degrees)), torch.sin(torch.deg2rad(degrees))
        z, o = torch.zeros_like(c), torch.ones_like(c)
        turn = torch.stack([torch.stack(r, -1) for r in ((c, -s, z), (s, c, z), (z, z, o))], -2)
        self.rotation = turn @ rotation_gt

    def forward(self, template, source, template_batch, source_batch):
        return PCRNetOutput(self.rotation, None, None)


def test_rotation_error_is_the_geodesic_angle_not_twice_it():
    pairs = registration.make_pairs(random_clouds(3, 10), 2, seed=5)
    rotation_gt = torch.cat([p.rotation for p in pairs])
    degrees = torch.tensor([0.0, 10.0, 20.0, 45.0, 90.0, 170.0])
    loader = DataLoader(pairs, batch_size=len(pairs), follow_batch=["source"])
    errors, consistency = registration.evaluate(FixedRotation(rotation_gt, degrees), loader, "cpu")
    # Brute force: the angle of R_est^T R_gt from its trace, in float64.
    est = FixedRotation(rotation_gt, degrees).rotation.double()
    relative = est.transpose(1, 2) @ rotation_gt.double()
    trace = relative.diagonal(dim1=1, dim2=2).sum(1)
    expected = torch.rad2deg(torch.arccos(((trace - 1) / 2).clamp(-1, 1)))
    torch.testing.assert_close(errors.double(), expected, atol=1e-3, rtol=0)
    torch.testing.assert_close(errors.double(), degrees.double(), atol=1e-3, rtol=0)
    # Complete clouds: the source rotated back is the template exactly.
    assert consistency.abs().max() < 1e-10


def test_consistency_is_chamfer_of_samples_in_template_frame():
    pairs = registration.make_pairs(random_clouds(2, 12, seed=9), 2, seed=2)
    rotation_gt = torch.cat([p.rotation for p in pairs])
    loader = DataLoader(pairs, batch_size=len(pairs), follow_batch=["source"])
    calls = []

    def sample(pos, batch):
        # Template: the first 5 points of each cloud; source: the last 5.
        calls.append(len(calls))
        rank = torch.arange(pos.size(0)) - torch.searchsorted(batch, batch)
        keep = rank < 5 if len(calls) % 2 == 1 else rank >= 12 - 5
        return pos[keep], batch[keep]

    _, consistency = registration.evaluate(
        FixedRotation(rotation_gt, torch.zeros(len(pairs))), loader, "cpu", sample
    )
    expected = [
        brute_chamfer(p.pos[:5].double().numpy(), p.pos[-5:].double().numpy()) for p in pairs
    ]
    np.testing.assert_allclose(consistency.double().numpy(), expected, rtol=1e-4, atol=1e-7)


def test_random_start_fps_is_seeded_and_starts_anywhere():
    clouds = random_clouds(40, 30, seed=1)
    pos = torch.cat([c.pos for c in clouds])
    batch = torch.arange(40).repeat_interleave(30)
    first = registration.random_start_fps(0)(pos, batch, 4)
    again = registration.random_start_fps(0)(pos, batch, 4)
    assert torch.equal(first, again)
    starts = first.view(40, 4)[:, 0] - torch.arange(40) * 30
    assert len(set(starts.tolist())) > 5  # not always the first point
    # Each pick after the start is the farthest from those before it (brute force).
    for cloud in range(3):
        chosen = first.view(40, 4)[cloud].tolist()
        points = pos[cloud * 30 : (cloud + 1) * 30].double()
        for step in range(1, 4):
            dist = torch.cdist(points, pos[chosen[:step]].double()).min(1).values
            assert chosen[step] - cloud * 30 == int(dist.argmax())


# NRE as the example computes it ---------------------------------------------------------


def test_nre_is_the_mean_of_per_cloud_ratios_overall_and_per_class():
    cd_sampled = torch.tensor([2.0, 3.0, 1.0, 8.0, 5.0])
    cd_complete = torch.tensor([1.0, 1.5, 0.5, 2.0, 5.0])
    labels = torch.tensor([0, 1, 0, 1, 1])
    overall, by_class = reconstruction.nre_summary(cd_sampled, cd_complete, labels, ["a", "b"])
    ratios = [s / c for s, c in zip(cd_sampled.tolist(), cd_complete.tolist(), strict=True)]
    assert overall == pytest.approx(sum(ratios) / 5)
    assert overall != pytest.approx(float(cd_sampled.mean() / cd_complete.mean()))
    assert by_class["a"] == pytest.approx((ratios[0] + ratios[2]) / 2)
    assert by_class["b"] == pytest.approx((ratios[1] + ratios[3] + ratios[4]) / 3)


def test_reconstruction_error_is_chamfer_to_the_complete_cloud():
    class Shift(torch.nn.Module):
        r"""Stands in for the autoencoder: 'reconstructs' 6 points, the first 6 of the input
        shifted by 0.1 along x (fine for equal-size clouds)."""

        def forward(self, pos, batch):
            rank = torch.arange(pos.size(0)) - torch.searchsorted(batch, batch)
            keep = rank < 6
            out = pos[keep] + torch.tensor([0.1, 0.0, 0.0])
            return ReconstructionOutput(out, batch[keep], None)

    clouds = random_clouds(3, 10, seed=4)
    loader = DataLoader(clouds, batch_size=2)
    errors, labels = reconstruction.evaluate(Shift(), loader, "cpu")
    expected = [
        brute_chamfer(c.pos[:6].double().numpy() + [0.1, 0, 0], c.pos.double().numpy())
        for c in clouds
    ]
    np.testing.assert_allclose(errors.double().numpy(), expected, rtol=1e-4)
    assert labels.tolist() == [c.y.item() for c in clouds]


# End to end on the smoke profile ----------------------------------------------------------


def run_twice(module, out: Path, extra: list[str]) -> tuple[dict, dict, dict]:
    argv = ["--smoke", "--out", str(out), "--no-progress", *extra]
    first = module.main(argv)
    checkpoints = {p.name: p.stat().st_mtime_ns for p in (out / "checkpoints").iterdir()}
    second = module.main(argv)
    after = {p.name: p.stat().st_mtime_ns for p in (out / "checkpoints").iterdir()}
    assert after == checkpoints, "the second run retrained instead of resuming"
    return first, second, checkpoints


@pytest.fixture(scope="module")
def registration_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("registration")
    return out, *run_twice(registration, out, [])


@pytest.fixture(scope="module")
def reconstruction_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("reconstruction")
    return out, *run_twice(reconstruction, out, ["--categories", "chair", "airplane"])


def check_common(
    out: Path, data: dict, checkpoints, task: str, metric: str, plot: str, task_network: str
) -> dict:
    saved = json.loads((out / "results.json").read_text())
    assert saved == json.loads(json.dumps(data))
    assert saved["task"] == task and saved["metric"] == metric
    assert saved["higher_is_better"] is False
    assert isinstance(saved["complete"], float) and math.isfinite(saved["complete"])
    module = registration if task == "registration" else reconstruction
    profile = module.PROFILES["smoke"]
    sizes = {str(m) for m in profile.sizes}
    for name in ("fps", "random"):
        assert set(saved["results"][name]) == sizes
    trained = {str(m) for m in profile.train_sizes}
    assert set(saved["results"]["samplenet"]) == set(saved["results"]["snet"]) == trained
    assert set(saved["results"]["samplenet_progressive"]) == sizes
    m = profile.train_sizes[0]
    assert {
        f"{task_network}.pt",
        f"samplenet_{m}.pt",
        f"snet_{m}.pt",
        "samplenet_progressive.pt",
        f"samplenet_{m}.sampler.pt",
        "samplenet_progressive.sampler.pt",
    } <= set(checkpoints)
    for row in saved["results"].values():
        assert all(isinstance(v, float) and math.isfinite(v) and v >= 0 for v in row.values())
    table = (out / "results.md").read_text()
    assert metric in table and "| fps |" in table and "| samplenet |" in table
    for name in (plot, "samples.png"):
        png = (out / name).read_bytes()
        assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 1000
    return saved


@pytest.mark.slow
def test_registration_example_outputs(registration_run):
    out, first, second, checkpoints = registration_run
    saved = check_common(
        out, second, checkpoints, "registration", "mre_deg", "rotation_error.png", "pcrnet"
    )
    assert 0 <= saved["complete"] <= 180
    for row in saved["results"].values():
        assert all(v <= 180 for v in row.values())
    assert set(saved["consistency"]) == set(saved["results"])
    for name, row in saved["consistency"].items():
        assert set(row) == set(saved["results"][name])
        assert all(isinstance(v, float) and v >= 0 for v in row.values())
    assert saved["category"] == "car"
    assert saved["num_test_pairs"] == 4 * 2 and saved["num_train_pairs"] == 6 * 3


@pytest.mark.slow
def test_registration_example_resumes_with_the_same_results(registration_run):
    _, first, second, _ = registration_run
    assert second["results"] == first["results"]
    assert second["consistency"] == first["consistency"]
    assert second["complete"] == first["complete"]


@pytest.mark.slow
def test_reconstruction_example_outputs(reconstruction_run):
    out, first, second, checkpoints = reconstruction_run
    saved = check_common(
        out, second, checkpoints, "reconstruction", "nre", "nre.png", "autoencoder"
    )
    assert saved["complete"] == 1.0 and saved["complete_cd"] > 0
    assert saved["categories"] == ["chair", "airplane"]
    assert set(saved["per_class"]) == set(saved["results"])
    for name, row in saved["per_class"].items():
        assert set(row) == set(saved["results"][name])
        for m, by_class in row.items():
            assert set(by_class) == {"chair", "airplane"}
            # Equal numbers of test clouds per class: the overall NRE is the class mean.
            assert np.mean(list(by_class.values())) == pytest.approx(saved["results"][name][m])


@pytest.mark.slow
def test_reconstruction_example_resumes_with_the_same_results(reconstruction_run):
    _, first, second, _ = reconstruction_run
    assert second["results"] == first["results"]
    assert second["per_class"] == first["per_class"]


# The real loaders: the paper's HDF5 layout for registration, ShapeNet PLY folders for
# reconstruction, written small into tmp_path ----------------------------------------------


@pytest.mark.slow
def test_registration_example_on_hdf5_files(tmp_path, write_hdf5_dataset):
    write_hdf5_dataset(tmp_path, ["airplane", "car"], {"train": 8, "test": 6}, 160)
    out = tmp_path / "out"
    argv = ["--smoke", "--out", str(out), "--no-progress", "--dataset", "h5"]
    data = registration.main([*argv, "--data-root", str(tmp_path), "--category", "car"])
    # 4 training and 3 test clouds of class "car", rotated 3 and 2 times.
    assert data["dataset"] == "h5" and data["category"] == "car"
    assert data["num_train_pairs"] == 4 * 3 and data["num_test_pairs"] == 3 * 2
    assert set(data["results"]["samplenet"]) == {"16"}


@pytest.mark.slow
def test_reconstruction_example_on_shapenet_ply_folders(tmp_path):
    import plyfile

    generator = np.random.default_rng(0)
    for synset in ("03001627", "02691156"):  # chair, airplane
        (tmp_path / synset).mkdir()
        for model in range(10):
            points = generator.uniform(-1, 1, (160, 3)).astype(np.float32)
            vertex = np.array([tuple(p) for p in points], [("x", "f4"), ("y", "f4"), ("z", "f4")])
            element = plyfile.PlyElement.describe(vertex, "vertex")
            plyfile.PlyData([element]).write(str(tmp_path / synset / f"model{model}.ply"))
    out = tmp_path / "out"
    argv = ["--smoke", "--out", str(out), "--no-progress", "--dataset", "shapenet"]
    data = reconstruction.main(
        [*argv, "--data-root", str(tmp_path), "--categories", "chair", "airplane"]
    )
    assert data["dataset"] == "shapenet" and data["categories"] == ["chair", "airplane"]
    assert set(data["per_class"]["fps"]["16"]) == {"chair", "airplane"}
    assert all(math.isfinite(v) for row in data["results"].values() for v in row.values())
