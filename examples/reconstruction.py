r"""SampleNet for reconstruction (paper §4.3, Figs. 11 and 12), on PyG batches.

1. Trains the point-cloud autoencoder of Achlioptas et al. on complete clouds of four
   classes with the Chamfer loss.
2. Freezes it and trains, per sample size m, SampleNet and S-NET (SampleNet without the soft
   projection) to sample clouds the autoencoder reconstructs well, and one
   SampleNet-Progressive whose every prefix is such a sample.
3. Evaluates the normalised reconstruction error (NRE) on the test split with FPS, random
   sampling (and the other baselines of tg_samplenet.experiment.baseline_samplers), S-NET,
   SampleNet and SampleNet-Progressive for every m: per cloud,
   CD(AE(sample), complete) / CD(AE(complete), complete), then the mean, overall and per
   class. Writes results.json, results.md, nre.png, samples.png and the checkpoints into
   --out.

    python examples/reconstruction.py                       # built-in shapes, CPU profile
    python examples/reconstruction.py --smoke --out /tmp/r   # whole pipeline in seconds
    python examples/reconstruction.py --dataset shapenet \
        --data-root shape_net_core_uniform_samples_2048 \
        --categories chair table car airplane --profile paper --device cuda

Every stage resumes from its checkpoint in --out/checkpoints: rerunning a finished or
interrupted command continues where it stopped.
"""

from __future__ import annotations

import os

# On CPUs shared with other processes, OpenMP threads that spin while waiting stall each other
# (10x slower steps here); waiting passively costs next to nothing on an idle machine. It only
# takes effect before torch is imported, i.e. when this file runs as a script.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import time
from collections.abc import Callable
from pathlib import Path

import torch
from torch import Tensor
from torch_geometric.loader import DataLoader

from tg_samplenet import SampleNet, chamfer_distance, progressive_loss, samplenet_loss
from tg_samplenet.experiments.common import (
    Profile,
    baseline_samplers,
    common_parser,
    freeze,
    gather_sample,
    learned_samplers,
    load_split,
    resolve_device,
    resolve_profile,
    run_metadata,
    samplenet_indices,
    sampler_factory,
    train_samplers,
)
from tg_samplenet.experiments.fit import fit, seed_everything
from tg_samplenet.experiments.reporting import (
    plot_metric_vs_ratio,
    render_clouds,
    results_table,
    write_results,
)
from tg_samplenet.tasks import PointCloudAE
from tg_samplenet.tasks.metrics import normalized_reconstruction_error, per_class_mean

