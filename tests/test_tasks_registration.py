r"""The registration task of :mod:`reproduction.tasks.registration`: the pair generator, the
rotation error and sampling consistency of the evaluation, and the random-start FPS baseline,
against SciPy and brute-force references."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.spatial.transform import Rotation
from torch_geometric.data import Data
from torch_geometric.loader import DataLoader

from reproduction.tasks.registration import (
    PCRNetOutput,
    evaluate_registration,
    make_pairs,
    random_start_fps,
    registration_loss,
)
from reproduction.testing import brute_chamfer


def random_clouds(num_clouds: int, num_points: int, seed: int = 0) -> list[Data]:
    generator = torch.Generator().manual_seed(seed)
    return [
        Data(pos=torch.rand(num_points, 3, generator=generator) - 0.5, y=torch.tensor([i % 2]))
        for i in range(num_clouds)
    ]


def test_pairs_are_seeded():
    clouds = random_clouds(3, 20)
    a = make_pairs(clouds, 4, seed=7)
    b = make_pairs(clouds, 4, seed=7)
    c = make_pairs(clouds, 4, seed=8)
    assert len(a) == 12
    for p, q in zip(a, b, strict=True):
        assert torch.equal(p.rotation, q.rotation) and torch.equal(p.source, q.source)
    assert not torch.equal(torch.cat([p.rotation for p in a]), torch.cat([p.rotation for p in c]))


@pytest.mark.parametrize("max_degrees", [45.0, 10.0])
def test_pair_angles_within_bounds_and_match_rotation(max_degrees):
    pairs = make_pairs(random_clouds(5, 8), 40, seed=0, max_degrees=max_degrees)
    angles = torch.cat([p.angles for p in pairs]).double()
    assert angles.abs().max() <= max_degrees
    # Uniform draws fill the range: every axis gets angles near both ends.
    assert (angles.amax(0) > 0.8 * max_degrees).all()
    assert (angles.amin(0) < -0.8 * max_degrees).all()
    # Intrinsic x-y-z Euler angles, checked against SciPy.
    expected = Rotation.from_euler("XYZ", angles.numpy(), degrees=True).as_matrix()
    rotations = torch.cat([p.rotation for p in pairs]).double().numpy()
    np.testing.assert_allclose(rotations, expected, atol=1e-5)


def test_source_is_rotated_template_point_for_point():
    clouds = random_clouds(2, 16, seed=3)
    pairs = make_pairs(clouds, 3, seed=1)
    for i, pair in enumerate(pairs):
        template = clouds[i // 3].pos
        assert torch.equal(pair.pos, template)
        R = pair.rotation[0].double().numpy()
        expected = np.stack([R @ p for p in template.double().numpy()])
        np.testing.assert_allclose(pair.source.double().numpy(), expected, atol=1e-6)


def test_pairs_reject_no_rotations():
    with pytest.raises(ValueError, match="rotations_per_shape"):
        make_pairs(random_clouds(1, 4), 0, seed=0)


class FixedRotation(torch.nn.Module):
    r"""Stands in for PCRNet: returns R_gt of each pair turned by a known angle about z."""

    def __init__(self, rotation_gt: torch.Tensor, degrees: torch.Tensor):
        super().__init__()
        c, s = torch.cos(torch.deg2rad(degrees)), torch.sin(torch.deg2rad(degrees))
        z, o = torch.zeros_like(c), torch.ones_like(c)
        turn = torch.stack([torch.stack(r, -1) for r in ((c, -s, z), (s, c, z), (z, z, o))], -2)
        self.rotation = turn @ rotation_gt

    def forward(self, template, source, template_batch, source_batch):
        return PCRNetOutput(self.rotation, None, None)


def test_rotation_error_is_the_geodesic_angle_not_twice_it():
    pairs = make_pairs(random_clouds(3, 10), 2, seed=5)
    rotation_gt = torch.cat([p.rotation for p in pairs])
    degrees = torch.tensor([0.0, 10.0, 20.0, 45.0, 90.0, 170.0])
    loader = DataLoader(pairs, batch_size=len(pairs), follow_batch=["source"])
    errors, consistency = evaluate_registration(FixedRotation(rotation_gt, degrees), loader, "cpu")
    # Brute force: the angle of R_est^T R_gt from its trace, in float64.
    est = FixedRotation(rotation_gt, degrees).rotation.double()
    relative = est.transpose(1, 2) @ rotation_gt.double()
    trace = relative.diagonal(dim1=1, dim2=2).sum(1)
    expected = torch.rad2deg(torch.arccos(((trace - 1) / 2).clamp(-1, 1)))
    torch.testing.assert_close(errors.double(), expected, atol=1e-3, rtol=0)
    torch.testing.assert_close(errors.double(), degrees.double(), atol=1e-3, rtol=0)
    # Complete clouds: the source rotated back is the template exactly.
    assert consistency.abs().max() < 1e-10


def test_consistency_is_chamfer_of_samples_in_template_frame():
    pairs = make_pairs(random_clouds(2, 12, seed=9), 2, seed=2)
    rotation_gt = torch.cat([p.rotation for p in pairs])
    loader = DataLoader(pairs, batch_size=len(pairs), follow_batch=["source"])
    calls = []

    def sample(pos, batch):
        # Template: the first 5 points of each cloud; source: the last 5.
        calls.append(len(calls))
        rank = torch.arange(pos.size(0)) - torch.searchsorted(batch, batch)
        keep = rank < 5 if len(calls) % 2 == 1 else rank >= 12 - 5
        return pos[keep], batch[keep]

    _, consistency = evaluate_registration(
        FixedRotation(rotation_gt, torch.zeros(len(pairs))), loader, "cpu", sample
    )
    expected = [
        brute_chamfer(p.pos[:5].double().tolist(), p.pos[-5:].double().tolist()) for p in pairs
    ]
    np.testing.assert_allclose(consistency.double().numpy(), expected, rtol=1e-4, atol=1e-7)


def test_random_start_fps_is_seeded_and_starts_anywhere():
    clouds = random_clouds(40, 30, seed=1)
    pos = torch.cat([c.pos for c in clouds])
    batch = torch.arange(40).repeat_interleave(30)
    first = random_start_fps(0)(pos, batch, 4)
    again = random_start_fps(0)(pos, batch, 4)
    assert torch.equal(first, again)
    starts = first.view(40, 4)[:, 0] - torch.arange(40) * 30
    assert len(set(starts.tolist())) > 5  # not always the first point
    # Each pick after the start is the farthest from those before it (brute force).
    for cloud in range(3):
        chosen = first.view(40, 4)[cloud].tolist()
        points = pos[cloud * 30 : (cloud + 1) * 30].double()
        for step in range(1, 4):
            dist = torch.cdist(points, pos[chosen[:step]].double()).min(1).values
            assert chosen[step] - cloud * 30 == int(dist.argmax())


def test_registration_loss_is_frobenius_plus_chamfer():
    pairs = make_pairs(random_clouds(2, 10, seed=6), 1, seed=3)
    loader = DataLoader(pairs, batch_size=2, follow_batch=["source"])
    data = next(iter(loader))
    turn = torch.tensor([[0.0, -1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 1.0]])  # 90 deg about z
    for estimate, expected_frobenius in ((data.rotation, 0.0), (turn @ data.rotation, None)):
        model = FixedRotation(estimate, torch.zeros(2))
        loss = registration_loss(
            model, data.pos, data.source, data.batch, data.source_batch, data.rotation
        )
        frobenius = (estimate @ data.rotation.transpose(1, 2) - torch.eye(3)).pow(2).sum((1, 2))
        chamfer = [
            brute_chamfer(
                pairs[b].source.double().tolist(),
                (pairs[b].pos.double() @ estimate[b].double().T).tolist(),
            )
            for b in range(2)
        ]
        expected = float(frobenius.mean()) + sum(chamfer) / 2
        assert float(loss) == pytest.approx(expected, rel=1e-4, abs=1e-6)
        if expected_frobenius is not None:
            assert float(loss) == pytest.approx(0.0, abs=1e-6)  # the true rotation: no loss
