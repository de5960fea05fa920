r"""The documentation builds from the checkout with warnings as errors (``sphinx-build -W``),
documents every public name of the packages its API reference covers, shows the command
line's ``--help`` texts, and has a results page for every committed run that states the
run's command."""

import html as html_module
import importlib
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("sphinx")
pytest.importorskip("furo")

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"


@pytest.fixture(scope="module")
def html(tmp_path_factory) -> dict[str, str]:
    out = tmp_path_factory.mktemp("docs") / "html"
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    build = subprocess.run(
        [
            sys.executable,
            "-m",
            "sphinx",
            "-W",
            "--keep-going",
            "-q",
            "-b",
            "html",
            str(DOCS),
            str(out),
        ],  # fmt: skip
        capture_output=True,
        text=True,
        env=env,
        cwd=ROOT,
        timeout=600,
    )
    assert build.returncode == 0, build.stdout + build.stderr
    return {
        page.relative_to(out).as_posix(): page.read_text(encoding="utf-8")
        for page in out.rglob("*.html")
        if not page.relative_to(out).parts[0].startswith("_")
    }


def test_every_public_name_is_documented(html):
    sys.path.insert(0, str(DOCS / "_ext"))
    try:
        tg_docs = importlib.import_module("tg_docs")
    finally:
        sys.path.remove(str(DOCS / "_ext"))
    reference = "".join(text for page, text in html.items() if page.startswith("api/"))
    missing = []
    for package in tg_docs.API_PACKAGES:
        names = tg_docs.public_names(package)
        assert names, f"{package} has no __all__"
        for name in names:
            target = f"{tg_docs.home(package, name)}.{name}"
            if f'id="{target}"' not in reference:
                missing.append(f"{package}.{name} (as {target})")
    assert not missing, f"not in the API reference: {missing}"


def test_command_line_help_is_in_the_reference(html):
    page = html["api/cli.html"]
    for command in ("sample", "info", "train"):
        assert f"usage: tg-samplenet {command}" in page
    assert "usage: tg-samplenet [-h]" in page


def test_every_committed_run_has_a_page_with_its_command(html):
    pages = "".join(text for page, text in html.items() if page.startswith("results/"))
    text = " ".join(html_module.unescape(re.sub(r"<[^>]+>", "", pages)).split())
    runs = sorted(DOCS.glob("results/*/results.json"))
    assert runs
    for run in runs:
        command = json.loads(run.read_text())["command"]
        assert " ".join(command.split()) in text, f"no results page shows {run.parent.name}'s run"