# extra: the autoencoder's per-point widths before its bottleneck (task_width) and its
# decoder widths; the samplers' per-point and head widths and initial temperature t
# (sigma = t^2). The authors start at t = 1 and train for 400 epochs; Adam moves t by about
# lr per step, so in the CPU profile's few hundred steps sigma would stay near 0.7 and the
# projection would average its k = 16 neighbours almost uniformly, training on points unlike
# the hard samples of inference (SampleNet then lost to S-NET and FPS). It starts at t = 0.1
# (sigma = 0.01, the order of the squared point spacing), still learned.
PROFILES = {
    "smoke": Profile(
        num_points=128,
        sizes=(32, 16, 8),
        train_sizes=(16,),
        samples_per_class=4,
        test_samples_per_class=2,
        task_epochs=2,
        sampler_epochs=2,
        batch_size=8,
        task_lr=5e-4,
        sampler_lr=5e-4,
        task_width=32,
        control_sizes=(8, 16, 32, 64, 128),
        extra=dict(
            encoder_channels=(16, 32),
            decoder_channels=(64,),
            sampler_point_channels=(16, 32),
            sampler_head_channels=(64,),
            initial_temperature=1.0,
        ),
    ),
    "cpu": Profile(
        num_points=512,
        sizes=(256, 128, 64, 32, 16, 8),
        train_sizes=(16,),
        samples_per_class=50,
        test_samples_per_class=25,
        task_epochs=25,
        sampler_epochs=20,
        batch_size=25,
        task_lr=1e-3,
        sampler_lr=1e-3,
        task_width=128,
        control_sizes=(8, 16, 32, 64, 128, 256, 512),
        extra=dict(
            encoder_channels=(64, 128, 128),
            decoder_channels=(256, 256),
            sampler_point_channels=(64, 64, 128),
            sampler_head_channels=(256, 256),
            initial_temperature=0.1,
        ),
    ),
    # The authors' settings (reference §4, Reconstruction): 2048 points, AE 500 epochs,
    # SampleNet 400, Adam 5e-4, batch 50, control sizes 16..2048; the sampler as theirs
    # (per-point 64, 128, 128, 256, 128; head 256, 256).
    "paper": Profile(
        num_points=2048,
        sizes=(1024, 512, 256, 128, 64, 32, 16),
        train_sizes=(1024, 512, 256, 128, 64, 32, 16),
        samples_per_class=500,
        test_samples_per_class=100,
        task_epochs=500,
        sampler_epochs=400,
        batch_size=50,
        task_lr=5e-4,
        sampler_lr=5e-4,
        task_width=128,
        control_sizes=(16, 32, 64, 128, 256, 512, 1024, 2048),
        extra=dict(
            encoder_channels=(64, 128, 128, 256),
            decoder_channels=(256, 256),
            sampler_point_channels=(64, 128, 128, 256, 128),
            sampler_head_channels=(256, 256),
            initial_temperature=1.0,
        ),
    ),
}
# The authors' reconstruction settings (reference §3): a weight |Q|/64 on L_a(P, Q), i.e.
# gamma = 0, delta = 1/64, for SampleNet, S-NET and SampleNet-Progressive alike.
LOSS = dict(alpha=0.01, lmbda=1e-4, gamma=0.0, delta=1.0 / 64)
K = 16
DEFAULT_CATEGORIES = ("chair", "table", "car", "airplane")


def reconstruction_errors(
    ae: PointCloudAE, pos: Tensor, batch: Tensor, target: Tensor, target_batch: Tensor
) -> Tensor:
    r"""The Chamfer distance between the reconstruction of each cloud :obj:`pos` and its
    complete cloud :obj:`target`, :obj:`[B]`."""
    out = ae(pos, batch)
    return chamfer_distance(out.pos, target, out.batch, target_batch, reduction="none")


def nre_summary(
    cd_sampled: Tensor, cd_complete: Tensor, labels: Tensor, classes: list[str]
) -> tuple[float, dict[str, float]]:
    r"""The NRE over all test clouds and per class: each cloud's ratio
    :math:`\mathrm{CD}(\mathrm{AE}(Q), P) / \mathrm{CD}(\mathrm{AE}(P), P)` first, then the
    mean (the authors' evaluation), not the ratio of the mean errors."""
    ratios = normalized_reconstruction_error(cd_sampled, cd_complete, reduction="none")
    by_class = per_class_mean(ratios, labels, len(classes))
    return float(ratios.mean()), {c: float(v) for c, v in zip(classes, by_class, strict=True)}


def evaluate(ae: PointCloudAE, loader: DataLoader, device, sample=None) -> tuple[Tensor, Tensor]:
    r"""The reconstruction error of every test cloud from the points :obj:`sample(pos,
    batch)` takes (all points when :obj:`None`), and the labels."""
    errors, labels = [], []
    with torch.no_grad():
        for data in loader:
            data = data.to(device)
            pos, batch = (data.pos, data.batch) if sample is None else sample(data.pos, data.batch)
            errors.append(reconstruction_errors(ae, pos, batch, data.pos, data.batch))
            labels.append(data.y)
    return torch.cat(errors).cpu(), torch.cat(labels).cpu()


