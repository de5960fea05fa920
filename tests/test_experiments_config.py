r"""The typed per-task configurations of :mod:`reproduction.config` and the shared
command line: every profile is self-consistent, the paper profiles hold the authors' values,
and the flags override what they name."""

from __future__ import annotations

from dataclasses import fields, replace

import pytest
import torch
from torch_geometric.data import Data
from torch_geometric.loader import DataLoader

from reproduction.classifiers import num_classifier_stages, train_classifiers
from reproduction.command_line import common_parser, resolve_profile
from reproduction.config import (
    CLASSIFICATION,
    POINTNET2,
    RECONSTRUCTION,
    REGISTRATION,
    ClassificationProfile,
    PointNet2Profile,
    ReconstructionProfile,
    RegistrationProfile,
)
from reproduction.progress import Stages
from reproduction.samplers import make_sampler
from tg_samplenet.training import learning_rate_schedule

TASKS = {
    "classification": (CLASSIFICATION, ClassificationProfile),
    "registration": (REGISTRATION, RegistrationProfile),
    "reconstruction": (RECONSTRUCTION, ReconstructionProfile),
    "pointnet2": (POINTNET2, PointNet2Profile),
}
ALL = [(task, name) for task, (profiles, _) in TASKS.items() for name in profiles]


@pytest.mark.parametrize("task, name", ALL)
def test_every_profile_is_consistent(task, name):
    profiles, kind = TASKS[task]
    profile = profiles[name]
    # Every task has the three profiles; classification also its quick default and one
    # sized for real scans, PointNet++ one for real scans.
    extra = {"quick", "cpu-real"} if task == "classification" else set()
    extra = {"cpu-real"} if task == "pointnet2" else extra
    assert isinstance(profile, kind) and set(profiles) == {"smoke", "cpu", "paper"} | extra
    n = profile.num_points
    assert all(1 <= m <= n for m in profile.sizes + profile.train_sizes)
    assert list(profile.sizes) == sorted(profile.sizes, reverse=True)
    assert set(profile.train_sizes) <= set(profile.sizes)
    # SampleNet-Progressive samples every evaluated size, and is trained up to its own size.
    progressive = profile.progressive_points or n
    assert max(profile.sizes, default=0) <= progressive <= n
    assert all(1 <= c <= progressive for c in profile.control_sizes)
    optimizer = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=1.0)
    learning_rate_schedule(optimizer, profile.lr_schedule, 10)  # a schedule the library has
    assert profile.progressive_reduction in ("sum", "mean")
    # The same loss weights in every profile of a task: they are the task's, written once.
    for other in profiles.values():
        assert other.fixed_loss is profile.fixed_loss
        assert other.progressive_loss is profile.progressive_loss


def test_paper_profiles_hold_the_authors_settings():
    # reference §3-4: alpha, lambda, gamma, delta and k per task; epochs and rates.
    c, g, r = CLASSIFICATION["paper"], REGISTRATION["paper"], RECONSTRUCTION["paper"]
    assert (c.k, c.fixed_loss.alpha, c.fixed_loss.lmbda, c.fixed_loss.gamma) == (7, 30, 1, 1)
    assert (c.progressive_loss.gamma, c.progressive_loss.delta) == (0.5, 1 / 30)
    assert (c.lr_schedule, c.task_epochs, c.sampler_epochs, c.sampler_lr) == (
        "staircase",
        250,
        500,
        1e-2,
    )
    assert (g.k, g.fixed_loss.alpha, g.fixed_loss.lmbda, g.progressive_reduction) == (
        8,
        0.01,
        0.01,
        "mean",
    )
    assert g.rotations_per_shape * g.samples_per_class == 4925  # 197 cars x 25 rotations
    assert (r.k, r.fixed_loss.gamma, r.fixed_loss.delta, r.fixed_loss.lmbda) == (
        16,
        0,
        1 / 64,
        1e-4,
    )
    assert r.num_points == 2048 and r.categories == ("chair", "table", "car", "airplane")


