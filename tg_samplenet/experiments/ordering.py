r"""The ordering of the samplers on one data set, and whether two data sets agree on it: how
this library checks that its built-in shapes predict real scans (issue 11: the ordering of
FPS, random, S-NET, SampleNet and SampleNet-Progressive at 16, 32 and 64 points).

Samplers are ordered among the rows of one classifier: the classification example evaluates
FPS, random, S-NET and SampleNet on PointNet, and SampleNet-Progressive (as the authors did)
against FPS on vanilla PointNet; accuracies of two different networks do not rank samplers."""

from __future__ import annotations

from itertools import combinations
from typing import Any, Mapping, Sequence

from tg_samplenet.experiments.reporting import markdown_table

__all__ = ["ORDERED_GROUPS", "sampler_ranking", "discordant_pairs", "ordering_table"]

# The rows of the classification example whose ordering the built-in data must predict, by
# the network that scores them.
ORDERED_GROUPS: dict[str, tuple[str, ...]] = {
    "PointNet": ("fps", "random", "snet", "samplenet"),
    "vanilla PointNet": ("fps_vanilla", "samplenet_progressive", "samplenet_progressive_prefix"),
}


def sampler_ranking(results: Mapping[str, Any], m: int, samplers: Sequence[str]) -> list[str]:
    r"""The :obj:`samplers` that :obj:`results` (a :obj:`results.json` dict) holds at size
    :obj:`m`, best first (by its :obj:`higher_is_better`); equal values keep the order of
    :obj:`samplers`."""
    rows = results["results"]
    present = [name for name in samplers if str(m) in rows.get(name, {})]
    sign = -1.0 if results["higher_is_better"] else 1.0
    return sorted(present, key=lambda name: (sign * float(rows[name][str(m)]), present.index(name)))


def discordant_pairs(
    first: Mapping[str, Any],
    second: Mapping[str, Any],
    m: int,
    samplers: Sequence[str],
) -> list[tuple[str, str]]:
    r"""The pairs of samplers, both present in both results at size :obj:`m`, that one
    result ranks strictly the other way round from the other (a tie in either counts as
    agreement). Empty when the two data sets order the samplers alike."""
    a, b = first["results"], second["results"]
    both = [s for s in samplers if str(m) in a.get(s, {}) and str(m) in b.get(s, {})]
    out = []
    for x, y in combinations(both, 2):
        da = float(a[x][str(m)]) - float(a[y][str(m)])
        db = float(b[x][str(m)]) - float(b[y][str(m)])
        if da * db < 0:
            out.append((x, y))
    return out


def ordering_table(
    runs: Mapping[str, Mapping[str, Any]],
    sizes: Sequence[int],
    groups: Mapping[str, Sequence[str]] = ORDERED_GROUPS,
) -> str:
    r"""A Markdown table of every run's value per sampler at each of :obj:`sizes`, the runs
    side by side (columns :obj:`"<run> m=<m>"`), with each run's complete-cloud value and,
    per group of :obj:`groups` and size, its ranking."""
    header = ["sampler"] + [f"{name} m={m}" for m in sizes for name in runs]
    rows: list[list[Any]] = [
        ["complete clouds"] + [float(data["complete"]) for _ in sizes for data in runs.values()]
    ]
    for group, samplers in groups.items():
        for sampler in samplers:
            rows.append(
                [sampler]
                + [
                    float(data["results"].get(sampler, {}).get(str(m), float("nan")))
                    for m in sizes
                    for data in runs.values()
                ]
            )
        rows.append(
            [f"ranking on {group}"]
            + [
                " > ".join(sampler_ranking(data, m, samplers))
                for m in sizes
                for data in runs.values()
            ]
        )
    return markdown_table(header, rows)
