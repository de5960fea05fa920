r"""The ordering of samplers and the agreement of two data sets on it
(:mod:`reproduction.ordering`, :obj:`benchmarks/data_agreement.py`), against
brute-force counts over every pair and on results files the test writes."""

from __future__ import annotations

import json
import runpy
import sys
from itertools import combinations, permutations
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from reproduction.ordering import (
    ORDERED_GROUPS,
    difference_sign,
    discordant_pairs,
    ordering_table,
    sampler_ranking,
)

ROOT = Path(__file__).resolve().parents[1]
SIZES = (64, 32, 16)
# Five names in a fixed order, to order in the property tests.
ORDERED_SAMPLERS = ("fps", "random", "snet", "samplenet", "voxel")


def results(values: dict[str, dict[int, float]], higher_is_better: bool = True) -> dict:
    return {
        "task": "classification",
        "metric": "accuracy",
        "higher_is_better": higher_is_better,
        "complete": 0.95,
        "dataset": "synthetic",
        "settings": {"num_points": 1024},
        "num_evaluated": 280,
        "results": {name: {str(m): v for m, v in row.items()} for name, row in values.items()},
    }


scores = st.lists(
    st.sampled_from([0.1, 0.25, 0.5, 0.75, 0.9]), min_size=len(ORDERED_SAMPLERS), max_size=5
)


@given(scores, st.booleans())
def test_ranking_is_sorted_best_first_and_stable_on_ties(values, higher):
    run = results({s: {32: v} for s, v in zip(ORDERED_SAMPLERS, values, strict=True)}, higher)
    ranking = sampler_ranking(run, 32, ORDERED_SAMPLERS)
    assert sorted(ranking) == sorted(ORDERED_SAMPLERS)
    got = [run["results"][s]["32"] for s in ranking]
    assert got == sorted(got, reverse=higher)
    for a, b in combinations(ranking, 2):  # equal values keep the given order
        if run["results"][a]["32"] == run["results"][b]["32"]:
            assert ORDERED_SAMPLERS.index(a) < ORDERED_SAMPLERS.index(b)


@given(scores, scores)
def test_discordant_pairs_are_the_strictly_reversed_pairs(first, second):
    a = results({s: {32: v} for s, v in zip(ORDERED_SAMPLERS, first, strict=True)})
    b = results({s: {32: v} for s, v in zip(ORDERED_SAMPLERS, second, strict=True)})
    expected = [
        (x, y)
        for (i, x), (j, y) in combinations(enumerate(ORDERED_SAMPLERS), 2)
        if (first[i] > first[j] and second[i] < second[j])
        or (first[i] < first[j] and second[i] > second[j])
    ]
    assert discordant_pairs(a, b, 32, ORDERED_SAMPLERS) == expected
    assert sorted(map(sorted, discordant_pairs(b, a, 32, ORDERED_SAMPLERS))) == sorted(
        map(sorted, expected)
    )
    assert discordant_pairs(a, a, 32, ORDERED_SAMPLERS) == []


def test_a_difference_within_the_standard_errors_is_a_tie():
    # n = 798: the standard error of 0.9048 against 0.8960 is
    # sqrt((0.9048 * 0.0952 + 0.8960 * 0.1040) / 798) = 0.0150 (by hand).
    run = results({"snet": {64: 0.9048}, "fps": {64: 0.8960}})
    run["num_evaluated"] = 798
    assert difference_sign(run, "snet", "fps", 64) == 1
    assert difference_sign(run, "fps", "snet", 64) == -1
    assert difference_sign(run, "snet", "fps", 64, standard_errors=0.58) == 1  # 0.0088 > 0.0087
    assert difference_sign(run, "snet", "fps", 64, standard_errors=0.59) == 0  # 0.0088 < 0.0089
    assert difference_sign(run, "snet", "fps", 64, standard_errors=1.0) == 0
    lower = results({"snet": {64: 0.2}, "fps": {64: 0.1}}, higher_is_better=False)
    assert difference_sign(lower, "snet", "fps", 64) == -1
    other = results({"snet": {64: 0.80}, "fps": {64: 0.95}})
    other["num_evaluated"] = 798
    assert discordant_pairs(run, other, 64, ORDERED_SAMPLERS) == [("fps", "snet")]
    assert discordant_pairs(run, other, 64, ORDERED_SAMPLERS, standard_errors=1.0) == []