def test_real_data_profile_is_the_cpu_profile_with_shorter_runs_and_narrower_samplers():
    # docs/real-data-study.md measured the "cpu" PointNet on real scans; "cpu-real" keeps
    # that network, the data sizes and the losses, and only trains less, with a narrower
    # sampler, so that a run on the real ModelNet10 training split fits 40 minutes.
    cpu, real = CLASSIFICATION["cpu"], CLASSIFICATION["cpu-real"]
    changed = {"task_epochs", "sampler_epochs", "sampler_point_channels", "sampler_head_channels"}
    changed |= {"projected_loss"}  # the paper's alpha for SampleNet, chosen on the real split
    for field in fields(real):
        if field.name not in changed:
            assert getattr(real, field.name) == getattr(cpu, field.name), field.name
    assert real.task_epochs < cpu.task_epochs and real.sampler_epochs < cpu.sampler_epochs
    narrow, default = make_sampler(real, 32), make_sampler(cpu, 32)
    assert sum(map(torch.numel, narrow.parameters())) < sum(map(torch.numel, default.parameters()))
    parser = common_parser("test", CLASSIFICATION)
    assert resolve_profile(parser.parse_args(["--profile", "cpu-real"]), CLASSIFICATION) == real


def test_the_classification_default_is_the_quick_profile():
    # The main job: a few sizes in minutes, every sampler scored on vanilla PointNet alone;
    # the full CPU table is --profile cpu.
    quick, cpu = CLASSIFICATION["quick"], CLASSIFICATION["cpu"]
    args = common_parser("test", CLASSIFICATION, default="quick").parse_args([])
    assert resolve_profile(args, CLASSIFICATION) == quick
    assert common_parser("test", REGISTRATION).parse_args([]).profile == "cpu"
    assert quick.sizes == quick.train_sizes == (64, 32, 16) and quick.num_points == 1024
    assert quick.progressive_points == 64 and quick.progressive_alpha == 3.0
    assert not quick.transform_nets and cpu.transform_nets
    assert (num_classifier_stages(quick), num_classifier_stages(cpu)) == (1, 2)
    assert quick.task_epochs < cpu.task_epochs and quick.sampler_epochs < cpu.sampler_epochs
    assert quick.fixed_loss is cpu.fixed_loss and quick.projected_loss == cpu.projected_loss


def test_vanilla_only_profile_trains_one_classifier(tmp_path):
    profile = replace(CLASSIFICATION["smoke"], transform_nets=False, task_epochs=1)
    generator = torch.Generator().manual_seed(0)
    clouds = [
        Data(pos=torch.rand(32, 3, generator=generator), y=torch.tensor([i % 2])) for i in range(4)
    ]
    stages = Stages(num_classifier_stages(profile), bars=False)
    pointnet, vanilla = train_classifiers(
        profile, 2, DataLoader(clouds, batch_size=2), tmp_path, progress=False, stages=stages
    )
    assert pointnet is vanilla and vanilla.input_tnet is None and not vanilla.training
    assert stages.count == 1 and {p.name for p in tmp_path.iterdir()} == {"pointnet_vanilla.pt"}


def test_flags_override_the_profile():
    parser = common_parser("test", CLASSIFICATION)
    args = parser.parse_args(
        ["--smoke", "--sampler-epochs", "5", "--task-lr", "0.5", "--sizes", "8", "32"]
    )
    profile = resolve_profile(args, CLASSIFICATION)
    assert args.profile == "smoke"
    smoke = CLASSIFICATION["smoke"]
    assert (profile.sampler_epochs, profile.task_lr, profile.sizes) == (5, 0.5, (32, 8))
    unchanged = {"sampler_epochs", "task_lr", "sizes"}
    for field in fields(profile):
        if field.name not in unchanged:
            assert getattr(profile, field.name) == getattr(smoke, field.name), field.name


def test_sizes_beyond_the_cloud_end_the_run_with_a_message():
    parser = common_parser("test", REGISTRATION)
    args = parser.parse_args(["--smoke", "--train-sizes", "500"])
    with pytest.raises(SystemExit, match=r"sample size 500 must lie in \[1, 128\]"):
        resolve_profile(args, REGISTRATION)


def test_make_sampler_applies_the_profile():
    profile = RECONSTRUCTION["smoke"]
    sampler = make_sampler(profile, 16, skip_projection=True)
    config = sampler.config
    assert (config["num_out_points"], config["k"], config["skip_projection"]) == (16, 16, True)
    assert config["point_channels"] == list(profile.sampler_point_channels)
    assert config["head_channels"] == list(profile.sampler_head_channels)
    assert config["initial_temperature"] == profile.initial_temperature
    # A profile that sets no widths leaves SampleNet's defaults.
    default = make_sampler(CLASSIFICATION["paper"], 32).config
    assert default["point_channels"] == [64, 64, 64, 128, 128]
