r"""Whether the built-in shapes predict real scans: the classification example's results on
both, side by side, with the ordering of FPS, random, S-NET and SampleNet on PointNet and of
FPS and SampleNet-Progressive on vanilla PointNet at each size, and the pairs of samplers
the two data sets order differently: strictly, and beyond noise (a difference within
--standard-errors binomial standard errors of its run's evaluation clouds is a tie; see
reproduction.ordering.difference_sign).

    python examples/classification.py --profile cpu         # built-in data
    python examples/classification.py --profile cpu-real --dataset h5 \
        --data-root ../shared/data/modelnet10-train --val-fraction 0.2
    python benchmarks/data_agreement.py                     # reads both runs' results.json

Outputs in --out: data_agreement.json, .md and .png, with the machine, versions and command.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # reproduction/ beside tg_samplenet/

import argparse
import json
from typing import Optional

from reproduction.environment import run_metadata
from reproduction.ordering import (
    ORDERED_GROUPS,
    discordant_pairs,
    ordering_table,
    sampler_ranking,
)
from reproduction.plots import plot_runs_side_by_side
from reproduction.reporting import metadata_markdown


def main(argv: Optional[list[str]] = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--built-in", default="runs/classification-cpu/results.json")
    parser.add_argument("--real", default="runs/classification-cpu-real/results.json")
    parser.add_argument("--sizes", type=int, nargs="+", default=[64, 32, 16])
    parser.add_argument(
        "--standard-errors",
        type=float,
        default=1.0,
        help="differences within this many standard errors are ties in the second count",
    )
    parser.add_argument("--out", default="benchmarks/results")
    args = parser.parse_args(argv)

    runs = {}
    for name, path in (("built-in", args.built_in), ("real", args.real)):
        if not Path(path).is_file():
            raise SystemExit(
                f"--{name.replace('-', '_')} {path}: no results.json there (see --help)"
            )
        runs[name] = json.loads(Path(path).read_text())
    built_in, real = runs.values()
    table = ordering_table(runs, args.sizes)

    def discordant(standard_errors: float) -> dict[str, list[tuple[str, str]]]:
        return {
            str(m): [
                pair
                for group in ORDERED_GROUPS.values()
                for pair in discordant_pairs(built_in, real, m, group, standard_errors)
            ]
            for m in args.sizes
        }

    disagreements = discordant(0.0)
    try:
        beyond_noise = discordant(args.standard_errors)
    except ValueError as error:  # difference_sign names what the runs lack
        raise SystemExit(
            f"{error}: rerun the example with the same --out (it resumes and only evaluates), "
            "or pass --standard-errors 0"
        ) from None
    pairs = 0
    for m in args.sizes:
        for group in ORDERED_GROUPS.values():
            both = set(sampler_ranking(built_in, m, group)) & set(sampler_ranking(real, m, group))
            pairs += len(both) * (len(both) - 1) // 2
    data = {
        **run_metadata("benchmarks/data_agreement.py", sys.argv[1:] if argv is None else argv),
        "sources": {"built-in": args.built_in, "real": args.real},
        "rankings": {
            name: {
                group: {str(m): sampler_ranking(run, m, samplers) for m in args.sizes}
                for group, samplers in ORDERED_GROUPS.items()
            }
            for name, run in runs.items()
        },
        "pairs": pairs,
        "discordant_pairs": disagreements,
        "agree": not any(disagreements.values()),
        "standard_errors": args.standard_errors,
        "discordant_beyond_noise": beyond_noise,
        "agree_beyond_noise": not any(beyond_noise.values()),
    }

    def listed(found: dict[str, list[tuple[str, str]]]) -> list[str]:
        return [
            f"- m = {m}: "
            + ("same ordering" if not pairs else ", ".join(f"{a} / {b}" for a, b in pairs))
            for m, pairs in found.items()
        ]

    strict = sum(map(len, disagreements.values()))
    noisy = sum(map(len, beyond_noise.values()))
    report = "\n".join(
        [
            table,
            "",
            f"Pairs ordered differently ({strict} of {pairs}):",
            "",
            *listed(disagreements),
            "",
            f"Pairs ordered differently by more than {args.standard_errors:g} standard errors "
            f"on both data sets ({noisy} of {pairs}):",
            "",
            *listed(beyond_noise),
        ]
    )
    print(report)

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "data_agreement.json").write_text(json.dumps(data, indent=2) + "\n")
    (out / "data_agreement.md").write_text(f"{report}\n\n{metadata_markdown(data)}\n")
    shown = [sampler for group in ORDERED_GROUPS.values() for sampler in group]
    plot_runs_side_by_side(runs, out / "data_agreement.png", shown)
    print(f"wrote {out}/data_agreement.json, .md, .png")
    return data


if __name__ == "__main__":
    main()
