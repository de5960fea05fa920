import math

import numpy as np
import pytest
import torch
from scipy.spatial.transform import Rotation

from reproduction.tasks.rotations import (
    euler_angles_to_matrix,
    quaternion_to_matrix,
    random_euler_angles,
    random_rotations,
    rotate_points,
    rotation_angle,
)


def axis_angle_matrix(axis, degrees):
    # Rodrigues' formula, independent of the quaternion and Euler code.
    axis = np.asarray(axis, dtype=np.float64)
    axis = axis / np.linalg.norm(axis)
    theta = math.radians(degrees)
    k = np.array([[0, -axis[2], axis[1]], [axis[2], 0, -axis[0]], [-axis[1], axis[0], 0]])
    return torch.from_numpy(np.eye(3) + math.sin(theta) * k + (1 - math.cos(theta)) * k @ k)


def random_unit_quaternions(n, seed=0):
    g = torch.Generator().manual_seed(seed)
    q = torch.nn.functional.normalize(torch.randn(n, 4, generator=g, dtype=torch.float64), dim=-1)
    return torch.where(q[:, :1] < 0, -q, q)


def test_quaternion_to_matrix_is_axis_angle():
    for axis, deg in [([1, 0, 0], 30.0), ([0, 1, 0], -75.0), ([1, 2, -3], 123.0)]:
        unit = np.asarray(axis, dtype=np.float64) / np.linalg.norm(axis)
        half = math.radians(deg) / 2
        q = torch.tensor([math.cos(half), *(math.sin(half) * unit)])
        torch.testing.assert_close(quaternion_to_matrix(q), axis_angle_matrix(axis, deg))
        # q and -q are the same rotation, and scaling does not matter.
        torch.testing.assert_close(quaternion_to_matrix(-3 * q), axis_angle_matrix(axis, deg))


def test_quaternion_to_matrix_gives_rotations_and_matches_scipy():
    q = random_unit_quaternions(200)
    R = quaternion_to_matrix(q)
    eye = torch.eye(3, dtype=R.dtype).expand_as(R)
    torch.testing.assert_close(R @ R.transpose(1, 2), eye)
    torch.testing.assert_close(torch.linalg.det(R), torch.ones(200, dtype=R.dtype))
    scalar_last = torch.cat([q[:, 1:], q[:, :1]], dim=1).numpy()
    expected = torch.from_numpy(Rotation.from_quat(scalar_last).as_matrix())
    torch.testing.assert_close(R, expected)


@pytest.mark.parametrize(
    "index, axis, row", [(0, [1, 0, 0], "x"), (1, [0, 1, 0], "y"), (2, [0, 0, 1], "z")]
)
def test_euler_single_axis_closed_form(index, axis, row):
    theta = math.radians(37.0)
    angles = torch.zeros(3, dtype=torch.float64)
    angles[index] = theta
    c, s = math.cos(theta), math.sin(theta)
    expected = {
        "x": [[1, 0, 0], [0, c, -s], [0, s, c]],
        "y": [[c, 0, s], [0, 1, 0], [-s, 0, c]],
        "z": [[c, -s, 0], [s, c, 0], [0, 0, 1]],
    }[row]
    R = euler_angles_to_matrix(angles)
    torch.testing.assert_close(R, torch.tensor(expected, dtype=torch.float64))
    torch.testing.assert_close(R, axis_angle_matrix(axis, 37.0))


def test_euler_z_quarter_turn_maps_x_to_y():
    R = euler_angles_to_matrix(torch.tensor([0.0, 0.0, math.pi / 2], dtype=torch.float64))
    torch.testing.assert_close(
        R @ torch.tensor([1.0, 0.0, 0.0], dtype=torch.float64),
        torch.tensor([0.0, 1.0, 0.0], dtype=torch.float64),
    )


@pytest.mark.parametrize("convention", ["xyz", "zyx", "yxz", "zyz"])
def test_euler_composition_is_intrinsic(convention):
    angles = random_euler_angles(20, 170.0, generator=1, dtype=torch.float64)
    # Intrinsic order: R = R_a(t0) R_b(t1) R_c(t2), SciPy's upper-case convention.
    expected = Rotation.from_euler(convention.upper(), angles.numpy()).as_matrix()
    torch.testing.assert_close(
        euler_angles_to_matrix(angles, convention), torch.from_numpy(expected)
    )
    # The same product written out from single-axis rotations.
    single = []
    for axis, t in zip(convention, angles.unbind(-1), strict=True):
        a = torch.zeros_like(angles)
        a[:, "xyz".index(axis)] = t
        single.append(euler_angles_to_matrix(a))
    torch.testing.assert_close(
        euler_angles_to_matrix(angles, convention), single[0] @ single[1] @ single[2]
    )


def test_euler_rejects_bad_convention():
    with pytest.raises(ValueError, match="convention"):
        euler_angles_to_matrix(torch.zeros(3), "xxy")
    with pytest.raises(ValueError, match="convention"):
        euler_angles_to_matrix(torch.zeros(3), "abc")
    with pytest.raises(ValueError, match="angles"):
        euler_angles_to_matrix(torch.zeros(2))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("degrees", [0.0, 0.5, 10.0, 45.0, 90.0, 135.0, 179.0, 180.0])
