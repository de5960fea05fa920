r"""Runs the fuzz cases that once crashed inside torch_cluster or torch_scatter
(tests/fuzz_native_cases.py) in a subprocess: a segfault or heap corruption then fails this
test with the signal instead of ending the test run."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent


def test_native_cases_in_a_subprocess():
    pytest.importorskip("torch_cluster")
    command = [
        sys.executable,
        "-m",
        "pytest",
        "-q",
        "-s",
        "-p",
        "no:cacheprovider",
        "--rootdir",
        str(HERE.parent),
        str(HERE / "fuzz_native_cases.py"),
    ]
    env = {**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")}
    done = subprocess.run(command, capture_output=True, text=True, env=env, timeout=600)
    report = (done.stdout + done.stderr)[-4000:]
    print(report)
    assert done.returncode >= 0, f"the fuzz process died of signal {-done.returncode}:\n{report}"
    assert done.returncode == 0, f"native fuzz cases failed:\n{report}"
    assert " passed" in done.stdout and " failed" not in done.stdout
