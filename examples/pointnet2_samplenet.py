r"""PointNet++ with learned sampling: every fps of its set-abstraction layers is a SampleNet
trained jointly with the network, against the same PointNet++ with fps, on the same data and
seed (the model of PyG's examples/pointnet2_classification.py).

1. Trains PointNet++ with fps, and PointNet++ whose set-abstraction layers sample with their
   own SampleNet (task loss plus each sampler's simplification and projection losses). In
   training a layer's centres are the soft-projected points and their features are carried
   with the same weights; in eval they are the hard-sampled input points.
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

radius and fps come from tg_samplenet's own back-end (torch_cluster, pyg-lib or plain torch),
so this runs on PyG 2.8 without pyg-lib, where torch_geometric.nn.fps and radius raise
ImportError. Every stage resumes from its checkpoint in --out/checkpoints.
"""

from __future__ import annotations

import copy
import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Optional

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.utils.benchmark import Timer
from torch_geometric.loader import DataLoader
from torch_geometric.nn import MLP, PointNetConv, global_max_pool

from tg_samplenet import SampleNet, SampleNetFPS, samplenet_loss
from tg_samplenet.datasets import get_dataset
from tg_samplenet.experiments.command_line import common_parser, resolve_device, resolve_profile
from tg_samplenet.experiments.config import (
    CLASSIFICATION_LOSS,
    CLASSIFICATION_PROGRESSIVE_LOSS,
    Profile,
)
from tg_samplenet.experiments.plots import plot_metric_vs_ratio
from tg_samplenet.experiments.reporting import example_metadata, markdown_table, write_results
from tg_samplenet.experiments.samplers import make_sampler
from tg_samplenet.fit import fit, learning_rate_schedule, seed_everything
from tg_samplenet.fit_sampler import LossWeights, fit_sampler, freeze
from tg_samplenet.ops import fps, padded_knn


@dataclass(frozen=True, kw_only=True)
class PointNet2Profile(Profile):
    r"""PyG's PointNet++ (:obj:`task_width` 1024 is its width; the layers scale with it),
    its set-abstraction ratios and radii, and the first-layer ratios of the drop-in."""

    k: int = 7
    fixed_loss: LossWeights = CLASSIFICATION_LOSS
    progressive_loss: LossWeights = CLASSIFICATION_PROGRESSIVE_LOSS
    lr_schedule: str = "cosine"
    train_sizes: tuple[int, ...] = ()
    ratios: tuple[float, float] = (0.5, 0.25)
    radii: tuple[float, float] = (0.2, 0.4)
    dropin_ratios: tuple[float, ...] = (0.5, 1 / 8, 1 / 32)


def profile(n, sizes, per_class, test_per_class, epochs, sampler_epochs, batch, width, control):
    return PointNet2Profile(
        num_points=n,
        sizes=sizes,
        samples_per_class=per_class,
        test_samples_per_class=test_per_class,
        task_epochs=epochs,
        sampler_epochs=sampler_epochs,
        batch_size=batch,
        task_lr=1e-3,
        sampler_lr=1e-2,
        task_width=width,
        control_sizes=control,
    )


PROFILES = {
    "smoke": profile(64, (8, 2), 2, 1, 1, 1, 8, 64, (8, 16, 32, 64)),
    "cpu": profile(512, (64, 16), 40, 20, 20, 10, 16, 256, (16, 32, 64, 128, 256, 512)),
    "paper": profile(1024, (128, 32), 100, 30, 200, 100, 32, 1024, tuple(2**i for i in range(11))),
}


def radius(x: Tensor, y: Tensor, r: float, batch_x: Tensor, batch_y: Tensor, max_neighbors=64):
    r""":func:`torch_geometric.nn.radius` from tg_samplenet's back-end: the
    :obj:`max_neighbors` nearest points of :obj:`x` within :obj:`r` of each point of :obj:`y`
    (PyG returns any :obj:`max_neighbors` of them), as :obj:`[2, E]` (row: :obj:`y`)."""
    index, mask = padded_knn(x, y, max_neighbors, batch_x, batch_y)
    with torch.no_grad():
        mask = mask & ((x[index] - y.unsqueeze(1)).pow(2).sum(-1) <= r * r)
    row = torch.arange(y.size(0), device=y.device).unsqueeze(1).expand_as(index)
    return torch.stack([row[mask], index[mask]])


