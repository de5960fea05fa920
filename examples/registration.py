r"""SampleNet for registration (paper §4.2, Figs. 9 and 10), on PyG batches.

1. Makes template/source pairs of one class: each source is its template rotated by Euler
   angles drawn from [-45, 45] degrees (seeded); many rotations of every training shape, a
   fixed set of pairs of the test shapes.
2. Trains PCRNet (single pass) on complete clouds with the loss
   ||R_est R_gt^T - I||_F^2 + CD(source, R_est template).
3. Freezes it and trains, per sample size m, one SampleNet and one S-NET that sample both
   clouds of a pair (the same weights), and one SampleNet-Progressive (not in the paper).
4. Evaluates FPS (from a random start point, the authors' baseline), random and voxel-grid
   sampling, S-NET, SampleNet and SampleNet-Progressive at every m: the mean rotation error
   (MRE, degrees) and the sampling consistency (Chamfer distance between the sampled template
   and the sampled source rotated back); writes results.json, results.md,
   rotation_error.png, samples.png and the checkpoints into --out.

The MRE here is the geodesic angle itself; the authors' code reports twice that angle
(2 acos(2 <q_est, q_gt>^2 - 1)), so its numbers, and perhaps the paper's, are doubled.

    python examples/registration.py                        # built-in "car" shapes, CPU profile
    python examples/registration.py --smoke --out /tmp/r    # whole pipeline in seconds
    python examples/registration.py --dataset h5 --data-root modelnet40_ply_hdf5_2048 \
        --category car --profile paper --device cuda

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

import torch
from torch_geometric.loader import DataLoader

from reproduction.baselines import baseline_samplers
from reproduction.command_line import common_parser, load_splits, start_example
from reproduction.config import REGISTRATION
from reproduction.plots import plot_metric_vs_ratio, render_registration
from reproduction.progress import Stages
from reproduction.reporting import consistency_table, example_metadata, results_table, write_results
from reproduction.samplers import (
    gather_sample,
    learned_samplers,
    num_sampler_stages,
    samplenet_indices,
    train_samplers,
)
from reproduction.tasks.registration import (
    PCRNet,
    evaluate_registration,
    make_pairs,
    random_start_fps,
    registration_loss,
)
from tg_samplenet import freeze
from tg_samplenet.training import fit_model
from tg_samplenet.training.distributed import (
    evaluate_sharded,
    is_main_process,
    shard_loader,
    training_loader,
)


def main(argv: Optional[list[str]] = None) -> dict:
    parser = common_parser(__doc__.split("\n")[0], REGISTRATION)
    parser.add_argument(
        "--category", default="car", help="the one class whose shapes are registered (paper: car)"
    )
    args = parser.parse_args(argv)
    run = start_example(args, REGISTRATION, "registration")
    profile, device, out_dir, ckpt_dir, progress, started = run

    # Seeds as the authors': training pairs from seed s, test pairs from seed s + 1.
    train_shapes, test_shapes, eval_split = load_splits(args, profile, categories=[args.category])
    degrees = profile.max_degrees
    train_pairs = make_pairs(train_shapes, profile.rotations_per_shape, args.seed, degrees)
    test_pairs = make_pairs(test_shapes, profile.test_rotations_per_shape, args.seed + 1, degrees)
    loader_args = dict(batch_size=profile.batch_size, follow_batch=["source"])
    train_loader = training_loader(train_pairs, seed=args.seed, **loader_args)
    test_loader = DataLoader(test_pairs, **loader_args)
    test_shard = shard_loader(test_loader)  # this rank's test batches (all in one process)

    def evaluate(sample=None, whole: bool = False):
        # Per-pair errors, this rank's share of the test batches gathered (all of them if whole).
        def on(loader):
            return evaluate_registration(pcrnet, loader, device, sample)

        return evaluate_sharded(on, test_loader, test_shard, whole)

    print(
        f"{args.dataset} {args.category}: {len(train_pairs)} training pairs "
        f"({len(train_shapes)} shapes), {len(test_pairs)} {eval_split} pairs, "
        f"{profile.num_points} points; profile {args.profile}"
    )
    stages = Stages(1 + num_sampler_stages(profile) + 1, progress)

    # 1. PCRNet on complete clouds.
    stages(f"train PCRNet on complete clouds ({profile.task_epochs} epochs)")
    pcrnet = PCRNet(profile.point_channels, profile.task_width, profile.head_channels).to(device)
    fit_model(
        pcrnet,
        lambda data: registration_loss(
            pcrnet, data.pos, data.source, data.batch, data.source_batch, data.rotation
        ),
        train_loader,
        epochs=profile.task_epochs,
        lr=profile.task_lr,
        checkpoint=ckpt_dir / "pcrnet.pt",
        device=device,
        progress=progress,
        desc="train pcrnet",
    )
    freeze(pcrnet)
    complete_errors, _ = evaluate()
    print(f"complete clouds: MRE {complete_errors.mean():.2f} degrees")

    # 2. SampleNet and S-NET per size, and one SampleNet-Progressive, against the frozen
    # PCRNet. One sampler samples templates and sources as one batch of 2B clouds: the
    # simplification loss is the mean of both, lambda * sigma counts once (as the authors').
    def both_clouds(data):
        B = data.num_graphs
        pos = torch.cat([data.pos, data.source])
        return pos, torch.cat([data.batch, data.source_batch + B]), 2 * B

    def task_loss(out, data):
        B = data.num_graphs
        source = out.batch >= B
        return registration_loss(
            pcrnet,
            out.pos[~source],
            out.pos[source],
            out.batch[~source],
            out.batch[source] - B,
            data.rotation,
        )

    fixed, progressive = train_samplers(
        profile, task_loss, train_loader, ckpt_dir, device, progress, both_clouds, stages=stages
    )

    # 3. Rotation error and consistency against the sample size.
    samplers = {**baseline_samplers(args.seed), "fps": random_start_fps(args.seed)}
    drawing = {"random", "fps"}  # one generator across all calls each
    evaluations = [
        (name, m, sample)
        for m in profile.sizes
        for name, sample in {**samplers, **learned_samplers(fixed, m, progressive)}.items()
    ]
    stages(f"evaluate {len(evaluations)} (sampler, m) pairs on {len(test_pairs)} pairs")
    mre: dict[str, dict[int, float]] = {}
    consistency: dict[str, dict[str, float]] = {}
    for name, m, sample in stages.bar(evaluations, "evaluate"):
        errors, cons = evaluate(gather_sample(sample, m), whole=name in drawing)
        mre.setdefault(name, {})[m] = float(errors.mean())
        consistency.setdefault(name, {})[str(m)] = float(cons.mean())

    meta = example_metadata("examples/registration.py", argv, args, profile, started)
    meta.update(
        category=args.category,
        num_train_pairs=len(train_pairs),
        num_test_pairs=len(test_pairs),
        consistency=consistency,
        complete_std=float(complete_errors.std()),
    )
    if not is_main_process():
        return {}  # rank 0 writes and reports
    n = profile.num_points
    data = write_results(
        out_dir, "registration", "mre_deg", False, float(complete_errors.mean()), mre, n, **meta
    )
    title = f"Registration ({args.dataset} {args.category})"
    plot_metric_vs_ratio(data, n, out_dir / "rotation_error.png", title=title)
    trained = sorted(m for name, m in fixed if name == "samplenet")
    m = trained[0] if trained else min(profile.sizes)
    shown = [("FPS", samplers["fps"])]
    shown += [("SampleNet", samplenet_indices(fixed["samplenet", m]))] if trained else []
    pair = test_pairs[0].to(device)
    render_registration(
        pair.pos,
        pair.source,
        lambda template, source: pcrnet(template, source).rotation[0],
        shown,
        m,
        out_dir / "samples.png",
    )
    table = results_table(data, n) + "\n\n" + consistency_table(consistency, n)
    (out_dir / "results.md").write_text(table + "\n")
    print(table)
    print(
        f"wrote {out_dir}/results.json, results.md, rotation_error.png, samples.png "
        f"({time.time() - started:.0f} s)"
    )
    return data


if __name__ == "__main__":
    main()
