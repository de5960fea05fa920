r"""PointNet++ with learned sampling: every fps of its set-abstraction layers is a SampleNet
trained jointly with the network, against the same PointNet++ with fps, on the same data and
seed (the model of PyG's examples/pointnet2_classification.py).

1. Trains PointNet++ with fps, and PointNet++ whose set-abstraction layers sample with their
   own SampleNet (task loss plus each sampler's simplification and projection losses). A
   layer's centres are the sampler's hard samples in training as in eval; in training their
   gradient is that of the soft projection (straight-through: trained on the soft centres
   themselves, the network relies on their off-surface positions and fails on hard ones).
2. The drop-in: freezes the fps model, trains a SampleNet-Progressive for its input with
   tg_samplenet.fit_sampler and swaps it in for the fps of both layers (SampleNetFPS), with
   the first layer keeping 1/2 (as trained), 1/8 and 1/32 of its input; and the model on
   inputs shrunk to the profile's sizes by fps or by the progressive sampler.
3. Writes results.json, results.md (accuracy, seconds per training epoch, milliseconds per
   inference batch), accuracy.png and the checkpoints into --out.

    python examples/pointnet2_samplenet.py                       # built-in data, CPU profile
    python examples/pointnet2_samplenet.py --smoke --out /tmp/p2  # the pipeline in seconds
    python examples/pointnet2_samplenet.py --dataset modelnet10 --data-root data/ModelNet10 \
        --profile paper --device cuda
    torchrun --nproc_per_node 4 examples/pointnet2_samplenet.py --profile paper --device cuda

radius and fps come from tg_samplenet's own back-end (torch_cluster, pyg-lib or plain torch),
so this runs on PyG 2.8 without pyg-lib, where torch_geometric.nn.fps and radius raise
ImportError. Every stage resumes from its checkpoint in --out/checkpoints; see --help for
torchrun (each global batch split over the processes, only rank 0 writes).
"""

import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # reproduction/ beside tg_samplenet/
# Idle OpenMP threads sleep instead of spinning (10x slower steps on shared CPUs): before torch.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import math
import time
from typing import Optional

import torch.nn.functional as F
from torch_geometric.loader import DataLoader

from reproduction.command_line import common_parser, load_splits, start_example
from reproduction.config import POINTNET2
from reproduction.plots import plot_training
from reproduction.pointnet2 import (
    accuracy,
    build_pointnet2,
    dropin,
    ms_per_batch,
    seconds_per_epoch,
    train_pointnet2,
)
from reproduction.progress import Stages
from reproduction.reporting import example_metadata, pointnet2_report, write_results
from reproduction.samplers import make_sampler
from tg_samplenet import fit_sampler, freeze
from tg_samplenet.training import seed_everything
from tg_samplenet.training.distributed import is_main_process, shard_loader, training_loader


def main(argv: Optional[list[str]] = None) -> dict:
    parser = common_parser(__doc__.split("\n")[0], POINTNET2)
    args = parser.parse_args(argv)
    prof, device, out_dir, ckpt_dir, progress, started = start_example(args, POINTNET2, "pointnet2")

    train_set, test_set, eval_split = load_splits(args, prof)
    train_loader = training_loader(train_set, prof.batch_size, seed=args.seed)
    test_loader = DataLoader(test_set, prof.batch_size)
    test_shard = shard_loader(test_loader)  # this rank's test batches (all in one process)
    num_classes = len(train_set.classes)
    print(
        f"{args.dataset}: {len(train_set)} training / {len(test_set)} {eval_split} clouds, "
        f"{num_classes} classes, {prof.num_points} points; profile {args.profile}"
    )
    stages = Stages(4, progress)

    # 1. PointNet++ with fps and with jointly trained samplers: same data, seed and schedule.
    models, histories, timing = {}, {}, {}
    for name, learned in (("pointnet2_fps", False), ("pointnet2_samplenet", True)):
        stages(f"train {name} ({prof.task_epochs} epochs), then time it")
        seed_everything(args.seed)
        model = models[name] = build_pointnet2(num_classes, prof, learned).to(device)
        seed_everything(args.seed)  # the same batches in the same order for both
        histories[name] = train_pointnet2(
            model, train_loader, prof, ckpt_dir / f"{name}.pt", device, progress
        )
        timing[name] = {
            "seconds_per_train_epoch": seconds_per_epoch(model, train_loader, prof, device),
            "ms_per_inference_batch": ms_per_batch(model, next(iter(test_loader)).to(device)),
        }
    kept = math.ceil(prof.num_points * prof.ratios[0])
    results = {
        name: {kept: accuracy(model, test_loader, test_shard, device, whole=name.endswith("fps"))}
        for name, model in models.items()
    }

    # 2. The drop-in: a progressive sampler for the frozen fps model's input, swapped in.
    stages(f"train SampleNet-Progressive for the fps model ({prof.sampler_epochs} epochs)")
    fps_model = freeze(models["pointnet2_fps"])
    progressive = make_sampler(prof, prof.num_points, device, progressive=True)
    fit_sampler(
        progressive,
        lambda out, data: F.nll_loss(fps_model(out.pos, out.batch)[0], data.y),
        train_loader,
        epochs=prof.sampler_epochs,
        lr=prof.sampler_lr,
        loss_weights=prof.progressive_loss,
        control_sizes=prof.control_sizes,
        lr_schedule=prof.lr_schedule,
        checkpoint=ckpt_dir / "samplenet_progressive.pt",
        device=device,
        progress=progress,
    )
    stages("evaluate the fps model with the sampler swapped in")
    results.update(dropin(fps_model, progressive, test_loader, test_shard, prof, device))

    # 3. Results, table, plot: rank 0 writes and reports.
    if not is_main_process():
        return {}
    meta = example_metadata("examples/pointnet2_samplenet.py", argv, args, prof, started)
    meta.update(timing=timing, loss_history=histories)
    complete = results["pointnet2_fps"][kept]
    data = write_results(out_dir, "pointnet2", "accuracy", True, complete, results, **meta)
    markdown = pointnet2_report(results, timing, prof, f"{args.dataset}, device {device}")
    (out_dir / "results.md").write_text(markdown)
    plot_training(data, histories, prof.num_points, out_dir / "accuracy.png")
    print(f"{markdown}\nwrote {out_dir}/results.json, results.md, accuracy.png "
          f"({time.time() - started:.0f} s)")  # fmt: skip
    return data


if __name__ == "__main__":
    main()
