r"""The study of docs/real-data-study.md on any data set: what the step from
SampleNet's simplified points to a subset of the input costs, measured on the evaluation
split.

1. Trains (or reuses) PointNet and vanilla PointNet on complete clouds as
   examples/classification.py does; evaluates complete clouds, FPS and random sampling.
2. Trains the study's samplers with the profile (``reproduction.samplers.train_sampler``):
   SampleNet and S-NET at the profile's smallest train size against PointNet,
   SampleNet-Progressive against vanilla PointNet, and on request SampleNet variants with
   one change each (alpha, lambda, k, a constant learning rate). Every ``--eval-every``
   epochs it logs t, sigma, the accuracy of the soft-projected points on the training
   batches and the evaluation below.
3. Evaluates each sampler at every size m as
   ``hard`` (its inference: nearest input point, de-duplication, FPS completion),
   ``distinct`` (the matching without duplicates, ``ops.distinct_sample``),
   ``simplified`` (the simplified points Q, not a subset of the input),
   ``projected`` (Q soft-projected at the learned sigma) and
   ``nearest_with_repeats`` (each q's nearest input point, repeats kept: not a valid
   sample), with the share of the first m simplified points whose match repeats an earlier
   one (what de-duplication removes), the share of the sample that FPS completion refills,
   the mean top soft-projection weight and the mean squared distance of Q to the cloud.
   For the progressive sampler also ``prefixL``: its first L learned points (distinct),
   then farthest point sampling, for each L below m.

    python benchmarks/real_data_study.py                        # built-in data, CPU profile
    python benchmarks/real_data_study.py --smoke --out /tmp/s   # seconds
    python benchmarks/real_data_study.py --profile cpu-real --dataset h5 \
        --data-root ../shared/data/modelnet10-train --val-fraction 0.2 --variants all

Networks and samplers resume from their checkpoints in ``--runs``; pointed at the ``--out``
folder of examples/classification.py run with the same profile, data and seed, the study
reuses what the example trained and only evaluates it (no per-epoch log then). Outputs in
``--out``: real_data_study.json, real_data_study.md and real_data_study.png.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # reproduction/ beside tg_samplenet/

import os

# Idle OpenMP threads sleep (see reproduction.command_line). Before torch.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import json
from collections import defaultdict
from dataclasses import asdict, replace
from typing import Any, Callable, Optional

import torch
from torch_geometric.loader import DataLoader
from tqdm import tqdm

from reproduction.baselines import baseline_samplers
from reproduction.classifiers import train_classifiers
from reproduction.command_line import (
    common_parser,
    load_splits,
    resolve_device,
    resolve_profile,
)
from reproduction.config import CLASSIFICATION, ClassificationProfile
from reproduction.environment import run_metadata
from reproduction.plots import plot_metric_vs_ratio
from reproduction.reporting import markdown_table, metadata_markdown
from reproduction.samplers import gather_sample, make_sampler, train_sampler
from reproduction.tasks import PointNet
from reproduction.tasks.classification import classification_loss, evaluate_accuracy
from tg_samplenet import SampleNet
from tg_samplenet.ops import distinct_sample, hard_sample
from tg_samplenet.ops.batch import cloud_sizes, rank_in_cloud
from tg_samplenet.training import seed_everything
from tg_samplenet.training.distributed import training_loader

ROOT = Path(__file__).resolve().parents[1]
# name: (kind, changes). Loss weights (alpha, lmbda) change SampleNet's loss (the profile's
# projected_loss, or its fixed_loss); the other changes are profile fields. The first three
# are the example's samplers.
VARIANTS: dict[str, tuple[str, dict[str, Any]]] = {
    "samplenet": ("samplenet", {}),
    "snet": ("snet", {}),
    "progressive": ("progressive", {}),
    "lambda10": ("samplenet", {"lmbda": 10.0}),
    "lambda0": ("samplenet", {"lmbda": 0.0}),
    "alpha3": ("samplenet", {"alpha": 3.0}),
    "alpha30": ("samplenet", {"alpha": 30.0}),  # the paper's, shared with S-NET
    "k16": ("samplenet", {"k": 16}),
    "constant_lr": ("samplenet", {"lr_schedule": "constant"}),
    # SampleNet's own (the paper's) widths, for profiles that narrow the sampler.
    "paper_widths": (
        "samplenet",
        {
            "sampler_point_channels": (64, 64, 64, 128, 128),
            "sampler_head_channels": (256, 256, 256),
        },
    ),
}
DEFAULT_VARIANTS = ("samplenet", "snet", "progressive")
MODES = ("hard", "projected", "simplified")  # the per-epoch log's readings
PREFIXES = (4, 8, 16, 32, 64, 128, 256)  # learned points kept before FPS takes over
LOSS_FIELDS = ("alpha", "lmbda")


def variant_profile(
    profile: ClassificationProfile, changes: dict[str, Any], epochs: Optional[int]
) -> ClassificationProfile:
    r"""The profile with a variant's :obj:`changes` (and :obj:`epochs`, if given)."""
    loss = {k: v for k, v in changes.items() if k in LOSS_FIELDS}
    fields = {k: v for k, v in changes.items() if k not in LOSS_FIELDS}
    if epochs is not None:
        fields["sampler_epochs"] = epochs
    if loss:
        fields["projected_loss"] = replace(profile.projected_loss or profile.fixed_loss, **loss)
    return replace(profile, **fields)


