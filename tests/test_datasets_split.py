import h5py
import numpy as np
import pytest
import torch

from reproduction.datasets import get_dataset
from tg_samplenet.datasets.split import holdout, stratified_split
from tg_samplenet.ops.checks import InputError, InputTypeError


def _labels(sizes, seed=0):
    # Class c repeated sizes[c] times, shuffled, so that classes are interleaved.
    y = torch.cat([torch.full((n,), c) for c, n in enumerate(sizes)])
    return y[torch.randperm(y.numel(), generator=torch.Generator().manual_seed(seed))]


@pytest.mark.parametrize("fraction", [0.0, 0.1, 0.2, 0.5, 0.9])
def test_each_class_keeps_its_share(fraction):
    sizes = [106, 515, 889, 7, 1, 0, 3]
    y = _labels(sizes)
    train, val = stratified_split(y, fraction, seed=3)
    expected = torch.round(torch.tensor(sizes, dtype=torch.float64) * fraction).long()
    assert torch.equal(torch.bincount(y[val], minlength=len(sizes)), expected)
    # The two parts are sorted, disjoint and cover every item once.
    assert torch.equal(torch.sort(train).values, train) and torch.equal(torch.sort(val).values, val)
    assert torch.equal(torch.sort(torch.cat([train, val])).values, torch.arange(y.numel()))


def test_the_draw_depends_on_the_seed_only():
    y = _labels([50, 50, 50])
    first = stratified_split(y, 0.2, seed=7)
    again = stratified_split(y.clone(), 0.2, seed=7)
    other = stratified_split(y, 0.2, seed=8)
    assert torch.equal(first[1], again[1])
    assert not torch.equal(first[1], other[1])


def test_every_item_of_a_class_is_equally_likely_to_be_held_out():
    # 400 seeds: each of the 10 items of a class is held out in about 20 % of the draws.
    y = torch.tensor([0] * 10 + [1] * 10)
    held = torch.zeros(20)
    for seed in range(400):
        held[stratified_split(y, 0.2, seed)[1]] += 1
    assert torch.all((held / 400 - 0.2).abs() < 0.07)


def _write_root(root, sizes):
    rng = np.random.default_rng(0)
    label = np.concatenate([np.full(n, c) for c, n in enumerate(sizes)]).astype(np.uint8)
    data = rng.normal(size=(label.size, 16, 3)).astype(np.float32)
    for split, part in (("train", slice(None)), ("test", slice(0, 3))):
        with h5py.File(root / f"ply_data_{split}0.h5", "w") as f:
            f.create_dataset("data", data=data[part])
            f.create_dataset("label", data=label[part, None])
        (root / f"{split}_files.txt").write_text(f"ply_data_{split}0.h5\n")
    (root / "shape_names.txt").write_text("\n".join(f"c{i}" for i in range(len(sizes))))
    return label


def test_get_dataset_holds_out_a_validation_part(tmp_path):
    label = _write_root(tmp_path, [10, 20, 5])
    train = get_dataset("h5", str(tmp_path), "train", num_points=16, val_fraction=0.2)
    val = get_dataset("h5", str(tmp_path), "val", num_points=16, val_fraction=0.2)
    test = get_dataset("h5", str(tmp_path), "test", num_points=16, val_fraction=0.2)
    assert (len(train), len(val), len(test)) == (28, 7, 3)
    assert torch.bincount(torch.cat([d.y for d in val]), minlength=3).tolist() == [2, 4, 1]
    assert val.classes == ["c0", "c1", "c2"]
    # The parts are disjoint clouds of the training file, with their own labels.
    full = get_dataset("h5", str(tmp_path), "train", num_points=16)
    _, val_index = stratified_split(torch.from_numpy(label.astype(np.int64)), 0.2, seed=0)
    for data, i in zip(val, val_index.tolist(), strict=True):
        assert torch.equal(data.pos, full[i].pos) and int(data.y) == label[i]
    seen = {tuple(d.pos[1].tolist()) for d in train} | {tuple(d.pos[1].tolist()) for d in val}
    assert len(seen) == len(full)


def test_holdout_of_a_sliced_dataset_reads_its_own_labels(tmp_path):
    _write_root(tmp_path, [6, 6])
    full = get_dataset("h5", str(tmp_path), "train", num_points=16)
    part = full[torch.arange(6, 12)]  # class 1 only
    val = holdout(part, "val", 0.5)
    assert len(val) == 3 and all(int(d.y) == 1 for d in val)


@pytest.mark.parametrize(
    "kwargs, error, message",
    [
        (dict(val_fraction=1.0), InputError, "val_fraction must lie in"),
        (dict(val_fraction=-0.1), InputError, "val_fraction must be at least 0"),
        (dict(val_fraction="0.2"), InputTypeError, "val_fraction must be a real number"),
        (dict(y=torch.tensor([0.0, 1.0])), InputTypeError, "y must be an integer tensor"),
        (dict(y=torch.tensor([0, -1])), InputError, "y must hold class labels >= 0"),
        (dict(seed=-1), InputError, "seed must be at least 0"),
    ],
)
def test_bad_arguments_are_named(kwargs, error, message):
    args = dict(y=torch.tensor([0, 1, 1]), val_fraction=0.5, seed=0) | kwargs
    with pytest.raises(error, match=message):
        stratified_split(**args)


def test_holdout_takes_train_or_val_only(tmp_path):
    _write_root(tmp_path, [4])
    full = get_dataset("h5", str(tmp_path), "train", num_points=16)
    with pytest.raises(InputError, match="split must be 'train' or 'val'"):
        holdout(full, "test", 0.2)
    with pytest.raises(InputTypeError, match="dataset must be a PyG Dataset"):
        holdout([1, 2], "val", 0.2)
