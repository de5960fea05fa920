r"""benchmarks/real_data_study.py on the smoke profile and the built-in data, run as a user
runs it: its figures agree with the library's own evaluation of the samplers it trained,
with each other, and with a rerun that resumes from its checkpoints."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch_geometric.loader import DataLoader

from reproduction.config import CLASSIFICATION
from reproduction.datasets import get_dataset
from reproduction.samplers import gather_sample, samplenet_indices
from reproduction.tasks.classification import PointNet, evaluate_accuracy
from tg_samplenet.nn.sampler import SampleNet

ROOT = Path(__file__).resolve().parents[1]


def run_study(out: Path, runs: Path) -> dict:
    command = [sys.executable, str(ROOT / "benchmarks" / "real_data_study.py"), "--smoke"]
    command += ["--variants", "samplenet", "progressive", "alpha3", "--variant-epochs", "1"]
    command += ["--out", str(out), "--runs", str(runs), "--no-progress"]
    subprocess.run(command, check=True, capture_output=True, timeout=600, cwd=ROOT)
    return json.loads((out / "real_data_study.json").read_text())


@pytest.mark.slow
def test_real_data_study_smoke(tmp_path):
    runs = tmp_path / "runs"
    report = run_study(tmp_path / "first", runs)
    assert report["meta"]["command"].startswith("python benchmarks/real_data_study.py --smoke")
    assert report["dataset"] == "synthetic" and report["evaluated_on"] == "test"
    profile = CLASSIFICATION["smoke"]
    m = min(profile.train_sizes)
    samplers = report["samplers"]
    assert set(samplers) == {"samplenet", "progressive", "alpha3"}
    assert samplers["alpha3"]["sampler_epochs"] == 1 and samplers["alpha3"]["changes"] == {
        "alpha": 3.0
    }

    # The study's "hard" reading is the sampler's own inference: the library's evaluation
    # of the saved sampler on the saved network gives the same accuracy.
    test_set = get_dataset(
        "synthetic",
        None,
        "test",
        num_points=profile.num_points,
        seed=0,
        samples_per_class=profile.test_samples_per_class,
    )
    assert len(test_set) == report["eval_clouds"]
    loader = DataLoader(test_set, profile.batch_size)
    pointnet = PointNet(
        len(test_set.classes),
        point_channels=profile.point_channels,
        global_channels=profile.task_width,
        head_channels=profile.head_channels,
        tnet_point_channels=profile.tnet_point_channels,
        tnet_head_channels=profile.tnet_head_channels,
    )
    saved = torch.load(runs / "checkpoints" / "pointnet.pt", weights_only=False)
    pointnet.load_state_dict(saved["state"]["model"])
    pointnet.eval()
    assert report["complete"]["pointnet"] == evaluate_accuracy(pointnet, loader)
    sampler = SampleNet.load(Path(samplers["samplenet"]["checkpoint"]).with_suffix(".sampler.pt"))
    expected = evaluate_accuracy(
        pointnet, loader, sample=gather_sample(samplenet_indices(sampler), m)
    )
    assert samplers["samplenet"]["final"]["accuracy"]["hard"][str(m)] == expected

    for name, study in samplers.items():
        final = study["final"]
        # Per-epoch logs for every epoch trained, the last one evaluated on the final sampler.
        assert [e["epoch"] for e in study["epochs"]] == list(range(1, study["sampler_epochs"] + 1))
        last = study["epochs"][-1]
        for mode, row in last["accuracy"].items():
            for size, value in row.items():
                assert final["accuracy"][mode][size] == value, (name, mode, size)
        for size, duplicates in final["duplicates"].items():
            assert 0 <= final["refilled"][size] <= duplicates <= 1
            if study["kind"] != "progressive":  # m simplified points for m samples
                assert final["refilled"][size] == duplicates
        assert 0 < final["top_weight"] <= 1 and final["q_to_cloud_sq"] >= 0
    # The progressive sampler: every size, and a learned prefix below each size.
    progressive = samplers["progressive"]["final"]["accuracy"]
    assert set(progressive["hard"]) == {str(s) for s in profile.sizes}
    assert set(progressive["prefix4"]) == {str(s) for s in profile.sizes}
    assert "prefix16" in progressive and str(min(profile.sizes)) not in progressive["prefix16"]

    table = (tmp_path / "first" / "real_data_study.md").read_text()
    assert "- Command:" in table and "| samplenet, hard |" in table and "Per epoch" in table
    assert (tmp_path / "first" / "real_data_study.png").read_bytes()[:4] == b"\x89PNG"

    # A rerun resumes every network and sampler from its checkpoint: nothing is trained
    # again and every figure is reproduced.
    again = run_study(tmp_path / "second", runs)
    assert again["results"] == report["results"] and again["complete"] == report["complete"]
    for name, study in again["samplers"].items():
        assert study["epochs"] == [] and study["final"] == samplers[name]["final"]