class _Observed:
    r"""A training loader that tells the study where training is: the current batch (for
    the accuracy of the soft-projected points) and the end of every epoch. It hands
    :func:`~tg_samplenet.fit_sampler` what it reads of a loader (length, batch size, batch
    sampler) and forwards the epoch :func:`~tg_samplenet.training.fit` sets."""

    def __init__(self, loader: DataLoader, on_epoch_end: Callable[[int], None]):
        self.loader, self.on_epoch_end = loader, on_epoch_end
        self.batch_size, self.batch_sampler = loader.batch_size, loader.batch_sampler
        self.sampler, self.epoch, self.current = self, 0, None
        self.inner = loader.sampler

    def set_epoch(self, epoch: int):
        self.epoch = epoch
        if hasattr(self.inner, "set_epoch"):
            self.inner.set_epoch(epoch)

    def __len__(self) -> int:
        return len(self.loader)

    def __iter__(self):
        for data in self.loader:
            self.current = data
            yield data
        self.on_epoch_end(self.epoch)


@torch.no_grad()
def evaluate_sampler(
    sampler: SampleNet,
    model: PointNet,
    loader: DataLoader,
    sizes: tuple[int, ...],
    device: torch.device,
    prefixes: tuple[int, ...] = (),
    progress: bool = False,
) -> dict[str, Any]:
    r"""The accuracy of :obj:`model` on each of the study's readings of :obj:`sampler`'s
    output at every size in :obj:`sizes` (see the module docstring), and the duplicate,
    refill, top-weight and distance figures. The sampler runs once per batch."""
    training = sampler.training
    sampler.eval()
    correct: dict[str, dict[int, int]] = defaultdict(lambda: defaultdict(int))
    repeats, refilled = defaultdict(int), defaultdict(int)
    total = top_weight = q_dist = num_q = 0.0
    for data in tqdm(loader, desc=f"evaluate {sampler.num_out_points}", disable=not progress):
        data = data.to(device)
        pos, batch, y, B = data.pos, data.batch, data.y, data.num_graphs
        out = sampler(pos, batch)
        q, q_batch = out.simplified, out.simplified_batch
        projected = sampler.projection(pos, q, batch, q_batch)
        nearest = projected.neighbors[:, 0]
        top_weight += float(projected.weights.max(1).values.sum())
        q_dist += float((q - pos[nearest]).pow(2).sum(1).sum())
        num_q += q.size(0)
        rank = rank_in_cloud(q_batch, B)
        n = cloud_sizes(batch, B)
        for m in sizes:
            counts = n.clamp(max=m)
            first = rank < m
            index = {
                "hard": hard_sample(pos, batch, q, q_batch, counts),
                "distinct": distinct_sample(pos, batch, q, q_batch, counts),
                "nearest_with_repeats": nearest[first],
            }
            for length in prefixes:
                if length < m:
                    index[f"prefix{length}"] = distinct_sample(
                        pos, batch, q, q_batch, counts, max_matched=length
                    )
            points = {name: (pos[i], batch[i]) for name, i in index.items()}
            points["simplified"] = (q[first], q_batch[first])
            points["projected"] = (projected.pos[first], q_batch[first])
            for name, (p, b) in points.items():
                correct[name][m] += int((model(p, b).argmax(-1) == y).sum())
            # Indices into pos: those of different clouds never coincide.
            repeats[m] += nearest[first].numel() - nearest[first].unique().numel()
            matched = hard_sample(pos, batch, q, q_batch, counts, complete=False)
            refilled[m] += int(counts.sum()) - matched.numel()
        total += B
    sampler.train(training)
    m_total = {m: total * m for m in sizes}
    return {
        "accuracy": {
            name: {str(m): c / total for m, c in row.items()} for name, row in correct.items()
        },
        "duplicates": {str(m): repeats[m] / m_total[m] for m in sizes},
        "refilled": {str(m): refilled[m] / m_total[m] for m in sizes},
        "top_weight": top_weight / num_q,
        "q_to_cloud_sq": q_dist / num_q,
        "temperature": float(sampler.projection.temperature.detach()),
        "sigma": float(sampler.projection.sigma.detach()),
    }


