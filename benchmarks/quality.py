r"""Task quality against the sampling ratio for every sampler on the paper's three tasks.

It runs the three example scripts (as subprocesses, with the same flags): each trains its
task network and samplers and evaluates PyG's fps, random sampling, voxel-grid sampling at
matched counts, S-NET, SampleNet and SampleNet-Progressive. Then it combines their
results.json into one figure with three panels and one table.

    python benchmarks/quality.py                       # built-in data, CPU profiles
    python benchmarks/quality.py --profile paper --device cuda
    python benchmarks/quality.py --smoke --out /tmp/q  # seconds

Outputs in --out: quality.json, quality.md, quality.png. Each example keeps its own results,
plots and checkpoints in --runs/<task>-<profile>/, the folder the example itself uses by
default: after `python examples/classification.py --profile cpu`, this benchmark only
re-evaluates.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # reproduction/ beside tg_samplenet/

import argparse
import json
import subprocess
from typing import Any, Optional

from reproduction.environment import run_metadata
from reproduction.plots import plot_metric_vs_ratio
from reproduction.reporting import markdown_table, metadata_markdown

ROOT = Path(__file__).resolve().parents[1]
TASKS = ("classification", "registration", "reconstruction")
# Rows of the combined table: the samplers compared in every task, as each example calls them.
SAMPLERS = ("fps", "random", "voxel", "snet", "samplenet", "samplenet_progressive")


def run_example(task: str, args: argparse.Namespace, profile: str) -> dict[str, Any]:
    r"""Runs :obj:`examples/<task>.py` with the benchmark's flags and returns its
    :obj:`results.json`."""
    out = Path(args.runs) / f"{task}-{profile}"
    argv = ["--profile", profile, "--dataset", args.dataset, "--device", args.device]
    argv += ["--seed", str(args.seed), "--out", str(out)]
    argv += ["--data-root", args.data_root] if args.data_root else []
    argv += ["--no-progress"] if args.no_progress else []
    print(f"== {task}: {' '.join(argv)}", flush=True)
    subprocess.run([sys.executable, str(ROOT / "examples" / f"{task}.py"), *argv], check=True)
    return json.loads((out / "results.json").read_text())


def combined_table(runs: dict[str, dict[str, Any]]) -> str:
    r"""One Markdown table per task (rows: samplers, columns: sampling ratios)."""
    parts = []
    for task, data in runs.items():
        n = data["settings"]["num_points"]
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

    fig, axes = plt.subplots(1, len(runs), figsize=(5.5 * len(runs), 4.2), squeeze=False)
    for ax, (task, data) in zip(axes[0], runs.items()):
        shown = {**data, "results": {k: v for k, v in data["results"].items() if k in SAMPLERS}}
        plot_metric_vs_ratio(shown, data["settings"]["num_points"], path, ax=ax, title=task)
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

    runs = {task: run_example(task, args, profile) for task in args.tasks}
    meta = run_metadata(
        "benchmarks/quality.py", sys.argv[1:] if argv is None else argv, args.device
    )
    summary = {"meta": meta, "profile": profile, "tasks": runs}
    out.mkdir(parents=True, exist_ok=True)
    (out / "quality.json").write_text(json.dumps(summary, indent=2) + "\n")
    table = combined_table(runs)
    (out / "quality.md").write_text(
        "# Task quality against sampling ratio\n\n" + metadata_markdown(meta) + "\n\n" + table
    )
    plot_panels(runs, out / "quality.png")
    print(table)
    print(f"wrote {out}/quality.json, quality.md, quality.png")
    return summary


if __name__ == "__main__":
    main()