def train_autoencoder(ae, loader, profile, ckpt, device, progress) -> None:
    optimizer = torch.optim.Adam(ae.parameters(), lr=profile.task_lr)

    def train_step(data) -> float:
        ae.train()
        data = data.to(device)
        loss = reconstruction_errors(ae, data.pos, data.batch, data.pos, data.batch).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        return float(loss.detach())

    fit(
        train_step,
        loader,
        profile.task_epochs,
        ckpt,
        {"model": ae, "optimizer": optimizer},
        desc="train autoencoder",
        progress=progress,
    )


def train_sampler(
    sampler: SampleNet,
    ae: PointCloudAE,
    loader,
    profile: Profile,
    ckpt: Path,
    device,
    progress: bool,
) -> None:
    r"""Trains a sampler against the frozen autoencoder: the task loss is the Chamfer
    distance between the reconstruction of the (soft-projected) sample and the complete
    cloud; SampleNet-Progressive averages it over the control sizes, as the authors'
    reconstruction code does."""
    optimizer = torch.optim.Adam(sampler.parameters(), lr=profile.sampler_lr)

    def train_step(data) -> float:
        sampler.train()
        data = data.to(device)
        out = sampler(data.pos, data.batch)

        def task_loss(part) -> Tensor:
            return reconstruction_errors(ae, part.pos, part.batch, data.pos, data.batch).mean()

        if sampler.progressive:
            loss = progressive_loss(
                task_loss,
                out,
                data.pos,
                data.batch,
                profile.control_sizes,
                reduction="mean",
                **LOSS,
            )
        else:
            loss = samplenet_loss(task_loss(out), out, data.pos, data.batch, **LOSS)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        return float(loss.detach())

    fit(
        train_step,
        loader,
        profile.sampler_epochs,
        ckpt,
        {"sampler": sampler, "optimizer": optimizer},
        desc=f"train {ckpt.stem}",
        progress=progress,
    )
    # The sampler alone (config + weights, for SampleNet.load), rewritten only after training.
    export = ckpt.with_suffix(".sampler.pt")
    if not export.exists() or export.stat().st_mtime_ns < ckpt.stat().st_mtime_ns:
        sampler.save(export)