class SAModule(torch.nn.Module):
    r"""PyG's set abstraction: :obj:`self.fps` centres (swappable for a
    :class:`~tg_samplenet.SampleNetFPS`), a radius ball around each, a PointNetConv."""

    def __init__(self, ratio: float, r: float, nn: MLP):
        super().__init__()
        self.ratio, self.r, self.fps = ratio, r, fps
        self.conv = PointNetConv(nn, add_self_loops=False)

    def centres(self, x: Optional[Tensor], pos: Tensor, batch: Tensor):
        idx = self.fps(pos, batch, ratio=self.ratio)
        return pos[idx], batch[idx], None if x is None else x[idx], None

    def forward(self, x: Optional[Tensor], pos: Tensor, batch: Tensor):
        pos_dst, batch_dst, x_dst, sample = self.centres(x, pos, batch)
        row, col = radius(pos, pos_dst, self.r, batch, batch_dst)
        x = self.conv((x, x_dst), (pos, pos_dst), torch.stack([col, row], dim=0))
        return x, pos_dst, batch_dst, sample


class LearnedSAModule(SAModule):
    r"""The set abstraction with a SampleNet of :math:`\lceil n r \rceil` outputs for clouds
    of :math:`n` points in place of fps. In training the centres are its soft-projected
    points and their features are carried with the projection's weights."""

    def __init__(self, ratio: float, r: float, nn: MLP, num_points: int, profile: Profile):
        super().__init__(ratio, r, nn)
        self.sampler = make_sampler(profile, math.ceil(num_points * ratio))

    def centres(self, x: Optional[Tensor], pos: Tensor, batch: Tensor):
        out = self.sampler(pos, batch, ratio=self.ratio)
        return out.pos, out.batch, None if x is None else out.carry(x), (out, pos, batch)


class PointNet2(torch.nn.Module):
    r"""PyG's PointNet++ classifier, widths scaled by :obj:`profile.task_width / 1024`;
    :obj:`forward` returns log-probabilities and the learned layers' samples (for the
    losses)."""

    def __init__(self, num_classes: int, profile: PointNet2Profile, learned: bool):
        super().__init__()
        w, (r1, r2), (d1, d2) = profile.task_width // 16, profile.ratios, profile.radii
        nn1, nn2 = MLP([3, w, w, 2 * w]), MLP([2 * w + 3, 2 * w, 2 * w, 4 * w])
        if learned:
            n1 = math.ceil(profile.num_points * r1)
            self.sa1_module = LearnedSAModule(r1, d1, nn1, profile.num_points, profile)
            self.sa2_module = LearnedSAModule(r2, d2, nn2, n1, profile)
        else:
            self.sa1_module, self.sa2_module = SAModule(r1, d1, nn1), SAModule(r2, d2, nn2)
        self.sa3_nn = MLP([4 * w + 3, 4 * w, 8 * w, 16 * w])
        self.mlp = MLP([16 * w, 8 * w, 4 * w, num_classes], dropout=0.5, norm=None)

    def forward(self, pos: Tensor, batch: Tensor):
        x, pos1, batch1, sample1 = self.sa1_module(None, pos, batch)
        x, pos2, batch2, sample2 = self.sa2_module(x, pos1, batch1)
        x = global_max_pool(self.sa3_nn(torch.cat([x, pos2], dim=1)), batch2)
        samples = [s for s in (sample1, sample2) if s is not None]
        return self.mlp(x).log_softmax(dim=-1), samples


def task_loss(model: PointNet2, data, weights: LossWeights) -> Tensor:
    r"""NLL, plus :math:`\alpha L_s + \lambda \sigma` of each learned layer's sampler."""
    log_probs, samples = model(data.pos, data.batch)
    loss = F.nll_loss(log_probs, data.y)
    for out, pos, batch in samples:
        loss = samplenet_loss(loss, out, pos, batch, **asdict(weights))
    return loss


def optimizer_and_step(model: PointNet2, profile: PointNet2Profile, steps: int, device):
    r"""Adam with the samplers at :obj:`sampler_lr` (the paper's rate: at the task's,
    :math:`t` fell only from 1 to 0.68 in 700 steps and the soft centres stayed local
    averages), its schedule, and one training step."""
    learned = [p for name, p in model.named_parameters() if ".sampler." in name]
    task = [p for name, p in model.named_parameters() if ".sampler." not in name]
    groups = [{"params": task, "lr": profile.task_lr}]
    groups += [{"params": learned, "lr": profile.sampler_lr}] if learned else []
    optimizer = torch.optim.Adam(groups)
    scheduler = learning_rate_schedule(optimizer, profile.lr_schedule, steps)

    def step(data) -> float:
        model.train()
        loss = task_loss(model, data.to(device), profile.fixed_loss)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        if scheduler is not None:
            scheduler.step()
        return loss.item()

    return optimizer, scheduler, step


