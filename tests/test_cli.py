r"""The ``tg-samplenet`` command line: sampling users' PLY, OFF, NPY and XYZ/TXT files with
every per-point attribute carried, a folder with bad files, ``info`` and ``train``.

The expected rows of every sampled file are the sampler's own eval-mode selection on the
file's coordinates (:obj:`SampleNet(...).index`), computed here independently of the CLI."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from tg_samplenet.cli.main import main
from tg_samplenet.datasets import read_point_file
from tg_samplenet.io import atomic_write
from tg_samplenet.nn.sampler import SampleNet

plyfile = pytest.importorskip("plyfile")

ROOT = Path(__file__).resolve().parents[1]
PLY_VERTEX = [
    ("x", "f4"),
    ("y", "f4"),
    ("z", "f4"),
    ("nx", "f4"),
    ("ny", "f4"),
    ("nz", "f4"),
    ("red", "u1"),
    ("green", "u1"),
    ("blue", "u1"),
    ("quality", "f8"),
]


def write_ply(path: Path, num_points: int, seed: int, text: bool = False) -> np.ndarray:
    r"""A PLY with normals, colours, a double property and two faces; returns the vertices."""
    rng = np.random.default_rng(seed)
    vertex = np.zeros(num_points, dtype=PLY_VERTEX)
    for name in ("x", "y", "z", "nx", "ny", "nz", "quality"):
        vertex[name] = rng.normal(size=num_points)
    for name in ("red", "green", "blue"):
        vertex[name] = rng.integers(0, 256, num_points)
    face = np.zeros(2, dtype=[("vertex_indices", "i4", (3,))])
    face["vertex_indices"] = [[0, 1, 2], [1, 2, 3]]
    elements = [
        plyfile.PlyElement.describe(vertex, "vertex"),
        plyfile.PlyElement.describe(face, "face"),
    ]
    plyfile.PlyData(elements, text=text, comments=["made by test_cli"]).write(str(path))
    return vertex


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    r"""A small progressive sampler, trained for a few steps on random clouds and saved."""
    torch.manual_seed(0)
    sampler = SampleNet(24, point_channels=(16, 32), head_channels=(32,), progressive=True)
    optimizer = torch.optim.Adam(sampler.parameters(), lr=1e-2)
    pos = torch.rand(4 * 64, 3)
    batch = torch.arange(4).repeat_interleave(64)
    for _ in range(3):
        out = sampler(pos, batch)
        loss = (out.simplified - 0.5).square().mean() + out.sigma
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    path = tmp_path_factory.mktemp("sampler") / "tiny.sampler.pt"
    sampler.save(path)
    return path


def expected_rows(checkpoint: Path, pos: np.ndarray, **size) -> np.ndarray:
    r"""The rows the sampler selects on :obj:`pos` alone (eval mode)."""
    sampler = SampleNet.load(checkpoint).eval()
    with torch.no_grad():
        out = sampler(torch.from_numpy(np.asarray(pos, dtype=np.float32)), **size)
    return out.index.numpy()


def xyz(array: np.ndarray) -> np.ndarray:
    return np.stack([array["x"], array["y"], array["z"]], axis=1)


def cli(capsys, *argv: str) -> tuple[int, str, str]:
    code = main([str(a) for a in argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_help_lists_the_commands(capsys):
    code, out, _ = cli(capsys, "--help")
    assert code == 0
    for command in ("sample", "info", "train"):
        assert command in out
    code, out, _ = cli(capsys, "sample", "--help")
    assert code == 0 and "--checkpoint" in out and "--ratio" in out


def test_sample_ply_keeps_every_vertex_property(tmp_path, capsys, checkpoint):
    inp, out = tmp_path / "in", tmp_path / "out"
    (inp / "scans").mkdir(parents=True)
    binary = write_ply(inp / "scans" / "room.ply", 300, seed=1)
    ascii_ = write_ply(inp / "chair.ply", 45, seed=2, text=True)
    code, _, err = cli(
        capsys, "sample", "--checkpoint", checkpoint, "--num-points", 20, inp, "-o", out,
        "--no-progress", "--device", "cpu",
    )  # fmt: skip
    assert code == 0, err
    for name, vertex in (("scans/room.ply", binary), ("chair.ply", ascii_)):
        written = plyfile.PlyData.read(str(out / name))
        source = plyfile.PlyData.read(str(inp / name))
        rows = written["vertex"].data
        assert rows.dtype == vertex.dtype  # every property, with its type
        expected = vertex[expected_rows(checkpoint, xyz(vertex), num_samples=20)]
        assert len(rows) == 20 and np.array_equal(rows, expected)
        assert len(np.unique(xyz(rows), axis=0)) == 20
        assert written.text == source.text and written.comments == source.comments
        assert "face" not in [el.name for el in written.elements]


def test_sample_npy_and_text_formats_by_ratio(tmp_path, capsys, checkpoint):
    rng = np.random.default_rng(3)
    inp, out = tmp_path / "in", tmp_path / "out"
    inp.mkdir()
    table = rng.normal(size=(90, 7))  # x y z + four attributes, float64
    np.save(inp / "table.npy", table)
    record = np.zeros(40, dtype=[("x", "f8"), ("y", "f8"), ("z", "f8"), ("label", "i2")])
    for name in "xyz":
        record[name] = rng.normal(size=40)
    record["label"] = np.arange(40)
    np.save(inp / "record.npy", record)
    lines = [
        f"{a:.6f},{b:.6f},{c:.6f},part{i}" for i, (a, b, c) in enumerate(rng.normal(size=(33, 3)))
    ]
    (inp / "cloud.txt").write_text("x,y,z,name\n" + "\n".join(lines) + "\n")
    off = ["COFF", "# a comment", "25 1 0"]
    off += [
        f"{a:.5f} {b:.5f} {c:.5f} 255 0 {i} 255" for i, (a, b, c) in enumerate(rng.random((25, 3)))
    ]
    (inp / "mesh.off").write_text("\n".join(off + ["3 0 1 2"]) + "\n")

    ratio = 0.3
    code, _, err = cli(
        capsys, "sample", "--checkpoint", checkpoint, "--ratio", ratio, inp, "-o", out,
        "--no-progress", "--batch-size", 4,
    )  # fmt: skip
    assert code == 0, err

    def count(n: int) -> int:  # torch_cluster's fps: ceil in float32
        return math.ceil(np.float32(n) * np.float32(ratio))

    got = np.load(out / "table.npy")
    index = expected_rows(checkpoint, table[:, :3], ratio=ratio)
    assert got.dtype == table.dtype and len(got) == count(90)
    assert np.array_equal(got, table[index])

    got = np.load(out / "record.npy")
    assert got.dtype == record.dtype and len(got) == count(40)
    assert np.array_equal(got, record[expected_rows(checkpoint, xyz(record), ratio=ratio)])

    text = (out / "cloud.txt").read_text().splitlines()
    pos = np.array([[float(v) for v in line.split(",")[:3]] for line in lines])
    assert text[0] == "x,y,z,name"
    assert text[1:] == [lines[i] for i in expected_rows(checkpoint, pos, ratio=ratio)]

    text = (out / "mesh.off").read_text().splitlines()
    vertices = off[3:]
    pos = np.array([[float(v) for v in line.split()[:3]] for line in vertices])
    assert text[:2] == ["COFF", f"{count(25)} 0 0"]
    assert text[2:] == [vertices[i] for i in expected_rows(checkpoint, pos, ratio=ratio)]


def test_batching_clouds_of_different_sizes_changes_nothing(tmp_path, capsys, checkpoint):
    inp = tmp_path / "in"
    inp.mkdir()
    for i, n in enumerate((120, 7, 64, 33, 1)):
        write_ply(inp / f"cloud{i}.ply", n, seed=10 + i)
    results = {}
    for batch_size in (1, 5):
        out = tmp_path / f"out{batch_size}"
        code, _, err = cli(
            capsys, "sample", "--checkpoint", checkpoint, "--num-points", 30, inp, "-o", out,
            "--batch-size", batch_size, "--no-progress",
        )  # fmt: skip
        assert code == 0, err
        results[batch_size] = {p.name: p.read_bytes() for p in sorted(out.iterdir())}
    assert results[1] == results[5]
    counts = {n: len(plyfile.PlyData.read(str(tmp_path / "out5" / n))["vertex"].data)
              for n in results[5]}  # fmt: skip
    assert counts == {"cloud0.ply": 30, "cloud1.ply": 7, "cloud2.ply": 30, "cloud3.ply": 30,
                      "cloud4.ply": 1}  # fmt: skip


def test_folder_with_one_corrupt_file(tmp_path, capsys, checkpoint):
    inp, out = tmp_path / "in", tmp_path / "out"
    (inp / "sub").mkdir(parents=True)
    write_ply(inp / "a.ply", 50, seed=4)
    np.save(inp / "sub" / "b.npy", np.random.default_rng(5).normal(size=(60, 3)).astype("f4"))
    (inp / "broken.ply").write_bytes(b"ply\nformat binary_little_endian 1.0\nelement vert")
    (inp / "notes.md").write_text("not a point file: skipped")
    code, _, err = cli(
        capsys, "sample", "--checkpoint", checkpoint, "--num-points", 10, inp, "-o", out,
        "--batch-size", 3, "--no-progress",
    )  # fmt: skip
    assert code == 1
    errors = [line for line in err.splitlines() if "error" in line]
    assert len(errors) == 1 and str(inp / "broken.ply") in errors[0]
    assert sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file()) == [
        "a.ply",
        "sub/b.npy",
    ]


def test_every_kind_of_bad_file_fails_alone(tmp_path, capsys, checkpoint):
    inp, out = tmp_path / "in", tmp_path / "out"
    inp.mkdir()
    np.save(inp / "good.npy", np.random.default_rng(6).normal(size=(40, 4)))
    np.save(inp / "empty.npy", np.zeros((0, 3)))
    np.save(inp / "flat.npy", np.zeros(12))
    np.save(inp / "two_columns.npy", np.zeros((5, 2)))
    (inp / "nan.xyz").write_text("0 0 0\n1 nan 1\n2 2 2\n")
    (inp / "huge.xyz").write_text("0 0 0\n1e39 0 0\n")  # overflows float32
    (inp / "ragged.txt").write_text("0 0 0\n1 1\n")
    (inp / "binary.txt").write_bytes(b"\xff\xfe\x00garbage")
    (inp / "short.off").write_text("OFF\n10 0 0\n0 0 0\n")
    missing = inp / "missing.ply"
    code, _, err = cli(
        capsys, "sample", "--checkpoint", checkpoint, "--num-points", 8, inp, missing,
        "-o", out, "--no-progress",
    )  # fmt: skip
    bad = ["empty.npy", "flat.npy", "two_columns.npy", "nan.xyz", "huge.xyz", "ragged.txt",
           "binary.txt", "short.off", "missing.ply"]  # fmt: skip
    assert code == len(bad)
    errors = [line for line in err.splitlines() if line.startswith("tg-samplenet: error:")]
    assert len(errors) == len(bad)
    for name in bad:
        assert sum(str(inp / name) in line for line in errors) == 1, name
    assert [p.name for p in out.iterdir()] == ["good.npy"]


def test_a_failed_rerun_keeps_what_was_written(tmp_path, capsys, checkpoint):
    inp, out = tmp_path / "in", tmp_path / "out"
    inp.mkdir()
    write_ply(inp / "a.ply", 80, seed=7)
    args = ["sample", "--checkpoint", checkpoint, "--num-points", 12, inp, "-o", out]
    assert cli(capsys, *args, "--no-progress")[0] == 0
    before = (out / "a.ply").read_bytes()
    (inp / "a.ply").write_bytes(b"ply\ncorrupted")
    assert cli(capsys, *args, "--no-progress")[0] == 1
    assert (out / "a.ply").read_bytes() == before


def test_atomic_write_never_leaves_a_partial_file(tmp_path):
    target = tmp_path / "cloud.npy"
    target.write_bytes(b"old")

    def crash(f):
        f.write(b"partial")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError, match="disk full"):
        atomic_write(target, crash)
    assert target.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["cloud.npy"]


def test_output_never_replaces_its_input(tmp_path, capsys, checkpoint):
    write_ply(tmp_path / "a.ply", 30, seed=8)
    before = (tmp_path / "a.ply").read_bytes()
    code, _, err = cli(
        capsys, "sample", "--checkpoint", checkpoint, "--num-points", 5, tmp_path,
        "-o", tmp_path, "--no-progress",
    )  # fmt: skip
    assert code == 1 and "would replace the input" in err
    assert (tmp_path / "a.ply").read_bytes() == before


def test_bad_options_and_checkpoints(tmp_path, capsys, checkpoint):
    np.save(tmp_path / "a.npy", np.zeros((4, 3)))
    base = ["sample", tmp_path / "a.npy", "-o", tmp_path / "out"]
    code, _, err = cli(capsys, *base, "--checkpoint", checkpoint, "--ratio", 0)
    assert code == 2 and "--ratio" in err
    code, _, err = cli(capsys, *base, "--checkpoint", checkpoint, "--num-points", 4, "--ratio", 1)
    assert code == 2 and "not allowed with" in err
    code, _, err = cli(capsys, *base, "--checkpoint", tmp_path / "a.npy", "--num-points", 2)
    assert code == 1 and str(tmp_path / "a.npy") in err


def test_read_point_file_reports_attributes(tmp_path):
    write_ply(tmp_path / "a.ply", 10, seed=9)
    file = read_point_file(tmp_path / "a.ply")
    assert file.pos.shape == (10, 3) and file.pos.dtype == np.float32
    assert file.attributes == ["nx", "ny", "nz", "red", "green", "blue", "quality"]


def test_info_on_a_sampler_and_on_bad_files(tmp_path, capsys, checkpoint):
    code, out, _ = cli(capsys, "info", checkpoint)
    assert code == 0
    assert "SampleNet(24, k=7, progressive=True)" in out
    assert "num out points: 24" in out and "trained on: not recorded" in out
    code, out, _ = cli(capsys, "info", "--json", checkpoint)
    info = json.loads(out)
    sampler = SampleNet.load(checkpoint)
    assert info["config"] == sampler.config
    assert info["parameters"] == sum(p.numel() for p in sampler.parameters())
    assert info["temperature"]["t"] == pytest.approx(float(sampler.projection.temperature.detach()))
    assert info["trained_on"] is None

    (tmp_path / "junk.pt").write_bytes(b"\x80\x02junk")
    truncated = tmp_path / "truncated.pt"
    truncated.write_bytes(checkpoint.read_bytes()[:200])
    for path in (tmp_path / "junk.pt", truncated, tmp_path / "missing.pt"):
        code, out, err = cli(capsys, "info", path)
        assert code == 1 and out == ""
        assert len(err.splitlines()) == 1 and str(path) in err


def console_command() -> list[str]:
    script = Path(sys.executable).parent / "tg-samplenet"
    return [str(script)] if script.exists() else [sys.executable, "-m", "tg_samplenet.cli"]


def test_console_script_in_a_subprocess(tmp_path, checkpoint):
    vertex = write_ply(tmp_path / "a.ply", 64, seed=11)
    env = dict(os.environ, OMP_NUM_THREADS="1")
    command = console_command() + ["sample", "--checkpoint", str(checkpoint)]
    command += ["--num-points", "16", str(tmp_path / "a.ply"), "-o", str(tmp_path / "out")]
    result = subprocess.run(command, capture_output=True, text=True, env=env, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    rows = plyfile.PlyData.read(str(tmp_path / "out" / "a.ply"))["vertex"].data
    assert np.array_equal(rows, vertex[expected_rows(checkpoint, xyz(vertex), num_samples=16)])
    result = subprocess.run(console_command() + ["--help"], capture_output=True, text=True)
    assert result.returncode == 0 and "sample" in result.stdout


def write_class_folders(root: Path, classes: int = 2, per_class: int = 4, seed: int = 12):
    r"""Labelled clouds as DATA/<class>/<file>: a sphere shell and a flat square, with
    a colour column, in two formats."""
    rng = np.random.default_rng(seed)
    for c in range(classes):
        (root / f"class{c}").mkdir(parents=True)
        for i in range(per_class):
            pos = rng.normal(size=(80 + 7 * i, 3))
            if c == 0:
                pos /= np.linalg.norm(pos, axis=1, keepdims=True)
            else:
                pos[:, 2] = 0.0
            table = np.concatenate([pos, rng.random((len(pos), 1))], axis=1)
            if i % 2:
                np.save(root / f"class{c}" / f"{i}.npy", table)
            else:
                np.savetxt(root / f"class{c}" / f"{i}.xyz", table, fmt="%.6f")


@pytest.mark.parametrize("task", ["classification", "reconstruction"])
def test_train_then_info_then_sample(tmp_path, capsys, task):
    data, out = tmp_path / "data", tmp_path / "run"
    write_class_folders(data)
    (data / "class0" / "broken.npy").write_bytes(b"not numpy")
    args = ["train", data, "--task", task, "-o", out, "--profile", "smoke", "--num-points", 32]
    args += ["--epochs", 1, "--task-epochs", 1, "--seed", 3, "--no-progress"]
    code, _, err = cli(capsys, *args)
    assert code == 1, err  # the broken file, reported and left out
    assert str(data / "class0" / "broken.npy") in err
    sampler_file = out / "samplenet_progressive.sampler.pt"
    sampler = SampleNet.load(sampler_file)
    assert sampler.progressive and sampler.num_out_points == 32

    code, text, _ = cli(capsys, "info", "--json", sampler_file)
    record = json.loads(text)["trained_on"]
    assert code == 0 and record["task"] == task and record["files"] == 8
    assert record["failed_files"] == 1 and record["classes"] == ["class0", "class1"]
    assert record["training_clouds"] + record["held_out_clouds"] == 8
    assert record["settings"]["num_points"] == 32 and record["seed"] == 3
    assert set(record["validation"]["samplenet_progressive"]) == {"16", "8"}
    assert record["command"].startswith("tg-samplenet train")
    assert json.loads((out / "train.json").read_text())["validation"] == record["validation"]
    code, text, _ = cli(capsys, "info", sampler_file)
    assert f"task: {task}" in text and "trained on: not recorded" not in text

    # The trained sampler samples the same files: a subset of their rows.
    code, _, err = cli(
        capsys, "sample", "--checkpoint", sampler_file, "--num-points", 10, data / "class1",
        "-o", tmp_path / "sampled", "--no-progress",
    )  # fmt: skip
    assert code == 0, err
    for path in sorted((data / "class1").iterdir()):
        source = read_point_file(path)
        written = read_point_file(tmp_path / "sampled" / path.name)
        index = expected_rows(sampler_file, source.pos, num_samples=10)
        assert np.array_equal(written.pos, source.pos[index])


def test_train_rerun_resumes_from_its_checkpoints(tmp_path, capsys):
    data, out = tmp_path / "data", tmp_path / "run"
    write_class_folders(data)
    args = ["train", data, "--task", "classification", "-o", out, "--profile", "smoke"]
    args += ["--num-points", 32, "--epochs", 1, "--task-epochs", 1, "--no-progress"]
    assert cli(capsys, *args)[0] == 0
    first = SampleNet.load(out / "samplenet_progressive.sampler.pt").state_dict()
    assert cli(capsys, *args)[0] == 0  # finished stages return at once, same weights
    second = SampleNet.load(out / "samplenet_progressive.sampler.pt").state_dict()
    assert all(torch.equal(first[k], second[k]) for k in first)


def test_train_needs_class_folders(tmp_path, capsys):
    np.save(tmp_path / "a.npy", np.random.default_rng(0).normal(size=(40, 3)))
    np.save(tmp_path / "b.npy", np.random.default_rng(1).normal(size=(40, 3)))
    code, _, err = cli(
        capsys, "train", tmp_path, "--task", "classification", "-o", tmp_path / "run",
        "--profile", "smoke", "--no-progress",
    )  # fmt: skip
    assert code == 2 and "not in a class folder" in err and str(tmp_path / "a.npy") in err


@pytest.mark.parametrize(
    "option, message",
    [
        (["--val-fraction", "1"], "--val-fraction"),
        (["--seed", "-1"], "--seed"),
        ([], "not a folder"),
    ],
)
def test_train_rejects_bad_options_before_training(tmp_path, capsys, option, message):
    data = tmp_path if option else tmp_path / "missing"
    args = ["train", data, "--task", "reconstruction", "-o", tmp_path / "run", *option]
    code, _, err = cli(capsys, *args)
    assert code == (2 if option else 1) and message in err and not (tmp_path / "run").exists()


def test_train_needs_two_usable_clouds(tmp_path, capsys):
    np.save(tmp_path / "a.npy", np.random.default_rng(0).normal(size=(40, 3)))
    (tmp_path / "b.xyz").write_text("0 0 nan\n")
    code, _, err = cli(
        capsys, "train", tmp_path, "--task", "reconstruction", "-o", tmp_path / "run",
        "--profile", "smoke", "--no-progress",
    )  # fmt: skip
    assert code == 1 and "1 usable point files" in err and str(tmp_path / "b.xyz") in err


@pytest.mark.slow
def test_sample_with_the_classification_examples_smoke_sampler(tmp_path):
    r"""The issue's round trip: a sampler trained by the example's --smoke run samples PLY
    (normals, colours) and NPY files through the console script."""
    env = dict(os.environ, OMP_NUM_THREADS="1")
    run = [sys.executable, str(ROOT / "examples" / "classification.py"), "--smoke"]
    run += ["--out", str(tmp_path / "smoke"), "--no-progress"]
    result = subprocess.run(run, capture_output=True, text=True, env=env, cwd=ROOT)
    assert result.returncode == 0, result.stderr[-2000:]
    (checkpoint,) = (tmp_path / "smoke").rglob("samplenet_progressive.sampler.pt")
    vertex = write_ply(tmp_path / "scan.ply", 500, seed=13)
    table = np.random.default_rng(14).normal(size=(300, 6)).astype(np.float32)
    np.save(tmp_path / "scan.npy", table)
    command = console_command() + ["sample", "--checkpoint", str(checkpoint), "--ratio", "0.1"]
    command += [str(tmp_path / "scan.ply"), str(tmp_path / "scan.npy"), "-o", str(tmp_path / "o")]
    result = subprocess.run(command, capture_output=True, text=True, env=env)
    assert result.returncode == 0, result.stderr
    rows = plyfile.PlyData.read(str(tmp_path / "o" / "scan.ply"))["vertex"].data
    assert np.array_equal(rows, vertex[expected_rows(checkpoint, xyz(vertex), ratio=0.1)])
    got = np.load(tmp_path / "o" / "scan.npy")
    assert np.array_equal(got, table[expected_rows(checkpoint, table[:, :3], ratio=0.1)])


@pytest.mark.parametrize("task", ["classification", "reconstruction"])
@pytest.mark.parametrize("profile", ["smoke", "cpu", "paper"])
def test_train_profiles_are_the_examples(task, profile):
    r"""``train``'s own settings hold the values of the examples' profiles."""
    from reproduction.config import CLASSIFICATION, RECONSTRUCTION
    from tg_samplenet.cli.config import PROFILES

    config = PROFILES[task][profile]
    example = {"classification": CLASSIFICATION, "reconstruction": RECONSTRUCTION}[task][profile]
    for name in ("num_points", "sizes", "control_sizes", "task_epochs", "sampler_epochs", "k"):
        assert getattr(config, name) == getattr(example, name), name
    assert (config.batch_size, config.task_lr, config.sampler_lr) == (
        example.batch_size, example.task_lr, example.sampler_lr,
    )  # fmt: skip
    assert config.loss == example.progressive_loss
    assert config.reduction == example.progressive_reduction
    assert config.lr_schedule == example.lr_schedule
    if task == "classification":
        assert config.task_channels == (*example.point_channels, example.task_width)
        assert config.head_channels == example.head_channels
    else:
        assert config.task_channels == (*example.encoder_channels, example.task_width)
        assert config.head_channels == example.decoder_channels
    sampler = {
        "point_channels": example.sampler_point_channels,
        "head_channels": example.sampler_head_channels,
        "initial_temperature": example.initial_temperature,
        "residual_gradient": example.residual_gradient or None,
    }
    assert config.sampler == {k: v for k, v in sampler.items() if v is not None}


def test_the_library_never_imports_reproduction():
    import ast

    for path in (ROOT / "tg_samplenet").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else []
            if isinstance(node, ast.ImportFrom):
                names = [node.module or ""]
            assert not any(n.split(".")[0] == "reproduction" for n in names), path
    code = (
        "import sys, tg_samplenet.cli.main; print(sorted(m for m in sys.modules if 'reprod' in m))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert result.returncode == 0 and result.stdout.strip() == "[]", result.stderr


def test_validation_table_against_direct_computations(make_clouds):
    r"""The held-out table: the metric's mean over clouds on the complete clouds, on brute-force
    farthest points, on m distinct random points of each cloud (drawn again alike from the
    seed) and on the sampler's own first m points."""
    from torch_geometric.data import Data
    from torch_geometric.loader import DataLoader

    from reproduction.testing import brute_fps
    from tg_samplenet.cli.train import Task, validate

    def metric(pos, batch, data):  # per cloud: the sum of squared norms of its points
        return torch.zeros(data.num_graphs, dtype=torch.float64).index_add_(
            0, batch, pos.double().square().sum(1)
        )

    task = Task("t", "norms", torch.nn.Identity(), None, metric)
    pos, batch = make_clouds([16] * 5, seed=4)
    clouds = [Data(pos=pos[batch == b]) for b in range(5)]
    loader = DataLoader(clouds, batch_size=2)
    sampler = SampleNet(16, point_channels=(8,), head_channels=(8,), progressive=True).eval()
    table = validate(task, sampler, loader, (8, 3), seed=5, device=torch.device("cpu"))

    def mean_over(index):
        return float(metric(pos[index], batch[index], Data(num_graphs=5)).mean())

    assert table["metric"] == "norms"
    assert table["complete"] == pytest.approx(mean_over(torch.arange(80)))
    with torch.no_grad():
        learned = sampler(pos, batch, num_samples=3).index
    assert table["samplenet_progressive"]["3"] == pytest.approx(mean_over(learned))
    for m in (8, 3):
        assert table["fps"][str(m)] == pytest.approx(mean_over(brute_fps(pos, batch, [m] * 5)))
    again = validate(task, sampler, loader, (8, 3), seed=5, device=torch.device("cpu"))
    other = validate(task, sampler, loader, (8, 3), seed=6, device=torch.device("cpu"))
    assert again["random"] == table["random"] and other["random"] != table["random"]
    # m random points of every cloud: between the m smallest and the m largest norms, and
    # m distinct points of each cloud.
    norms = pos.double().square().sum(1).view(5, 16).sort(1).values
    for m in (8, 3):
        low, high = norms[:, :m].sum(1).mean(), norms[:, -m:].sum(1).mean()
        assert low < table["random"][str(m)] < high

    def distinct(pos, batch, data):
        sizes = [len(torch.unique(pos[batch == b], dim=0)) for b in range(data.num_graphs)]
        return torch.tensor(sizes, dtype=torch.float64)

    counted = validate(task._replace(metric=distinct), sampler, loader, (8, 3), 5, "cpu")
    assert counted["random"] == counted["fps"] == {"8": 8.0, "3": 3.0}