@pytest.mark.parametrize(
    "change, message", [({"num_evaluated": None}, "num_evaluated"), ({"metric": "nre"}, "accuracy")]
)
def test_standard_errors_need_an_accuracy_and_its_count(change, message):
    run = {**results({"snet": {64: 0.9}, "fps": {64: 0.8}}), **change}
    with pytest.raises(ValueError, match=message):
        difference_sign(run, "snet", "fps", 64, standard_errors=1.0)


@given(scores, scores, st.integers(1, 2000), st.floats(0.0, 3.0))
def test_noise_aware_pairs_are_the_strict_pairs_both_runs_separate(first, second, n, z):
    a = results({s: {32: v} for s, v in zip(ORDERED_SAMPLERS, first, strict=True)})
    b = results({s: {32: v} for s, v in zip(ORDERED_SAMPLERS, second, strict=True)})
    a["num_evaluated"] = b["num_evaluated"] = n

    def separated(x, y, values):
        i, j = ORDERED_SAMPLERS.index(x), ORDERED_SAMPLERS.index(y)
        p, q = values[i], values[j]
        return abs(p - q) > z * ((p * (1 - p) + q * (1 - q)) / n) ** 0.5

    strict = discordant_pairs(a, b, 32, ORDERED_SAMPLERS)
    expected = [pair for pair in strict if separated(*pair, first) and separated(*pair, second)]
    assert discordant_pairs(a, b, 32, ORDERED_SAMPLERS, standard_errors=z) == expected
    assert discordant_pairs(a, b, 32, ORDERED_SAMPLERS, standard_errors=0.0) == strict


def test_every_permutation_of_distinct_values():
    values = [0.9, 0.7, 0.5, 0.3, 0.1]
    base = results({s: {32: v} for s, v in zip(ORDERED_SAMPLERS, values, strict=True)})
    for order in permutations(range(5)):
        other = results({ORDERED_SAMPLERS[i]: {32: values[k]} for k, i in enumerate(order)})
        inversions = sum(1 for x, y in combinations(range(5), 2) if order.index(x) > order.index(y))
        assert len(discordant_pairs(base, other, 32, ORDERED_SAMPLERS)) == inversions


def test_samplers_missing_at_a_size_are_left_out():
    run = results({"fps": {64: 0.8, 32: 0.6}, "samplenet": {32: 0.7}, "random": {64: 0.5}})
    assert sampler_ranking(run, 64, ORDERED_SAMPLERS) == ["fps", "random"]
    assert sampler_ranking(run, 32, ORDERED_SAMPLERS) == ["samplenet", "fps"]
    other = results({"fps": {32: 0.9}, "samplenet": {32: 0.1}})
    assert discordant_pairs(run, other, 32, ORDERED_SAMPLERS) == [("fps", "samplenet")]
    assert discordant_pairs(run, other, 64, ORDERED_SAMPLERS) == []  # not in both at 64


def test_ordering_table_puts_the_runs_side_by_side():
    a = results({"fps": {32: 0.6}, "samplenet": {32: 0.7}})
    b = results({"fps": {32: 0.8}, "samplenet": {32: 0.75}})
    table = ordering_table(
        {"built-in": a, "real": b}, [32], {"PointNet": ("fps", "random", "samplenet")}
    )
    lines = table.splitlines()
    assert lines[0] == "| sampler | built-in m=32 | real m=32 |"
    assert "| fps | 0.6 | 0.8 |" in lines
    assert "| ranking on PointNet | samplenet > fps | fps > samplenet |" in lines
    assert "| random | – | – |" in lines


