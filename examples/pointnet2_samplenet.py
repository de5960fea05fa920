r"""PointNet++ with learned centres in its first set abstraction, against fps: PyG's
PointNet++ (examples/pointnet2_classification.py) with its first layer keeping 1/2 or 1/8 of
the points as centres, for each seed:

- fps: trained with fps;
- joint: trained from scratch with a learned sampler in the first layer (it learns half of
  the centres, farthest point sampling continued from them completes the rest), after the
  sampler has imitated fps for a few epochs (tg_samplenet.training.upgrade_fps,
  train_model=True);
- upgraded: the trained fps model (1/2) with a learned sampler swapped into its first layer
  and fine-tuned, sampler and model (upgrade_fps);
- fps fine-tuned: the same fine-tuning of the fps model with fps, the control of upgraded.

Each model's accuracy and its inference time per batch (the sampler included; the fps
models with the faster of torch-quickfps and tg_samplenet.ops.fps), as mean and spread over
the profile's seeds, in results.json, results.md and accuracy.png under --out.

    python examples/pointnet2_samplenet.py                       # built-in shapes, 3 seeds
    python examples/pointnet2_samplenet.py --smoke --out /tmp/p2  # the pipeline in seconds
    python examples/pointnet2_samplenet.py --profile cpu-real --dataset h5 \
        --data-root ../shared/data/modelnet10-train --val-fraction 0.2  # ~25 min a seed

Three seeds in under an hour on two cores: one one-thread process per seed with the same
--out (OMP_NUM_THREADS=1 ... --seeds 0 &, --seeds 1 &, --seeds 2 &; wait), then the command
once more, which resumes every stage from its checkpoint and writes the table.

Every stage resumes from its checkpoint in --out/checkpoints. fps and radius come from
tg_samplenet.ops, so this runs on PyG 2.8 without pyg-lib.
"""

import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # reproduction/ beside tg_samplenet/
# Idle OpenMP threads sleep instead of spinning (10x slower steps on shared CPUs): before torch.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import time
import warnings
from typing import Optional

from torch_geometric.loader import DataLoader

from reproduction.command_line import common_parser, load_splits, start_example
from reproduction.config import POINTNET2
from reproduction.plots import plot_accuracy_against_time
from reproduction.pointnet2 import run_seed, training_dtype
from reproduction.progress import Stages
from reproduction.reporting import example_metadata, pointnet2_report, seed_summary, write_json

# The learned samplers learn half of the first layer's centres on purpose.
warnings.filterwarnings("ignore", message="SampleNetFPS: asked for")


def main(argv: Optional[list[str]] = None) -> dict:
    parser = common_parser(__doc__.split("\n")[0], POINTNET2)
    parser.add_argument("--seeds", type=int, nargs="+", default=None, help="training seeds")
    args = parser.parse_args(argv)
    prof, device, out_dir, ckpt_dir, progress, started = start_example(args, POINTNET2, "pointnet2")
    seeds = tuple(args.seeds or prof.seeds)

    # One split for every seed (drawn with --seed); the seeds vary the training.
    train_set, val_set, eval_split = load_splits(args, prof)
    val_loader = DataLoader(val_set, prof.batch_size)
    num_classes = len(train_set.classes)
    print(
        f"{args.dataset}: {len(train_set)} training / {len(val_set)} {eval_split} clouds, "
        f"{num_classes} classes, {prof.num_points} points; profile {args.profile}, seeds {seeds}"
    )
    stages = Stages(len(seeds) * (4 * len(prof.first_ratios) + 1), progress)
    dtype = training_dtype(prof, device)

    per_seed, timing_fps = {}, None
    for seed in seeds:
        train_loader = DataLoader(train_set, prof.batch_size, shuffle=True, drop_last=True)
        per_seed[seed], timing_fps = run_seed(
            seed, num_classes, train_loader, val_loader, prof, ckpt_dir, device, progress,
            stages, dtype,
        )  # fmt: skip

    # Mean and spread over the seeds; results.json keeps every seed's values too.
    rows = next(iter(per_seed.values()))
    trained_in = "float32" if dtype is None else str(dtype).removeprefix("torch.")
    summary = dict(seeds=list(seeds), timing_fps=timing_fps, training_dtype=trained_in, rows={})
    for row, by_ratio in rows.items():
        summary["rows"][row] = {
            str(ratio): {
                measure: seed_summary([per_seed[s][row][ratio][measure] for s in seeds])
                for measure in ("accuracy", "ms_per_batch")
            }
            for ratio in by_ratio
        }
    first = str(prof.first_ratios[0])
    summary["reference_ms"] = summary["rows"]["fps"][first]["ms_per_batch"]["mean"]
    meta = example_metadata("examples/pointnet2_samplenet.py", argv, args, prof, started)
    per_seed_json = {str(s): {r: {str(k): v for k, v in c.items()} for r, c in rows_.items()}
                     for s, rows_ in per_seed.items()}  # fmt: skip
    write_json(out_dir / "results.json", dict(summary, per_seed=per_seed_json, **meta))
    markdown = pointnet2_report(summary, prof, f"{args.dataset} ({eval_split}), device {device}")
    (out_dir / "results.md").write_text(markdown)
    plot_accuracy_against_time(summary, out_dir / "accuracy.png")
    print(f"{markdown}\nwrote {out_dir}/results.json, results.md, accuracy.png "
          f"({time.time() - started:.0f} s)")  # fmt: skip
    return summary


if __name__ == "__main__":
    main()
