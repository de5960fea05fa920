r"""SampleNet for reconstruction (paper §4.3, Figs. 11 and 12), on PyG batches.

1. Trains the point-cloud autoencoder of Achlioptas et al. on complete clouds of four
   classes with the Chamfer loss.
2. Freezes it and trains, per sample size m, SampleNet and S-NET (SampleNet without the soft
   projection) to sample clouds the autoencoder reconstructs well, and one
   SampleNet-Progressive whose every prefix is such a sample.
3. Evaluates the normalised reconstruction error (NRE) on the test split with FPS, random
   sampling (and the other baselines of reproduction.baselines), S-NET,
   SampleNet and SampleNet-Progressive for every m: per cloud,
   CD(AE(sample), complete) / CD(AE(complete), complete), then the mean, overall and per
   class. Writes results.json, results.md, nre.png, samples.png and the checkpoints into
   --out.

    python examples/reconstruction.py                       # built-in shapes, CPU profile
    python examples/reconstruction.py --smoke --out /tmp/r   # whole pipeline in seconds
    python examples/reconstruction.py --dataset shapenet \
        --data-root shape_net_core_uniform_samples_2048 \
        --categories chair table car airplane --profile paper --device cuda

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
from reproduction.command_line import common_parser, load_splits, start_example
from reproduction.config import RECONSTRUCTION
from reproduction.plots import plot_metric_vs_ratio, render_samples
from reproduction.progress import Stages
from reproduction.reporting import (
    example_metadata,
    per_class_table,
    results_table,
    write_results,
)
from reproduction.samplers import (
    gather_sample,
    learned_samplers,
    num_sampler_stages,
    samplenet_indices,
    train_samplers,
)
from reproduction.tasks.metrics import per_class_mean
from reproduction.tasks.reconstruction import (
    PointCloudAE,
    evaluate_reconstruction,
    nre_summary,
    reconstruction_errors,
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
    parser = common_parser(__doc__.split("\n")[0], RECONSTRUCTION)
    parser.add_argument(
        "--categories",
        nargs="+",
        default=None,
        help="the classes to reconstruct (default: the profile's, the paper's four)",
    )
    args = parser.parse_args(argv)
    run = start_example(args, RECONSTRUCTION, "reconstruction")
    profile, device, out_dir, ckpt_dir, progress, started = run

    categories = args.categories or list(profile.categories)
    train_set, test_set, eval_split = load_splits(args, profile, categories=categories)
    classes = list(train_set.classes)
    train_loader = training_loader(train_set, profile.batch_size, seed=args.seed)
    test_loader = DataLoader(test_set, profile.batch_size)
    test_shard = shard_loader(test_loader)  # this rank's test batches (all in one process)

    def evaluate(sample=None, whole: bool = False):
        # Per-cloud errors, this rank's share of the test batches gathered (all of them if whole).
        def on(loader):
            return evaluate_reconstruction(ae, loader, device, sample)

        return evaluate_sharded(on, test_loader, test_shard, whole)

    print(
        f"{args.dataset}: {len(train_set)} training / {len(test_set)} {eval_split} clouds of "
        f"{', '.join(classes)}, {profile.num_points} points; profile {args.profile}"
    )
    stages = Stages(1 + num_sampler_stages(profile) + 1, progress)

    # 1. The autoencoder on complete clouds.
    stages(f"train the autoencoder on complete clouds ({profile.task_epochs} epochs)")
    encoder = (*profile.encoder_channels, profile.task_width)
    ae = PointCloudAE(profile.num_points, encoder, profile.decoder_channels).to(device)
    fit_model(
        ae,
        lambda data: reconstruction_errors(ae, data.pos, data.batch, data.pos, data.batch).mean(),
        train_loader,
        epochs=profile.task_epochs,
        lr=profile.task_lr,
        checkpoint=ckpt_dir / "autoencoder.pt",
        device=device,
        progress=progress,
        desc="train autoencoder",
    )
    freeze(ae)
    complete_cd, labels = evaluate()
    print(f"complete clouds: mean Chamfer distance of the reconstruction {complete_cd.mean():.5f}")

    # 2. Samplers against the frozen autoencoder: the task loss is the Chamfer distance
    # between the reconstruction of the (soft-projected) sample and the complete cloud.
    def task_loss(out, data):
        return reconstruction_errors(ae, out.pos, out.batch, data.pos, data.batch).mean()

    fixed, progressive = train_samplers(
        profile, task_loss, train_loader, ckpt_dir, device, progress, stages=stages
    )

    # 3. NRE against the sample size, overall and per class.
    baselines = baseline_samplers(args.seed)
    evaluations = [
        (name, m, sample)
        for m in profile.sizes
        for name, sample in {**baselines, **learned_samplers(fixed, m, progressive)}.items()
    ]
    stages(f"evaluate {len(evaluations)} (sampler, m) pairs on {len(test_set)} clouds")
    nre: dict[str, dict[int, float]] = {}
    per_class: dict[str, dict[str, dict[str, float]]] = {}
    for name, m, sample in stages.bar(evaluations, "evaluate"):
        cd, _ = evaluate(gather_sample(sample, m), whole=name == "random")
        overall, by_class = nre_summary(cd, complete_cd, labels, classes)
        nre.setdefault(name, {})[m] = overall
        per_class.setdefault(name, {})[str(m)] = by_class

    meta = example_metadata("examples/reconstruction.py", argv, args, profile, started)
    complete_per_class = per_class_mean(complete_cd, labels, len(classes))
    meta.update(
        categories=classes,
        complete_cd=float(complete_cd.mean()),
        complete_cd_per_class={c: float(v) for c, v in zip(classes, complete_per_class)},
        per_class=per_class,
    )
    if not is_main_process():
        return {}  # rank 0 writes and reports
    n = profile.num_points
    data = write_results(out_dir, "reconstruction", "nre", False, 1.0, nre, n, **meta)
    plot_metric_vs_ratio(data, n, out_dir / "nre.png", title=f"Reconstruction ({args.dataset})")
    m = min(profile.train_sizes)
    shown = [("FPS", baselines["fps"])] + [
        (label, samplenet_indices(fixed[key, m]))
        for key, label in (("samplenet", "SampleNet"), ("snet", "S-NET"))
        if (key, m) in fixed
    ]
    render_samples(
        test_set[0].pos.to(device),
        shown,
        m,
        out_dir / "samples.png",
        reconstruct=lambda pos, batch: ae(pos, batch).pos,
    )
    table = results_table(data, n) + "\n\n" + per_class_table(per_class, classes, m)
    (out_dir / "results.md").write_text(table + "\n")
    print(table)
    print(
        f"wrote {out_dir}/results.json, results.md, nre.png, samples.png "
        f"({time.time() - started:.0f} s)"
    )
    return data


if __name__ == "__main__":
    main()
