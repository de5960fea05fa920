r"""SampleNet under :func:`torch.compile` against eager: the eval forward and a training step
(forward, loss, backward) on a batch of clouds, with the compiled program's first call (the
compilation) reported apart from its steady-state time, and then one call on clouds of other
sizes: with ``dynamic=True`` it reuses the graphs (the graph count is reported before and
after). The eval forward is measured a second time with Dynamo's
``capture_scalar_outputs`` and ``capture_dynamic_output_shape_ops``, where it is one graph.

    python benchmarks/compile.py                    # 32 clouds x 1024 points, inductor
    python benchmarks/compile.py --backend aot_eager --smoke

Writes benchmarks/results/compile.{json,md} (or under --out).
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # reproduction/ beside tg_samplenet/

import argparse
import time
from typing import Any, Optional

import torch
import torch._dynamo
from torch._dynamo.utils import counters

from reproduction.benchmarking import time_call
from reproduction.environment import run_metadata
from reproduction.reporting import format_seconds, markdown_table, metadata_markdown, write_json
from reproduction.testing import random_clouds
from tg_samplenet import SampleNet, simplification_loss


def eval_forward(sampler: SampleNet, pos, batch):
    return sampler(pos, batch).index


def train_step(sampler: SampleNet, pos, batch):
    out = sampler(pos, batch)
    loss = out.pos.square().mean() + out.sigma
    loss = loss + simplification_loss(out.simplified, pos, out.simplified_batch, batch)
    loss.backward()
    return loss.detach()


def measure(
    step,
    sampler,
    pos,
    batch,
    other: tuple,
    backend: str,
    min_run_time: float,
    capture_sizes: bool = False,
) -> dict[str, Any]:
    with torch._dynamo.config.patch(
        capture_scalar_outputs=capture_sizes, capture_dynamic_output_shape_ops=capture_sizes
    ):
        return _measure(step, sampler, pos, batch, other, backend, min_run_time)


def _measure(step, sampler, pos, batch, other, backend, min_run_time) -> dict[str, Any]:
    torch._dynamo.reset()
    counters.clear()
    compiled = torch.compile(step, backend=backend, dynamic=True)
    start = time.perf_counter()
    compiled(sampler, pos, batch)
    first_call = time.perf_counter() - start
    graphs = counters["stats"]["unique_graphs"]
    eager = time_call(lambda: step(sampler, pos, batch), min_run_time=min_run_time)
    steady = time_call(lambda: compiled(sampler, pos, batch), min_run_time=min_run_time)
    start = time.perf_counter()
    compiled(sampler, *other)  # new cloud sizes, same number of clouds
    new_sizes_call = time.perf_counter() - start
    return {
        "eager_s": eager.median,
        "compiled_s": steady.median,
        "compile_first_call_s": first_call,
        "speed_up": eager.median / steady.median,
        "graphs": graphs,
        "new_sizes_first_call_s": new_sizes_call,
        "graphs_after_new_sizes": counters["stats"]["unique_graphs"],
    }


def main(argv: Optional[list[str]] = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--clouds", type=int, default=32)
    parser.add_argument("--points", type=int, default=1024)
    parser.add_argument("--num-out-points", type=int, default=32)
    parser.add_argument("--backend", default="inductor", help="torch.compile back-end")
    parser.add_argument("--smoke", action="store_true", help="4 clouds x 128 points, aot_eager")
    parser.add_argument("--out", default=str(Path(__file__).parent / "results"))
    args = parser.parse_args(argv)
    if args.smoke:
        args.clouds, args.points, args.num_out_points, args.backend = 4, 128, 8, "aot_eager"
    min_run_time = 0.2 if args.smoke else 2.0

    torch.manual_seed(0)
    pos, batch = random_clouds([args.points] * args.clouds, seed=0)
    # Other sizes, every cloud still larger than the sample.
    smaller = [max(args.points - 3 * i - 1, args.num_out_points) for i in range(args.clouds)]
    other = random_clouds(smaller, seed=1)
    sampler = SampleNet(args.num_out_points)
    rows = {}
    with torch.no_grad():
        rows["eval forward"] = measure(
            eval_forward, sampler.eval(), pos, batch, other, args.backend, min_run_time
        )
        rows["eval forward, sizes captured"] = measure(
            eval_forward,
            sampler,
            pos,
            batch,
            other,
            args.backend,
            min_run_time,
            capture_sizes=True,
        )
    rows["training step"] = measure(
        train_step, sampler.train(), pos, batch, other, args.backend, min_run_time
    )

    report = {
        "metadata": run_metadata("benchmarks/compile.py", argv or sys.argv[1:]),
        "case": f"{args.clouds} clouds x {args.points} points, SampleNet({args.num_out_points})",
        "backend": args.backend,
        "results": rows,
    }
    table = markdown_table(
        [
            "call",
            "eager",
            "compiled",
            "speed-up",
            "first compiled call",
            "graphs",
            "first call, new sizes",
            "graphs after",
        ],
        [
            [
                name,
                format_seconds(r["eager_s"]),
                format_seconds(r["compiled_s"]),
                f"{r['speed_up']:.2f}x",
                format_seconds(r["compile_first_call_s"]),
                str(r["graphs"]),
                format_seconds(r["new_sizes_first_call_s"]),
                str(r["graphs_after_new_sizes"]),
            ]
            for name, r in rows.items()
        ],
    )
    text = (
        f"# torch.compile ({args.backend}, dynamic=True) against eager\n\n"
        f"{report['case']}; medians of torch.utils.benchmark blocks.\n\n{table}\n\n"
        f"{metadata_markdown(report['metadata'])}\n"
    )
    out = Path(args.out)
    write_json(out / "compile.json", report)
    (out / "compile.md").write_text(text)
    print(text)
    return report


if __name__ == "__main__":
    main()