def train(model, loader, profile, ckpt: Path, device, progress) -> list[float]:
    r"""Trains (or resumes) :obj:`model`; returns the loss per epoch."""
    steps = profile.task_epochs * len(loader)
    optimizer, scheduler, step = optimizer_and_step(model, profile, steps, device)
    state = {"model": model, "optimizer": optimizer}
    state.update({"scheduler": scheduler} if scheduler is not None else {})
    return fit(step, loader, profile.task_epochs, ckpt, state, f"train {ckpt.stem}", None, progress)


def seconds_per_epoch(model, loader, profile, device, batches: int = 5) -> float:
    r"""Training seconds per epoch from :obj:`batches` timed steps (after one untimed) on a
    copy of :obj:`model`, so that both models are timed alike even when resumed."""
    model = copy.deepcopy(model)
    _, _, step = optimizer_and_step(model, profile, 1, device)
    with torch.random.fork_rng():
        data = [d for _, d in zip(range(batches + 1), loader)]
        step(data[0])
        started = time.perf_counter()
        for d in data[1:]:
            step(d)
        if torch.device(device).type == "cuda":
            torch.cuda.synchronize(device)
    return (time.perf_counter() - started) / batches * len(loader)


@torch.no_grad()
def accuracy(model: PointNet2, loader: DataLoader, device, sample=None) -> float:
    r"""Test accuracy, on the points :obj:`sample(pos, batch)` keeps (all by default)."""
    model.eval()
    correct = 0
    for data in loader:
        data = data.to(device)
        pos, batch = (data.pos, data.batch) if sample is None else sample(data.pos, data.batch)
        correct += int((model(pos, batch)[0].argmax(-1) == data.y).sum())
    return correct / len(loader.dataset)


@torch.no_grad()
def ms_per_batch(model: PointNet2, data) -> float:
    model.eval()
    timer = Timer("model(pos, batch)", globals=dict(model=model, pos=data.pos, batch=data.batch))
    return timer.blocked_autorange(min_run_time=1.0).median * 1e3


def swap_fps(model: PointNet2, sampler: Optional[SampleNet]):
    r"""Sets the fps of both layers to :obj:`SampleNetFPS(sampler)`, or back to fps for
    :obj:`None`, with no change to the model's code."""
    for layer in (model.sa1_module, model.sa2_module):
        if isinstance(layer.fps, SampleNetFPS):
            del layer.fps  # a submodule: a plain function cannot overwrite it
        layer.fps = fps if sampler is None else SampleNetFPS(sampler)


def shrunk(sample, ratio: float):
    r"""A :obj:`(pos, batch) -> (pos, batch)` of the points that :obj:`sample` keeps."""

    def pick(pos: Tensor, batch: Tensor):
        index = sample(pos, batch, ratio)
        return pos[index], batch[index]

    return pick


def dropin(model, sampler, loader, profile, device) -> dict[str, dict[int, float]]:
    r"""The fps model's accuracy with fps and with :obj:`sampler` swapped in for the fps of
    both layers, per first-layer ratio; and on inputs shrunk to :obj:`profile.sizes`."""
    rows: dict[str, dict[int, float]] = {}
    for ratio in profile.dropin_ratios:
        model.sa1_module.ratio, kept = ratio, math.ceil(profile.num_points * ratio)
        for name, swapped in (("dropin_fps", None), ("dropin_samplenet", sampler)):
            swap_fps(model, swapped)
            rows.setdefault(name, {})[kept] = accuracy(model, loader, device)
    model.sa1_module.ratio = profile.ratios[0]
    swap_fps(model, None)
    for m in profile.sizes:
        for name, sample in (("input_fps", fps), ("input_progressive", SampleNetFPS(sampler))):
            pick = shrunk(sample, m / profile.num_points)
            rows.setdefault(name, {})[m] = accuracy(model, loader, device, pick)
    return rows


def load(args, profile: PointNet2Profile, split: str, per_class: int):
    extra = {"samples_per_class": per_class} if args.dataset == "synthetic" else {}
    return get_dataset(
        args.dataset, args.data_root, split, profile.num_points, seed=args.seed, **extra
    )


