r"""The README works as written: it opens with the two commands (CI runs the second), each
of its ``python`` blocks runs on its own in a fresh namespace (each defines its own small
synthetic data), its ``tg-samplenet`` lines are valid usage, its local links and figures
exist, and its headline results are those of the committed runs."""

import json
import re
import runpy
import shlex
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text(encoding="utf-8")
BLOCKS = re.findall(r"^```(\w*)\n(.*?)^```$", README, flags=re.S | re.M)
PYTHON = [code for language, code in BLOCKS if language == "python"]


def test_opens_with_the_two_commands():
    assert BLOCKS[0] == ("bash", "bash setup.sh && .venv/bin/python examples/classification.py\n")
    assert BLOCKS[1] == ("bash", "bash setup.sh && .venv/bin/python -m pytest -q\n")
    # .ci/run takes the first such line as the test command.
    first = re.search(r"^bash setup\.sh && .*pytest.*$", README, flags=re.M)
    assert first.group(0) == "bash setup.sh && .venv/bin/python -m pytest -q"


def test_is_short():
    assert len(README.splitlines()) <= 250


@pytest.mark.parametrize("number", range(len(PYTHON)))
def test_python_block_runs(number, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # the blocks write their runs/ here
    script = tmp_path / f"block{number}.py"
    script.write_text(PYTHON[number])
    torch.manual_seed(0)
    runpy.run_path(str(script), run_name="__main__")


def test_there_are_python_blocks():
    assert len(PYTHON) >= 2


def test_command_lines_parse():
    from tg_samplenet.cli.main import build_parser

    lines = [
        line
        for language, code in BLOCKS
        if language == "bash"
        for line in code.splitlines()
        if line.startswith("tg-samplenet ")
    ]
    assert {shlex.split(line)[1] for line in lines} == {"sample", "info", "train"}
    for line in lines:
        args = shlex.split(line.split("#")[0])[1:]
        parsed = build_parser().parse_args(args)  # argparse exits on bad usage
        assert parsed.command == args[0]


def test_local_links_exist():
    targets = re.findall(r"\]\(([^)\s]+)\)", README)
    local = [t for t in targets if not re.match(r"[a-z]+://", t) and not t.startswith("#")]
    assert local
    for target in local:
        assert (ROOT / target.split("#")[0]).exists(), target


def _row(first_cell: str) -> list[str]:
    for line in README.splitlines():
        cells = [cell.strip().strip("*") for cell in line.strip().strip("|").split("|")]
        if line.startswith("|") and cells[0].startswith(first_cell):
            return cells
    raise AssertionError(f"no row {first_cell!r} in the README's results table")


def _result(run: str, sampler: str, size: str) -> float:
    record = json.loads((ROOT / "docs" / "results" / run / "results.json").read_text())
    return record["complete"] if sampler == "complete" else record["results"][sampler][size]


# The headline table: its row, the run, the sample size, the decimals, and the cells
# complete clouds, FPS, S-NET, SampleNet.
HEADLINES = [
    ("classification, built-in shapes", "classification", "32", 3),
    ("classification, ModelNet10 scans", "classification-cpu-real", "32", 3),
    ("registration, built-in cars", "registration", "32", 2),
    ("reconstruction, built-in shapes", "reconstruction", "16", 3),
]


@pytest.mark.parametrize("row, run, size, decimals", HEADLINES)
def test_headline_results_are_the_committed_runs(row, run, size, decimals):
    cells = _row(row)
    columns = ("complete", "fps", "snet", "samplenet")
    expected = [f"{_result(run, name, size):.{decimals}f}" for name in columns]
    assert cells[2:6] == expected, f"{row}: README {cells[2:6]}, docs/results/{run} {expected}"


def test_progressive_claim_is_the_committed_run():
    # "ahead of FPS at every size from 8 to 128 points (at 8 points 0.848 against 0.484 ...)"
    record = json.loads((ROOT / "docs/results/classification-cpu-real/results.json").read_text())
    progressive, fps = record["results"]["samplenet_progressive"], record["results"]["fps_vanilla"]
    assert all(progressive[m] > fps[m] for m in ("8", "16", "32", "64", "128"))
    assert f"{progressive['8']:.3f} against {fps['8']:.3f}" in README