def train_task_networks(args, profile, train_set, ckpt_dir, device, progress) -> dict:
    r"""PointNet and vanilla PointNet trained on complete clouds as the example trains them
    (resumed from the example's checkpoint names), frozen."""
    loader = training_loader(
        train_set, profile.task_batch_size or profile.batch_size, seed=args.seed
    )
    networks = train_classifiers(
        profile, len(train_set.classes), loader, ckpt_dir, device, progress
    )
    return dict(zip(("pointnet", "pointnet_vanilla"), networks))


def study_sampler(
    name: str,
    args,
    profile: ClassificationProfile,
    networks: dict,
    train_set,
    eval_loader: DataLoader,
    ckpt_dir: Path,
    device: torch.device,
    progress: bool,
) -> dict[str, Any]:
    r"""Trains (or resumes) one variant, logging every :obj:`--eval-every` epochs, and
    evaluates it at every size of the profile."""
    kind, changes = VARIANTS[name]
    m = min(profile.train_sizes)
    epochs = args.variant_epochs if name not in DEFAULT_VARIANTS else None
    settings = variant_profile(profile, changes, epochs)
    progressive = kind == "progressive"
    model = networks["pointnet_vanilla" if progressive else "pointnet"]
    sampler = make_sampler(
        settings,
        settings.num_points if progressive else m,
        device,
        progressive=progressive,
        skip_projection=kind == "snet",
    )
    if progressive:
        checkpoint = ckpt_dir / "samplenet_progressive.pt"
    elif name in DEFAULT_VARIANTS:
        checkpoint = ckpt_dir / f"{kind}_{m}.pt"  # the example's names: its runs are reused
    else:
        checkpoint = ckpt_dir / f"samplenet_{m}_{name}_{settings.sampler_epochs}ep.pt"
    # During training: the soft-projected points' accuracy at size m (progressive: at its
    # smallest control size of at least m) and the evaluation at the sizes up to 128.
    watched = min((c for c in settings.control_sizes if c >= m), default=m) if progressive else m
    log_sizes = tuple(s for s in profile.sizes if s <= 128) if progressive else (m,)
    epochs_log: list[dict[str, Any]] = []
    hits = {"correct": 0, "total": 0, "on": True}

    def count(module, inputs, output):
        pos = inputs[0]
        data = loader.current
        if hits["on"] and data is not None and pos.size(0) == data.num_graphs * watched:
            logits = output[0] if isinstance(output, tuple) else output
            hits["correct"] += int((logits.argmax(-1) == data.y.to(logits.device)).sum())
            hits["total"] += data.num_graphs

    def on_epoch_end(epoch: int):
        entry = {
            "epoch": epoch + 1,
            "temperature": float(sampler.projection.temperature.detach()),
            "sigma": float(sampler.projection.sigma.detach()),
            "train_soft_accuracy": hits["correct"] / max(hits["total"], 1),
        }
        hits.update(correct=0, total=0)
        last = epoch + 1 == settings.sampler_epochs
        if args.eval_every and ((epoch + 1) % args.eval_every == 0 or last):
            hits["on"] = False
            with torch.random.fork_rng():  # evaluating leaves training's generators as they were
                entry.update(evaluate_sampler(sampler, model, eval_loader, log_sizes, device))
            hits["on"] = True
        epochs_log.append(entry)

    loader = _Observed(
        training_loader(train_set, settings.batch_size, seed=args.seed), on_epoch_end
    )
    handle = model.register_forward_hook(count)

    def task_loss(out, data):
        return classification_loss(model, out.pos, out.batch, data.y)

    try:
        train_sampler(sampler, settings, task_loss, loader, checkpoint, device, progress)
    finally:
        handle.remove()
    prefixes = tuple(p for p in PREFIXES if p < settings.num_points) if progressive else ()
    sizes = profile.sizes if progressive else (m,)
    final = evaluate_sampler(sampler, model, eval_loader, sizes, device, prefixes, progress)
    return {
        "kind": kind,
        "m": settings.num_points if progressive else m,
        "task_network": "pointnet_vanilla" if progressive else "pointnet",
        "changes": changes,
        "sampler_epochs": settings.sampler_epochs,
        "checkpoint": str(checkpoint),
        "epochs": epochs_log,
        "log_size": m if m in log_sizes else min(log_sizes),
        "final": final,
    }