def main(argv: list[str] | None = None) -> dict:
    parser = common_parser(__doc__.split("\n")[0], PROFILES)
    parser.add_argument(
        "--categories",
        nargs="+",
        default=list(DEFAULT_CATEGORIES),
        help="the classes to reconstruct (the paper: chair table car airplane)",
    )
    args = parser.parse_args(argv)
    profile = resolve_profile(args, PROFILES)
    extra = profile.extra
    device = resolve_device(args.device)
    out_dir = Path(args.out or f"runs/reconstruction-{args.profile}")
    ckpt_dir = out_dir / "checkpoints"
    progress = not args.no_progress
    started = time.time()
    seed_everything(args.seed)

    def split(name: str, count: int):
        return load_split(
            args.dataset,
            args.data_root,
            name,
            profile.num_points,
            args.seed,
            count,
            args.categories,
        )

    train_set = split("train", profile.samples_per_class)
    test_set = split("test", profile.test_samples_per_class)
    classes = list(train_set.classes)
    train_loader = DataLoader(train_set, profile.batch_size, shuffle=True, drop_last=True)
    test_loader = DataLoader(test_set, profile.batch_size)
    print(
        f"{args.dataset}: {len(train_set)} training / {len(test_set)} test clouds of "
        f"{', '.join(classes)}, {profile.num_points} points; profile {args.profile}"
    )

    # 1. The autoencoder on complete clouds.
    ae = PointCloudAE(
        profile.num_points,
        (*extra["encoder_channels"], profile.task_width),
        extra["decoder_channels"],
    ).to(device)
    train_autoencoder(ae, train_loader, profile, ckpt_dir / "autoencoder.pt", device, progress)
    freeze(ae)
    complete_cd, labels = evaluate(ae, test_loader, device)
    print(
        f"complete clouds: mean Chamfer distance of the reconstruction {complete_cd.mean():.5f} "
        f"({time.time() - started:.0f} s)"
    )

    # 2. Samplers against the frozen autoencoder.
    fixed, progressive = train_samplers(
        sampler_factory(profile, K, device),
        lambda sampler, ckpt: train_sampler(
            sampler, ae, train_loader, profile, ckpt, device, progress
        ),
        profile.train_sizes,
        profile.num_points,
        ckpt_dir,
    )
    print(f"samplers trained ({time.time() - started:.0f} s)")

    # 3. NRE against the sample size, overall and per class.
    samplers: dict[str, Callable] = dict(baseline_samplers(args.seed))
    nre: dict[str, dict[int, float]] = {}
    per_class: dict[str, dict[str, dict[str, float]]] = {}
    for m in profile.sizes:
        candidates = {**samplers, **learned_samplers(fixed, progressive, m)}
        for name, fn in candidates.items():
            cd, _ = evaluate(ae, test_loader, device, gather_sample(fn, m))
            overall, by_class = nre_summary(cd, complete_cd, labels, classes)
            nre.setdefault(name, {})[m] = overall
            per_class.setdefault(name, {})[str(m)] = by_class

    meta = run_metadata(args, profile, started)
    meta.update(
        categories=classes,
        complete_cd=float(complete_cd.mean()),
        complete_cd_per_class={
            c: float(v)
            for c, v in zip(classes, per_class_mean(complete_cd, labels, len(classes)), strict=True)
        },
        per_class=per_class,
    )
    data = write_results(
        out_dir, "reconstruction", "nre", False, 1.0, nre, num_points=profile.num_points, **meta
    )
    plot_metric_vs_ratio(
        data, profile.num_points, out_dir / "nre.png", title=f"Reconstruction ({args.dataset})"
    )
    render_samples(test_set, ae, fixed, samplers["fps"], profile, out_dir / "samples.png", device)
    table = results_table(data, profile.num_points)
    table += "\n\n" + per_class_table(per_class, classes, min(profile.train_sizes))
    (out_dir / "results.md").write_text(table + "\n")
    print(table)
    print(
        f"wrote {out_dir}/results.json, results.md, nre.png, samples.png "
        f"({time.time() - started:.0f} s)"
    )
    return data


def per_class_table(per_class: dict, classes: list[str], m: int) -> str:
    r"""The per-class NRE of every sampler at size :obj:`m` as a Markdown table."""
    from tg_samplenet.experiments.reporting import markdown_table

    rows = [
        [name] + [row[str(m)][c] for c in classes]
        for name, row in per_class.items()
        if str(m) in row
    ]
    return f"NRE per class at m={m}:\n\n" + markdown_table(["sampler", *classes], rows)


def render_samples(test_set, ae, fixed, fps, profile, path, device) -> None:
    r"""One test cloud with its FPS and SampleNet samples at the smallest trained size, and
    the autoencoder's reconstructions from the complete cloud and from each sample (paper
    Fig. 12)."""
    m = min(profile.train_sizes)
    data = test_set[0].to(device)
    batch = torch.zeros(data.pos.size(0), dtype=torch.long, device=device)
    samplers = [("FPS", fps)] + [
        (label, samplenet_indices(fixed[key, m]))
        for key, label in (("samplenet", "SampleNet"), ("snet", "S-NET"))
        if (key, m) in fixed
    ]
    full = data.pos.cpu().numpy()
    with torch.no_grad():
        panels = [
            ("input", full, None),
            ("reconstruction of the input", ae(data.pos, batch).pos.cpu().numpy(), None),
        ]
        for label, fn in samplers:
            index = fn(data.pos, batch, m)
            recon = ae(data.pos[index], batch[index]).pos.cpu().numpy()
            panels += [
                (f"{label}, {m} points", full, data.pos[index].cpu().numpy()),
                (f"reconstruction from {label}", recon, None),
            ]
    render_clouds(panels, path)


if __name__ == "__main__":
    main()