@pytest.mark.parametrize("agree", [True, False])
def test_benchmark_writes_its_report(tmp_path, monkeypatch, agree):
    rows = [s for group in ORDERED_GROUPS.values() for s in group]
    values = {s: {m: 0.9 - 0.1 * i for m in SIZES} for i, s in enumerate(rows)}
    other = {s: {m: v - 0.05 for m, v in row.items()} for s, row in values.items()}
    if not agree:  # swap two samplers of one network at m = 32, and two across networks
        other["snet"][32], other["samplenet"][32] = other["samplenet"][32], other["snet"][32]
        other["fps"][64], other["fps_vanilla"][64] = 0.1, 0.01
    paths = []
    for name, values_ in (("built_in", values), ("real", other)):
        path = tmp_path / f"{name}.json"
        path.write_text(json.dumps(results(values_)))
        paths.append(str(path))
    out = tmp_path / "out"
    argv = ["--built-in", paths[0], "--real", paths[1], "--out", str(out)]
    monkeypatch.setattr(sys, "argv", ["data_agreement.py", *argv])
    runpy.run_path(str(ROOT / "benchmarks" / "data_agreement.py"), run_name="__main__")
    data = json.loads((out / "data_agreement.json").read_text())
    assert data["agree"] is agree
    # Differences of 0.1 between the rows are many standard errors on 280 clouds: the count
    # beyond noise is the strict one.
    assert data["discordant_beyond_noise"] == data["discordant_pairs"]
    assert data["agree_beyond_noise"] is agree and data["pairs"] == 3 * (6 + 3)
    assert data["discordant_pairs"]["32"] == ([] if agree else [["snet", "samplenet"]])
    if not agree:  # fps against the other PointNet rows; fps_vanilla against its group
        assert sorted(map(tuple, data["discordant_pairs"]["64"])) == sorted(
            [("fps", "random"), ("fps", "snet"), ("fps", "samplenet")]
            + [
                ("fps_vanilla", "samplenet_progressive"),
                ("fps_vanilla", "samplenet_progressive_prefix"),
            ]
        )
    assert data["rankings"]["built-in"]["PointNet"]["64"] == list(ORDERED_GROUPS["PointNet"])
    assert "same ordering" in (out / "data_agreement.md").read_text()
    assert (out / "data_agreement.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_benchmark_names_a_missing_file(tmp_path, monkeypatch):
    missing = str(tmp_path / "nothing.json")
    monkeypatch.setattr(sys, "argv", ["data_agreement.py", "--built-in", missing])
    with pytest.raises(SystemExit, match="no results.json there"):
        runpy.run_path(str(ROOT / "benchmarks" / "data_agreement.py"), run_name="__main__")


def test_benchmark_says_when_a_run_lacks_its_cloud_count(tmp_path, monkeypatch):
    # Results written before examples/classification.py recorded num_evaluated: the strict
    # count still works, the count beyond noise says what is missing and how to get it.
    rows = {s: {m: 0.9 - 0.1 * i for m in SIZES} for i, s in enumerate(ORDERED_GROUPS["PointNet"])}
    paths = []
    for name in ("built_in", "real"):
        data = results(rows)
        del data["num_evaluated"]
        path = tmp_path / f"{name}.json"
        path.write_text(json.dumps(data))
        paths.append(str(path))
    script = str(ROOT / "benchmarks" / "data_agreement.py")
    argv = ["data_agreement.py", "--built-in", paths[0], "--real", paths[1], "--out"]
    monkeypatch.setattr(sys, "argv", [*argv, str(tmp_path / "a")])
    with pytest.raises(SystemExit, match="num_evaluated.*rerun the example"):
        runpy.run_path(script, run_name="__main__")
    monkeypatch.setattr(sys, "argv", [*argv, str(tmp_path / "b"), "--standard-errors", "0"])
    runpy.run_path(script, run_name="__main__")
    assert json.loads((tmp_path / "b" / "data_agreement.json").read_text())["agree"] is True