def test_rotation_angle_known_angles(dtype, degrees):
    tol = 1e-3 if dtype == torch.float32 else 1e-8
    for axis in ([1, 0, 0], [0, 1, 0], [1, 2, 3], [-1, 0.5, 2]):
        R_delta = axis_angle_matrix(axis, degrees).to(dtype)
        R_gt = random_rotations(1, 180.0, generator=7, dtype=dtype)[0]
        # rotation_angle(R_est, R_gt) is the angle of R_est^T R_gt = R_delta.
        angle = rotation_angle(R_gt @ R_delta.T, R_gt)
        assert not torch.isnan(angle)
        assert abs(float(angle) - degrees) < tol
        assert abs(float(rotation_angle(R_gt, R_gt @ R_delta.T)) - degrees) < tol


def test_rotation_angle_is_half_the_authors_quaternion_formula():
    # The authors report 2 * acos(2 <q_est, q_gt>^2 - 1): twice the geodesic angle.
    half = math.radians(5.0)
    q_est = torch.tensor([math.cos(half), 0.0, math.sin(half), 0.0], dtype=torch.float64)
    q_gt = torch.tensor([1.0, 0.0, 0.0, 0.0], dtype=torch.float64)
    authors = math.degrees(2 * math.acos(2 * float(q_est @ q_gt) ** 2 - 1))
    ours = float(rotation_angle(quaternion_to_matrix(q_est), quaternion_to_matrix(q_gt)))
    assert ours == pytest.approx(10.0)
    assert authors == pytest.approx(2 * ours)


def test_rotation_angle_matches_arccos_and_radians():
    R1 = random_rotations(100, 180.0, generator=4, dtype=torch.float64)
    R2 = random_rotations(100, 180.0, generator=5, dtype=torch.float64)
    trace = (R1.transpose(1, 2) @ R2).diagonal(dim1=1, dim2=2).sum(-1)
    expected = torch.rad2deg(torch.arccos(((trace - 1) / 2).clamp(-1, 1)))
    torch.testing.assert_close(rotation_angle(R1, R2), expected)
    torch.testing.assert_close(rotation_angle(R1, R2, degrees=False), torch.deg2rad(expected))
    torch.testing.assert_close(rotation_angle(R1, R2), rotation_angle(R2, R1))


@pytest.mark.parametrize("degrees", [0.0, 180.0])
def test_rotation_angle_no_nan_value_or_gradient(degrees):
    R_est = axis_angle_matrix([0, 0, 1], degrees).float().requires_grad_()
    # Push the cosine just past +-1, as float error does.
    R_gt = torch.eye(3) * 1.0000001
    angle = rotation_angle(R_est, R_gt)
    angle.backward()
    assert torch.isfinite(angle)
    assert abs(float(angle.detach()) - degrees) < 1e-3
    assert torch.isfinite(R_est.grad).all()


def test_random_rotations_seeded_and_bounded():
    angles = random_euler_angles(1000, 45.0, generator=0, dtype=torch.float64)
    assert angles.shape == (1000, 3)
    assert angles.abs().max() <= math.radians(45.0)
    # Uniform on [-45, 45]: the draws span the range on both sides in every axis.
    assert (angles.max(0).values > math.radians(43)).all()
    assert (angles.min(0).values < -math.radians(43)).all()
    torch.testing.assert_close(
        angles,
        random_euler_angles(
            1000, 45.0, generator=torch.Generator().manual_seed(0), dtype=torch.float64
        ),
    )
    assert not torch.equal(
        angles, random_euler_angles(1000, 45.0, generator=1, dtype=torch.float64)
    )

    R = random_rotations(1000, 45.0, generator=0, dtype=torch.float64)
    torch.testing.assert_close(R, euler_angles_to_matrix(angles))
    torch.testing.assert_close(R @ R.transpose(1, 2), torch.eye(3, dtype=R.dtype).expand_as(R))
    torch.testing.assert_close(torch.linalg.det(R), torch.ones(1000, dtype=R.dtype))
    # Three rotations of at most 45 degrees compose to at most 135 degrees.
    assert rotation_angle(R, torch.eye(3, dtype=R.dtype)).max() <= 135.0 + 1e-9


def test_random_rotations_bad_arguments():
    with pytest.raises(ValueError, match="max_degrees"):
        random_rotations(2, max_degrees=-1.0)
    with pytest.raises(TypeError, match="num_rotations"):
        random_rotations(2.0)
    with pytest.raises(TypeError, match="generator"):
        random_rotations(2, generator="seed")


def test_rotate_points_per_cloud():
    g = torch.Generator().manual_seed(0)
    sizes = [4, 1, 6]
    pos = torch.randn(sum(sizes), 3, generator=g, dtype=torch.float64)
    batch = torch.arange(3).repeat_interleave(torch.tensor(sizes))
    R = random_rotations(3, 180.0, generator=2, dtype=torch.float64)
    out = rotate_points(pos, R, batch)
    for i in range(pos.size(0)):
        torch.testing.assert_close(out[i], R[batch[i]] @ pos[i])
    torch.testing.assert_close(rotate_points(pos, R[0]), pos @ R[0].T)
    with pytest.raises(ValueError, match="rotation holds only"):
        rotate_points(pos, R[:2], batch)
