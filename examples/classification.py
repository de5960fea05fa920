r"""SampleNet for classification (paper §4.1, Figs. 5 and 6, Table 1), on PyG batches.

1. Trains PointNet (with its input and feature transform nets) and vanilla PointNet on
   complete clouds (the default profile, "quick", trains vanilla PointNet alone).
2. Freezes them and trains, per sample size m, SampleNet and S-NET (SampleNet without the
   soft projection) against PointNet, and one SampleNet-Progressive against vanilla PointNet.
3. Evaluates instance accuracy on the test split with PyG's fps, random sampling, voxel
   grids, S-NET, SampleNet and SampleNet-Progressive (sampled, simplified, soft-projected
   points, and its learned prefix completed by fps) for every m, and writes results.json,
   results.md, accuracy.png, samples.png and the checkpoints into --out.

    python examples/classification.py                       # built-in data, a few minutes
    python examples/classification.py --profile cpu         # the full CPU table
    python examples/classification.py --smoke --out /tmp/c  # the whole pipeline in seconds
    python examples/classification.py --profile cpu-real --dataset h5 \
        --data-root ../shared/data/modelnet10-train --val-fraction 0.2
    python examples/classification.py --dataset h5 --data-root modelnet40_ply_hdf5_2048 \
        --profile paper --device cuda

Every stage resumes from its checkpoint in --out/checkpoints; see --help for torchrun.
"""

import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # reproduction/ beside tg_samplenet/
# Idle OpenMP threads sleep instead of spinning (10x slower steps on shared CPUs): before torch.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import time
from typing import Optional

from torch_geometric.loader import DataLoader

from reproduction.baselines import baseline_samplers
from reproduction.classifiers import num_classifier_stages, train_classifiers
from reproduction.command_line import common_parser, load_splits, start_example
from reproduction.config import CLASSIFICATION
from reproduction.plots import plot_metric_vs_ratio, render_samples
from reproduction.progress import Stages
from reproduction.reporting import example_metadata, results_table, write_results
from reproduction.samplers import (
    PROGRESSIVE_MODES,
    TEMPERATURE_SCHEDULES,
    gather_sample,
    learned_samplers,
    num_sampler_stages,
    progressive_points,
    samplenet_indices,
    temperature_study,
    train_samplers,
)
from reproduction.tasks import PointNet
from reproduction.tasks.classification import classification_loss, evaluate_accuracy
from tg_samplenet.training.distributed import (
    all_reduce_sum,
    is_distributed,
    is_main_process,
    shard_loader,
    training_loader,
)


def main(argv: Optional[list[str]] = None) -> dict:
    parser = common_parser(__doc__.split("\n")[0], CLASSIFICATION, default="quick")
    parser.add_argument(
        "--temperature-study",
        action="store_true",
        help="also train SampleNet-Progressive with each temperature schedule (paper Table 1)",
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
    total = num_classifier_stages(profile) + num_sampler_stages(profile) + 1
    stages = Stages(total + len(TEMPERATURE_SCHEDULES) * args.temperature_study, progress)

    # 1. PointNet with and without its transform nets, on complete clouds.
    pointnet, vanilla = train_classifiers(
        profile, num_classes, task_loader, ckpt_dir, device, progress, stages
    )
    complete, complete_vanilla = accuracy(pointnet), accuracy(vanilla)
    print(f"complete clouds: {complete:.3f}, vanilla PointNet {complete_vanilla:.3f}")

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
        stages=stages,
    )

    # 3. Accuracy against the sample size: (row, m, network, points) per evaluation.
    baselines = baseline_samplers(args.seed)
    evaluations = []
    for m in profile.sizes:
        for name, sample in {**baselines, **learned_samplers(fixed, m)}.items():
            evaluations.append((name, m, pointnet, gather_sample(sample, m)))
        if vanilla is not pointnet:
            evaluations.append(("fps_vanilla", m, vanilla, gather_sample(baselines["fps"], m)))
        for mode in PROGRESSIVE_MODES:
            name = "samplenet_progressive" + ("" if mode == "sampled" else f"_{mode}")
            points = progressive_points(progressive, m, mode, profile.progressive_prefix)
            evaluations.append((name, m, vanilla, points))
    stages(f"evaluate {len(evaluations)} (sampler, m) pairs on {len(test_set)} clouds")
    results: dict[str, dict[int, float]] = {}
    for name, m, model, points in stages.bar(evaluations, "evaluate"):
        results.setdefault(name, {})[m] = accuracy(model, points, whole=name == "random")

    meta = example_metadata("examples/classification.py", argv, args, profile, started)
    meta["complete_vanilla"] = complete_vanilla
    meta["num_evaluated"] = len(test_set)  # for the standard errors of the accuracies
    if args.temperature_study:
        meta["temperature_study"] = temperature_study(
            profile,
            task_loss(vanilla),
            train_loader,
            lambda points: accuracy(vanilla, points),
            ckpt_dir,
            device,
            progress,
            stages,
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


if __name__ == "__main__":
    main()
