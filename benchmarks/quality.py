r"""Task quality against the sampling ratio for every sampler on the paper's three tasks.

It runs the three example scripts themselves (their training and evaluation code, not a
copy): each trains its task network and samplers and evaluates PyG's fps, random sampling,
voxel-grid sampling at matched counts, S-NET, SampleNet and SampleNet-Progressive. Then it
combines their results into one figure with three panels and one table.

    python benchmarks/quality.py                       # built-in data, CPU profiles
    python benchmarks/quality.py --profile paper --device cuda
    python benchmarks/quality.py --smoke --out /tmp/q  # seconds

Outputs in --out: quality.json, quality.md, quality.png. Each example keeps its own results,
plots and checkpoints in --runs/<task>-<profile>/, the folder the example itself uses by
default: after `python examples/classification.py`, this benchmark only re-evaluates.
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
from pathlib import Path
from typing import Any, Optional

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import metadata_markdown, run_metadata, write_json, write_text  # noqa: E402

TASKS = ("classification", "registration", "reconstruction")
# Rows of the combined table: the samplers the issue names, as each example calls them.
SAMPLERS = ("fps", "random", "voxel", "snet", "samplenet", "samplenet_progressive")


def load_example(task: str):
    r"""Imports :obj:`examples/<task>.py` as a module."""
    path = ROOT / "examples" / f"{task}.py"
    spec = importlib.util.spec_from_file_location(f"example_{task}", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def combined_table(runs: dict[str, dict[str, Any]]) -> str:
    r"""One Markdown table per task (rows: samplers, columns: sampling ratios)."""
    from tg_samplenet.experiments.reporting import markdown_table

    parts = []
    for task, data in runs.items():
        n = data["num_points"]
        sizes = sorted({int(m) for row in data["results"].values() for m in row}, reverse=True)
        header = ["sampler"] + [f"SR {n / m:g} (m={m})" for m in sizes]
        rows = [
            [name] + [float(data["results"][name].get(str(m), float("nan"))) for m in sizes]
            for name in SAMPLERS
            if name in data["results"]
        ]
        arrow = "higher is better" if data["higher_is_better"] else "lower is better"
        parts.append(
            f"### {task}: {data['metric']} ({arrow}), complete clouds {data['complete']:.4g}\n\n"
            + markdown_table(header, rows)
        )
    return "\n\n".join(parts)


def plot_panels(runs: dict[str, dict[str, Any]], path: Path):
    r"""The three tasks side by side, metric against sampling ratio (log2 axis)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from tg_samplenet.experiments.reporting import plot_metric_vs_ratio

    fig, axes = plt.subplots(1, len(runs), figsize=(5.5 * len(runs), 4.2), squeeze=False)
    for ax, (task, data) in zip(axes[0], runs.items()):
        shown = {**data, "results": {k: v for k, v in data["results"].items() if k in SAMPLERS}}
        plot_metric_vs_ratio(shown, data["num_points"], path, ax=ax, title=task)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv: Optional[list[str]] = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n")[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter
    )
    parser.add_argument("--tasks", nargs="+", default=list(TASKS), choices=TASKS)
    parser.add_argument("--profile", default="cpu", choices=["cpu", "paper", "smoke"])
    parser.add_argument("--smoke", action="store_true", help="same as --profile smoke")
    parser.add_argument("--dataset", default="synthetic")
    parser.add_argument("--data-root", default=None)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results"))
    parser.add_argument("--runs", default="runs", help="where the examples train and resume")
    parser.add_argument("--no-progress", action="store_true")
    args = parser.parse_args(argv)
    profile = "smoke" if args.smoke else args.profile
    out = Path(args.out)

    runs = {}
    for task in args.tasks:
        example = load_example(task)
        example_argv = [
            "--profile",
            profile,
            "--dataset",
            args.dataset,
            "--device",
            args.device,
            "--seed",
            str(args.seed),
            "--out",
            str(Path(args.runs) / f"{task}-{profile}"),
        ]
        if args.data_root:
            example_argv += ["--data-root", args.data_root]
        if args.no_progress:
            example_argv.append("--no-progress")
        print(f"== {task}: {' '.join(example_argv)}")
        data = example.main(example_argv)
        data["num_points"] = example.PROFILES[profile].num_points
        runs[task] = data

    meta = run_metadata(
        "benchmarks/quality.py", argv if argv is not None else sys.argv[1:], args.device
    )
    summary = {"meta": meta, "profile": profile, "tasks": runs}
    write_json(str(out / "quality.json"), summary)
    table = combined_table(runs)
    write_text(
        str(out / "quality.md"),
        "# Task quality against sampling ratio\n\n" + metadata_markdown(meta) + "\n\n" + table,
    )
    plot_panels(runs, out / "quality.png")
    print(table)
    print(f"wrote {out}/quality.json, quality.md, quality.png")
    return summary


if __name__ == "__main__":
    main()