def main_table(report: dict[str, Any]) -> dict[str, dict[str, float]]:
    r"""The rows of the study's first table: baselines on both networks, S-NET and
    SampleNet (hard and distinct), the progressive sampler's readings."""
    rows: dict[str, dict[str, float]] = {}
    for net, suffix in (("pointnet", ""), ("pointnet_vanilla", " (vanilla)")):
        for name, row in report["baselines"][net].items():
            rows[name + suffix] = row
    for name, study in report["samplers"].items():
        acc = study["final"]["accuracy"]
        modes = ("hard", "distinct", "prefix32", "simplified", "projected")
        for mode in modes if study["kind"] == "progressive" else ("hard", "distinct"):
            if mode in acc:
                suffix = " (vanilla)" if study["kind"] == "progressive" else ""
                rows[f"{name}, {mode}{suffix}"] = acc[mode]
    return rows


def table_rows(report: dict[str, Any], sizes: tuple[int, ...]) -> list[list[Any]]:
    r"""The main table's rows, one column per size (a dash where not measured)."""
    return [
        [name] + [float(values.get(str(m), float("nan"))) for m in sizes]
        for name, values in report["results"].items()
    ]


def plot_panels(report: dict[str, Any], num_points: int, path: Path):
    r"""Accuracy against the sampling ratio: PointNet's samplers on the left, vanilla
    PointNet's (the progressive sampler's network) on the right."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    for ax, net, title in zip(
        axes, ("pointnet", "pointnet_vanilla"), ("PointNet", "vanilla PointNet")
    ):
        vanilla = net == "pointnet_vanilla"
        rows = {k: v for k, v in report["results"].items() if k.endswith("(vanilla)") == vanilla}
        data = {"metric": "accuracy", "complete": report["complete"][net], "results": rows}
        plot_metric_vs_ratio(data, num_points, path, ax=ax, title=title)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def report_markdown(report: dict[str, Any], sizes: tuple[int, ...]) -> str:
    r"""The study as Markdown: run description, the main table, per-sampler mechanism
    tables and the per-epoch log."""
    header = ["m"] + [str(m) for m in sizes]

    def row(name: str, values: dict[str, float]) -> list[Any]:
        return [name] + [float(values.get(str(m), float("nan"))) for m in sizes]

    complete = report["complete"]
    parts = [
        "# Real-data study: the step from simplified points to a sample",
        metadata_markdown(report["meta"]),
        f"Evaluated on the {report['evaluated_on']} split ({report['eval_clouds']} clouds). "
        f"Complete clouds: PointNet {complete['pointnet']:.4g}, vanilla PointNet "
        f"{complete['pointnet_vanilla']:.4g}.",
        "## Accuracy\n\n" + markdown_table(header, table_rows(report, sizes)),
    ]
    for name, study in report["samplers"].items():
        final = study["final"]
        rows = [row(mode, values) for mode, values in final["accuracy"].items()]
        rows += [row("duplicates removed (share of m)", final["duplicates"])]
        rows += [row("refilled by FPS (share of m)", final["refilled"])]
        parts.append(
            f"## {name} ({study['kind']}, m = {study['m']}, {study['sampler_epochs']} epochs, "
            f"changes {study['changes'] or 'none'})\n\n"
            f"t {final['temperature']:.4g}, sigma {final['sigma']:.3g}, mean top weight "
            f"{final['top_weight']:.3g}, mean squared q-to-cloud distance "
            f"{final['q_to_cloud_sq']:.3g}.\n\n" + markdown_table(header, rows)
        )
        if study["epochs"]:
            keys = ("temperature", "sigma", "train_soft_accuracy", "top_weight")
            m = str(study["log_size"])
            log = [
                [e["epoch"]]
                + [float(e.get(k, float("nan"))) for k in keys]
                + [e["accuracy"][mode][m] if "accuracy" in e else float("nan") for mode in MODES]
                for e in study["epochs"]
            ]
            parts.append(
                f"Per epoch (the evaluation at m = {m}):\n\n"
                + markdown_table(["epoch", *keys, *MODES], log)
            )
    return "\n\n".join(parts) + "\n"


def main(argv: Optional[list[str]] = None) -> dict[str, Any]:
    parser = common_parser(__doc__.split("\n")[0], CLASSIFICATION)
    parser.set_defaults(out=str(ROOT / "benchmarks" / "results"))
    parser.add_argument(
        "--runs", default=None, help="checkpoints (default: runs/real_data_study-<profile>)"
    )
    parser.add_argument(
        "--variants",
        nargs="+",
        default=list(DEFAULT_VARIANTS),
        choices=[*VARIANTS, "all"],
        help="samplers to study",
    )
    parser.add_argument(
        "--variant-epochs", type=int, default=None, help="epochs of the one-change variants"
    )
    parser.add_argument(
        "--eval-every", type=int, default=1, help="evaluate every N epochs (0: at the end only)"
    )
    args = parser.parse_args(argv)
    profile = resolve_profile(args, CLASSIFICATION)
    device = resolve_device(args.device)
    seed_everything(args.seed)
    progress = not args.no_progress
    runs = Path(args.runs or f"runs/real_data_study-{args.profile}")
    ckpt_dir = runs / "checkpoints"
    names = list(VARIANTS) if "all" in args.variants else list(dict.fromkeys(args.variants))

    train_set, eval_set, eval_split = load_splits(args, profile)
    eval_loader = DataLoader(eval_set, profile.batch_size)
    print(
        f"{args.dataset}: {len(train_set)} training / {len(eval_set)} {eval_split} clouds; "
        f"profile {args.profile}; samplers {', '.join(names)}",
        flush=True,
    )
    networks = train_task_networks(args, profile, train_set, ckpt_dir, device, progress)
    meta = run_metadata(
        "benchmarks/real_data_study.py", sys.argv[1:] if argv is None else argv, args.device
    )
    meta.update(profile=args.profile, settings=json.loads(json.dumps(asdict(profile))))
    report: dict[str, Any] = {
        "meta": meta,
        "dataset": args.dataset,
        "evaluated_on": eval_split,
        "val_fraction": args.val_fraction,
        "seed": args.seed,
        "eval_clouds": len(eval_set),
        "complete": {k: evaluate_accuracy(v, eval_loader, device) for k, v in networks.items()},
        "baselines": {},
        "samplers": {},
    }
    for net, model in networks.items():
        report["baselines"][net] = {
            name: {
                str(m): evaluate_accuracy(model, eval_loader, device, gather_sample(sample, m))
                for m in profile.sizes
            }
            for name, sample in baseline_samplers(args.seed).items()
        }
    for name in names:
        report["samplers"][name] = study_sampler(
            name, args, profile, networks, train_set, eval_loader, ckpt_dir, device, progress
        )
    report["results"] = main_table(report)

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "real_data_study.json").write_text(json.dumps(report, indent=2) + "\n")
    (out / "real_data_study.md").write_text(report_markdown(report, profile.sizes))
    plot_panels(report, profile.num_points, out / "real_data_study.png")
    print(
        markdown_table(
            ["sampler"] + [str(m) for m in profile.sizes], table_rows(report, profile.sizes)
        )
    )
    print(f"wrote {out}/real_data_study.json, real_data_study.md, real_data_study.png")
    return report


if __name__ == "__main__":
    main()
