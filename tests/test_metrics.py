import math

import numpy as np
import pytest
import torch

from reproduction.tasks.classification import accuracy, per_class_accuracy
from reproduction.tasks.metrics import per_class_mean
from reproduction.tasks.reconstruction import normalized_reconstruction_error
from reproduction.tasks.registration import (
    rotation_errors,
    sampling_consistency,
)
from reproduction.tasks.rotations import euler_angles_to_matrix, random_rotations
from reproduction.testing import brute_chamfer


def brute_force_chamfer(x, y, batch_x=None, batch_y=None, reduction="mean"):
    r""":func:`~reproduction.testing.brute_chamfer` one cloud at a time, with the call
    signature of :func:`~tg_samplenet.chamfer_distance`."""
    batch_x = torch.zeros(len(x), dtype=torch.long) if batch_x is None else batch_x
    batch_y = torch.zeros(len(y), dtype=torch.long) if batch_y is None else batch_y
    clouds = range(int(max(batch_x.max(), batch_y.max())) + 1)
    values = [brute_chamfer(x[batch_x == b].tolist(), y[batch_y == b].tolist()) for b in clouds]
    values = torch.tensor(values, dtype=x.dtype)
    return values.mean() if reduction == "mean" else values


def test_accuracy_from_logits_and_labels():
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(50, 6, generator=g)
    target = torch.randint(0, 6, (50,), generator=g)
    expected = sum(int(logits[i].argmax() == target[i]) for i in range(50)) / 50
    assert float(accuracy(logits, target)) == pytest.approx(expected)
    assert float(accuracy(logits.argmax(-1), target)) == pytest.approx(expected)
    assert float(accuracy(target, target)) == 1.0
    with pytest.raises(ValueError, match="different numbers"):
        accuracy(logits[:3], target)
    with pytest.raises(ValueError, match="target"):
        accuracy(logits, target.float())


def test_per_class_mean_and_accuracy():
    values = torch.tensor([1.0, 2.0, 3.0, 10.0, 4.0])
    labels = torch.tensor([0, 0, 3, 1, 3])
    out = per_class_mean(values, labels, num_classes=5)
    expected = [1.5, 10.0, math.nan, 3.5, math.nan]
    np.testing.assert_allclose(out.numpy(), expected)
    assert per_class_mean(values, labels).shape == (4,)
    with pytest.raises(ValueError, match="num_classes"):
        per_class_mean(values, labels, num_classes=3)

    g = torch.Generator().manual_seed(1)
    logits = torch.randn(40, 4, generator=g)
    target = torch.randint(0, 3, (40,), generator=g)  # class 3 never occurs
    pred = logits.argmax(-1)
    out = per_class_accuracy(logits, target)
    assert out.shape == (4,)
    for c in range(3):
        mask = target == c
        assert float(out[c]) == pytest.approx(float((pred[mask] == c).float().mean()))
    assert math.isnan(float(out[3]))


def test_rotation_errors_against_known_angles():
    R_gt = random_rotations(4, 180.0, generator=0, dtype=torch.float64)
    degrees = torch.tensor([0.0, 5.0, 30.0, 170.0], dtype=torch.float64)
    about_z = torch.zeros(4, 3, dtype=torch.float64)
    about_z[:, 2] = torch.deg2rad(degrees)
    R_est = R_gt @ euler_angles_to_matrix(about_z)
    torch.testing.assert_close(rotation_errors(R_est, R_gt), degrees)
    with pytest.raises(ValueError, match="one shape"):
        rotation_errors(R_est[:2], R_gt)


def make_pair(sizes, seed):
    g = torch.Generator().manual_seed(seed)
    pos = torch.randn(sum(sizes), 3, generator=g, dtype=torch.float64)
    batch = torch.arange(len(sizes)).repeat_interleave(torch.tensor(sizes))
    return pos, batch


def test_sampling_consistency_against_brute_force():
    template, template_batch = make_pair([5, 3, 8], seed=0)
    source, source_batch = make_pair([4, 6, 2], seed=1)
    R_gt = random_rotations(3, 45.0, generator=2, dtype=torch.float64)
    out = sampling_consistency(
        template,
        source,
        R_gt,
        template_batch,
        source_batch,
        reduction="none",
        chamfer=brute_force_chamfer,
    )
    expected = []
    for b in range(3):
        back = source[source_batch == b] @ R_gt[b]  # rows of R^T p
        expected.append(brute_force_chamfer(template[template_batch == b], back))
    torch.testing.assert_close(out, torch.stack(expected))
    mean = sampling_consistency(
        template, source, R_gt, template_batch, source_batch, chamfer=brute_force_chamfer
    )
    torch.testing.assert_close(mean, out.mean())


def test_sampling_consistency_is_zero_for_matching_samples():
    template, batch = make_pair([6, 6], seed=3)
    R_gt = random_rotations(2, 45.0, generator=4, dtype=torch.float64)
    source = torch.einsum("nij,nj->ni", R_gt[batch], template)
    perm = torch.tensor([5, 4, 3, 2, 1, 0, 11, 10, 9, 8, 7, 6])  # order does not matter
    out = sampling_consistency(
        template,
        source[perm],
        R_gt,
        batch,
        batch,
        reduction="none",
        chamfer=brute_force_chamfer,
    )
    torch.testing.assert_close(out, torch.zeros(2, dtype=torch.float64))
    # The wrong direction (R_gt instead of its inverse) is not consistent.
    wrong = sampling_consistency(
        template, source, R_gt.transpose(1, 2), batch, batch, chamfer=brute_force_chamfer
    )
    assert float(wrong) > 1e-3


def test_sampling_consistency_default_chamfer_and_errors():
    template, template_batch = make_pair([5, 7], seed=5)
    source, source_batch = make_pair([6, 3], seed=6)
    R_gt = random_rotations(2, 45.0, generator=7, dtype=torch.float64)
    expected = sampling_consistency(
        template,
        source,
        R_gt,
        template_batch,
        source_batch,
        reduction="none",
        chamfer=brute_force_chamfer,
    )
    out = sampling_consistency(
        template, source, R_gt, template_batch, source_batch, reduction="none"
    )
    torch.testing.assert_close(out, expected)
    with pytest.raises(ValueError, match="rotation"):
        sampling_consistency(template, source, R_gt[:1], template_batch, source_batch)
    with pytest.raises(ValueError, match="reduction"):
        sampling_consistency(
            template,
            source,
            R_gt,
            template_batch,
            source_batch,
            reduction="max",
            chamfer=brute_force_chamfer,
        )


def test_normalized_reconstruction_error_is_mean_of_ratios():
    cd_sampled = torch.tensor([2.0, 3.0, 1.0])
    cd_full = torch.tensor([1.0, 6.0, 0.5])
    ratios = [2.0 / 1.0, 3.0 / 6.0, 1.0 / 0.5]
    assert float(normalized_reconstruction_error(cd_sampled, cd_full)) == pytest.approx(
        sum(ratios) / 3
    )
    # Not the ratio of the means (6/7.5 = 0.8).
    assert float(normalized_reconstruction_error(cd_sampled, cd_full)) != pytest.approx(0.8)
    torch.testing.assert_close(
        normalized_reconstruction_error(cd_sampled, cd_full, reduction="none"),
        torch.tensor(ratios),
    )
    with pytest.raises(ValueError, match="positive"):
        normalized_reconstruction_error(cd_sampled, torch.tensor([1.0, 0.0, 1.0]))
    with pytest.raises(ValueError, match="one length"):
        normalized_reconstruction_error(cd_sampled, cd_full[:2])