def main(argv: Optional[list[str]] = None) -> dict:
    parser = common_parser(__doc__.split("\n")[0], PROFILES)
    args = parser.parse_args(argv)
    prof = resolve_profile(args, PROFILES)
    device = resolve_device(args.device)
    out_dir = Path(args.out or f"runs/pointnet2-{args.profile}")
    ckpt_dir = out_dir / "checkpoints"
    progress, started = not args.no_progress, time.time()

    train_set = load(args, prof, "train", prof.samples_per_class)
    test_set = load(args, prof, "test", prof.test_samples_per_class)
    train_loader = DataLoader(train_set, prof.batch_size, shuffle=True, drop_last=True)
    test_loader = DataLoader(test_set, prof.batch_size)
    num_classes = len(train_set.classes)
    print(
        f"{args.dataset}: {len(train_set)} training / {len(test_set)} test clouds, "
        f"{num_classes} classes, {prof.num_points} points; profile {args.profile}"
    )

    # 1. PointNet++ with fps and with jointly trained samplers: same data, seed and schedule.
    models, histories, timing = {}, {}, {}
    for name, learned in (("pointnet2_fps", False), ("pointnet2_samplenet", True)):
        seed_everything(args.seed)
        model = models[name] = PointNet2(num_classes, prof, learned).to(device)
        seed_everything(args.seed)  # the same batches in the same order for both
        histories[name] = train(
            model, train_loader, prof, ckpt_dir / f"{name}.pt", device, progress
        )
        timing[name] = {
            "seconds_per_train_epoch": seconds_per_epoch(model, train_loader, prof, device),
            "ms_per_inference_batch": ms_per_batch(model, next(iter(test_loader)).to(device)),
        }
    kept = math.ceil(prof.num_points * prof.ratios[0])
    results = {name: {kept: accuracy(model, test_loader, device)} for name, model in models.items()}

    # 2. The drop-in: a progressive sampler for the frozen fps model's input, swapped in.
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
    results.update(dropin(fps_model, progressive, test_loader, prof, device))

    # 3. Results, table, plot.
    meta = example_metadata("examples/pointnet2_samplenet.py", argv, args, prof, started)
    meta.update(timing=timing, loss_history=histories)
    complete = results["pointnet2_fps"][kept]
    data = write_results(out_dir, "pointnet2", "accuracy", True, complete, results, **meta)
    markdown = report(results, timing, prof, f"{args.dataset}, device {device}")
    (out_dir / "results.md").write_text(markdown)
    plot(data, histories, prof.num_points, out_dir / "accuracy.png")
    print(f"{markdown}\nwrote {out_dir}/results.json, results.md, accuracy.png "
          f"({time.time() - started:.0f} s)")  # fmt: skip
    return data


def report(results, timing, profile: PointNet2Profile, where: str) -> str:
    n, kept = profile.num_points, math.ceil(profile.num_points * profile.ratios[0])
    joint = markdown_table(
        ["PointNet++", "test accuracy", "s / training epoch", "ms / inference batch"],
        [[name, results[name][kept], *timing[name].values()] for name in timing],
    )
    first = results["dropin_fps"]
    layer = markdown_table(
        ["first layer keeps", "fps", "SampleNetFPS"],
        [[f"{m} of {n}", first[m], results["dropin_samplenet"][m]] for m in first],
    )
    inputs = markdown_table(
        ["input points", "fps", "SampleNet-Progressive"],
        [[f"{m} of {n}", results["input_fps"][m], results["input_progressive"][m]]
         for m in results["input_fps"]],
    )  # fmt: skip
    return (
        f"PointNet++ on {where}, {n} points, batch {profile.batch_size}\n\n{joint}\n\n"
        f"The fps model with a SampleNet-Progressive swapped in for fps at both layers:\n\n"
        f"{layer}\n\nThe fps model on inputs shrunk by each sampler:\n\n{inputs}\n"
    )


def plot(data: dict, histories: dict[str, list[float]], num_points: int, path: Path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.2))
    for name, history in histories.items():
        left.plot(range(1, len(history) + 1), history, marker=".", label=name)
    left.set(xlabel="epoch", ylabel="training loss", title="PointNet++ training")
    left.grid(True, alpha=0.3)
    left.legend(fontsize=8)
    plot_metric_vs_ratio(data, num_points, path, ax=right, title="test accuracy")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


if __name__ == "__main__":
    main()
