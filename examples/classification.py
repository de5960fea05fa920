r"""SampleNet for classification (paper §4.1, Figs. 5 and 6, Table 1), on PyG batches.

1. Trains PointNet (with its input and feature transform nets) and vanilla PointNet on
   complete clouds.
2. Freezes them and trains, per sample size m, SampleNet and S-NET (SampleNet without the
   soft projection) against PointNet, and one SampleNet-Progressive against vanilla PointNet.
3. Evaluates instance accuracy on the test split with PyG's fps, random sampling, S-NET,
   SampleNet and SampleNet-Progressive (sampled, simplified and soft-projected points) for
   every m, and writes results.json, results.md, accuracy.png, samples.png and the
   checkpoints into --out.

    python examples/classification.py                      # built-in data, CPU profile
    python examples/classification.py --smoke --out /tmp/c  # whole pipeline in seconds
    python examples/classification.py --dataset h5 --data-root modelnet40_ply_hdf5_2048 \
        --profile paper --device cuda

Every stage resumes from its checkpoint in --out/checkpoints; see --help for torchrun.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # reproduction/ beside tg_samplenet/

import os

# Idle OpenMP threads sleep: see reproduction.command_line. Before torch.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import time  # noqa: E402
from typing import Optional

from torch_geometric.loader import DataLoader

from reproduction.baselines import baseline_samplers
from reproduction.classification import train_pointnets
from reproduction.command_line import common_parser, load_splits, start_example
from reproduction.config import CLASSIFICATION
from reproduction.plots import plot_metric_vs_ratio, render_samples
from reproduction.reporting import example_metadata, results_table, write_results
from reproduction.samplers import (
    PROGRESSIVE_MODES,
    gather_sample,
    learned_samplers,
    make_sampler,
    progressive_points,
    samplenet_indices,
    train_sampler,
    train_samplers,
)
from reproduction.tasks.classification import PointNet, classification_loss, evaluate_accuracy
from tg_samplenet import TemperatureProfile
from tg_samplenet.training.distributed import (
    all_reduce_sum,
    is_distributed,
    is_main_process,
    shard_loader,
    training_loader,
)


def main(argv: Optional[list[str]] = None) -> dict:
    parser = common_parser(__doc__.split("\n")[0], CLASSIFICATION)
    parser.add_argument(
        "--temperature-study",
        action="store_true",
        help="also train SampleNet-Progressive with each temperature profile (paper Table 1)",
    )
    args = parser.parse_args(argv)
    run = start_example(args, CLASSIFICATION, "classification")
    profile, device, out_dir, ckpt_dir, progress, started = run

    train_set, test_set, eval_split = load_splits(args, profile)
    num_classes = len(train_set.classes)
    train_loader = training_loader(train_set, profile.batch_size, seed=args.seed)
    task_batch_size = profile.task_batch_size or profile.batch_size
    task_loader = training_loader(train_set, task_batch_size, seed=args.seed)
    test_loader = DataLoader(test_set, profile.batch_size)
    test_shard = shard_loader(test_loader)  # this rank's test batches (all in one process)

    def accuracy(model: PointNet, sample=None, whole: bool = False) -> float:
        # Each rank counts the correct predictions of its whole test batches; the counts add
        # up. A sampler that draws from one generator across calls sees every batch (whole)
        # so that it draws what it draws in one process.
        if whole or not is_distributed():
            return evaluate_accuracy(model, test_loader, device, sample)
        n = len(test_shard.dataset)
        correct = round(evaluate_accuracy(model, test_shard, device, sample) * n) if n else 0
        return all_reduce_sum(correct) / len(test_set)

    print(
        f"{args.dataset}: {len(train_set)} training / {len(test_set)} {eval_split} clouds, "
        f"{num_classes} classes, {profile.num_points} points; profile {args.profile}"
    )

    # 1. PointNet with and without its transform nets, on complete clouds.
    pointnet, vanilla = train_pointnets(
        profile, num_classes, task_loader, ckpt_dir, device, progress
    )
    complete = accuracy(pointnet)
    complete_vanilla = accuracy(vanilla)
    print(f"complete clouds: PointNet {complete:.3f}, vanilla PointNet {complete_vanilla:.3f}")

    # 2. Samplers against the frozen networks; the progressive one against vanilla PointNet.
    def task_loss(model: PointNet):
        return lambda out, data: classification_loss(model, out.pos, out.batch, data.y)

    fixed, progressive = train_samplers(
        profile,
        task_loss(pointnet),
        train_loader,
        ckpt_dir,
        device,
        progress,
        progressive_task_loss=task_loss(vanilla),
    )

    # 3. Accuracy against the sample size.
    results: dict[str, dict[int, float]] = {}

    def record(name: str, m: int, model: PointNet, sample, whole: bool = False) -> None:
        results.setdefault(name, {})[m] = accuracy(model, sample, whole)

    baselines = baseline_samplers(args.seed)
    for m in profile.sizes:
        for name, sample in {**baselines, **learned_samplers(fixed, m)}.items():
            record(name, m, pointnet, gather_sample(sample, m), whole=name == "random")
        record("fps_vanilla", m, vanilla, gather_sample(baselines["fps"], m))
        for mode in PROGRESSIVE_MODES:
            key = "samplenet_progressive" + ("" if mode == "sampled" else f"_{mode}")
            points = progressive_points(progressive, m, mode, profile.progressive_prefix)
            record(key, m, vanilla, points)

    meta = example_metadata("examples/classification.py", argv, args, profile, started)
    meta["complete_vanilla"] = complete_vanilla
    meta["num_evaluated"] = len(test_set)  # for the standard errors of the accuracies
    if args.temperature_study:
        meta["temperature_study"] = temperature_study(
            profile,
            task_loss(vanilla),
            vanilla,
            train_loader,
            accuracy,
            ckpt_dir,
            device,
            progress,
        )
    if not is_main_process():
        return {}  # rank 0 writes and reports
    n = profile.num_points
    data = write_results(out_dir, "classification", "accuracy", True, complete, results, n, **meta)
    plot_metric_vs_ratio(
        data, n, out_dir / "accuracy.png", title=f"Classification ({args.dataset})"
    )
    m = min(profile.train_sizes)
    shown = [("FPS", baselines["fps"])]
    if ("samplenet", m) in fixed:
        shown.append(("SampleNet", samplenet_indices(fixed["samplenet", m])))
    shown.append(("Progressive", samplenet_indices(progressive)))
    render_samples(test_set[0].pos.to(device), shown, m, out_dir / "samples.png")
    print(results_table(data, n))
    print(
        f"wrote {out_dir}/results.json, results.md, accuracy.png, samples.png "
        f"({time.time() - started:.0f} s)"
    )
    return data


def temperature_study(
    profile, task_loss, model, train_loader, accuracy, ckpt_dir, device, progress
) -> dict[str, dict[str, float]]:
    r"""SampleNet-Progressive trained with each temperature profile (Table 1): accuracy of
    :obj:`model` on its first m points (:obj:`accuracy(model, sample)`), per profile and
    m."""
    table = {}
    for kind in TemperatureProfile.KINDS:
        schedule = TemperatureProfile(kind, 1.0, 1e-3, max(1, profile.sampler_epochs))
        sampler = make_sampler(
            profile,
            profile.num_points,
            device,
            progressive=True,
            learn_temperature=schedule.learned,
        )
        ckpt = ckpt_dir / f"progressive_temperature_{kind}.pt"
        train_sampler(
            sampler, profile, task_loss, train_loader, ckpt, device, progress, temperature=schedule
        )
        table[kind] = {
            str(m): accuracy(model, progressive_points(sampler, m)) for m in profile.sizes
        }
    return table


if __name__ == "__main__":
    main()
