r"""The ordering of the samplers on one data set, and whether two data sets agree on it: how
the built-in shapes are checked to predict real scans (the ordering of FPS, random, S-NET,
SampleNet and SampleNet-Progressive at 16, 32 and 64 points,
``benchmarks/data_agreement.py``).

Samplers are ordered among the rows of one classifier: the classification example evaluates
FPS, random, S-NET and SampleNet on PointNet, and SampleNet-Progressive (as the authors did)
against FPS on vanilla PointNet; accuracies of two different networks do not rank samplers."""

from __future__ import annotations

from itertools import combinations
from typing import Any, Mapping, Sequence

from reproduction.reporting import markdown_table

__all__ = [
    "ORDERED_GROUPS",
    "sampler_ranking",
    "difference_sign",
    "discordant_pairs",
    "ordering_table",
]

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


def difference_sign(
    results: Mapping[str, Any], x: str, y: str, m: int, standard_errors: float = 0.0
) -> int:
    r"""+1 where :obj:`results` ranks sampler :obj:`x` above :obj:`y` at size :obj:`m`, -1
    where below, 0 for a tie: equal values, or with :obj:`standard_errors` :math:`z > 0` an
    accuracy difference within :math:`z` standard errors of the difference of two
    accuracies measured on the run's :math:`n` evaluation clouds
    (:obj:`results["num_evaluated"]`),

    .. math::
        |a_x - a_y| \le z \sqrt{\left(a_x (1 - a_x) + a_y (1 - a_y)\right) / n}.

    The standard error is the binomial one of two independent samples; both samplers are
    scored on the same clouds, so it overstates the noise of the difference a little."""
    a, b = float(results["results"][x][str(m)]), float(results["results"][y][str(m)])
    sign = (a > b) - (a < b)
    if not results["higher_is_better"]:
        sign = -sign
    if standard_errors > 0:
        if results.get("metric") != "accuracy":
            raise ValueError(
                f"standard errors are those of an accuracy (this run's metric is "
                f"{results.get('metric')!r})"
            )
        n = results.get("num_evaluated")
        if not isinstance(n, int) or n < 1:
            raise ValueError(
                "standard errors need the number of evaluation clouds in the run's "
                "results.json ('num_evaluated'; written by examples/classification.py)"
            )
        if abs(a - b) <= standard_errors * ((a * (1 - a) + b * (1 - b)) / n) ** 0.5:
            return 0
    return sign


def discordant_pairs(
    first: Mapping[str, Any],
    second: Mapping[str, Any],
    m: int,
    samplers: Sequence[str],
    standard_errors: float = 0.0,
) -> list[tuple[str, str]]:
    r"""The pairs of samplers, both present in both results at size :obj:`m`, that one
    result ranks strictly the other way round from the other (a tie in either counts as
    agreement; with :obj:`standard_errors` :math:`z > 0`, so does a difference within
    :math:`z` standard errors, see :func:`difference_sign`). Empty when the two data sets
    order the samplers alike."""
    a, b = first["results"], second["results"]
    both = [s for s in samplers if str(m) in a.get(s, {}) and str(m) in b.get(s, {})]
    return [
        (x, y)
        for x, y in combinations(both, 2)
        if difference_sign(first, x, y, m, standard_errors)
        * difference_sign(second, x, y, m, standard_errors)
        < 0
    ]


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
