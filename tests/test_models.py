import numpy as np
import pytest
import torch

from reproduction.tasks import PCRNet
from reproduction.tasks.rotations import quaternion_to_matrix, random_rotations
from tg_samplenet.models import (
    PointCloudAE,
    PointNet,
    TNet,
    cloud_layout,
    max_pool,
    orthogonality_regularizer,
    transform_per_cloud,
)

# Narrow widths keep the tests fast; the structure is the paper's.
SMALL_POINTNET = dict(
    point_channels=(16, 16, 16, 32),
    global_channels=64,
    head_channels=(32, 16),
    tnet_point_channels=(16, 32, 64),
    tnet_head_channels=(32, 16),
)
SMALL_PCRNET = dict(point_channels=(16, 16), global_channels=32, head_channels=(32, 16))
SMALL_AE = dict(num_points=50, encoder_channels=(16, 32, 16), decoder_channels=(32,))
SIZES = [7, 1, 12, 5]


def shuffle_within_clouds(pos, batch, seed=0):
    g = torch.Generator().manual_seed(seed)
    # Sorting by cloud id plus a random fraction permutes points inside each cloud only.
    key = batch.double() + torch.rand(batch.numel(), generator=g, dtype=torch.float64) * 0.5
    return pos[key.argsort()]


def prepare(model, seed=0, perturb_tnets=True):
    r"""Puts a network in eval mode with non-trivial BatchNorm statistics and, for PointNet,
    T-Nets that no longer return the identity, so the properties below are not vacuous."""
    torch.manual_seed(seed)
    for module in model.modules():
        if isinstance(module, torch.nn.BatchNorm1d):
            module.running_mean.uniform_(-0.5, 0.5)
            module.running_var.uniform_(0.5, 2.0)
        if perturb_tnets and isinstance(module, TNet):
            torch.nn.init.normal_(module.lin.weight, std=0.1)
    return model.eval()


def test_layout_helpers_match_brute_force(make_clouds):
    for sizes in ([5, 5, 5], [3, 8, 1]):
        pos, batch = make_clouds(sizes, dtype=torch.float64)
        layout = cloud_layout(pos, batch)
        assert layout.num_clouds == 3
        assert layout.cloud_size == (5 if sizes[0] == sizes[-1] else None)
        x = torch.randn(pos.size(0), 4, dtype=torch.float64)
        A = torch.randn(3, 4, 6, dtype=torch.float64)
        out = transform_per_cloud(x, A, layout)
        pooled = max_pool(x, layout)
        for i in range(x.size(0)):
            torch.testing.assert_close(out[i], x[i] @ A[batch[i]])
        for b in range(3):
            torch.testing.assert_close(pooled[b], x[batch == b].max(dim=0).values)


def test_layout_rejects_bad_input(make_clouds):
    pos, batch = make_clouds([3, 4])
    with pytest.raises(ValueError, match="sorted"):
        cloud_layout(pos, batch.flip(0))
    with pytest.raises(ValueError, match="skips cloud 1"):
        cloud_layout(pos, batch * 2)
    with pytest.raises(ValueError, match=r"\[N, 3\]"):
        cloud_layout(pos[:, :2], batch)
    with pytest.raises(TypeError, match="floating point"):
        cloud_layout(pos.long(), batch)
    with pytest.raises(ValueError, match="empty"):
        cloud_layout(pos[:0], batch[:0])


@pytest.mark.parametrize("k", [3, 16])
def test_tnet_starts_at_identity(k, make_clouds):
    _, batch = make_clouds(SIZES)
    x = torch.randn(batch.numel(), k)
    tnet = TNet(k, point_channels=(16, 32), head_channels=(16,))
    eye = torch.eye(k).expand(len(SIZES), k, k)
    torch.testing.assert_close(tnet(x, batch), eye)
    torch.testing.assert_close(tnet.eval()(x, batch), eye)
    torch.nn.init.normal_(tnet.lin.weight)
    assert not torch.allclose(tnet(x, batch), eye)
    tnet.reset_parameters()
    torch.testing.assert_close(tnet(x, batch), eye)
    assert str(tnet) == f"TNet({k}, point_channels=[16, 32], head_channels=[16])"


def test_pointnet_at_init_equals_pointnet_without_transforms(make_clouds):
    # Fresh T-Nets are identities, so the transforms change nothing.
    pos, batch = make_clouds(SIZES)
    full = prepare(PointNet(5, **SMALL_POINTNET), perturb_tnets=False)
    plain = PointNet(5, input_transform=False, feature_transform=False, **SMALL_POINTNET)
    plain.load_state_dict({k: v for k, v in full.state_dict().items() if "tnet" not in k})
    plain.eval()
    torch.testing.assert_close(full(pos, batch), plain(pos, batch))


@pytest.mark.parametrize("transforms", [True, False])
def test_pointnet_shapes_and_repr(transforms, make_clouds):
    pos, batch = make_clouds(SIZES)
    model = PointNet(10, input_transform=transforms, feature_transform=transforms, **SMALL_POINTNET)
    logits, reg = model(pos, batch, return_regularizer=True)  # training mode
    assert logits.shape == (len(SIZES), 10)
    assert reg.shape == ()
    assert model.eval()(pos[:7]).shape == (1, 10)  # batch=None is one cloud
    assert str(model) == (
        f"PointNet(10, input_transform={transforms}, feature_transform={transforms}, "
        f"global_channels=64)"
    )
    # The head follows pointnet_cls (dropout after each hidden layer) or _basic (last only).
    assert model.head.dropout == ([0.3, 0.3, 0.0] if transforms else [0.0, 0.3, 0.0])
    assert (model.input_tnet is None) != transforms


def test_pointnet_default_sizes():
    model = PointNet(40)
    assert [lin.out_channels for lin in model.point_mlp1.lins] == [64, 64]
    assert [lin.out_channels for lin in model.point_mlp2.lins] == [64, 128, 1024]
    assert [lin.out_channels for lin in model.head.lins] == [512, 256, 40]
    assert model.feature_tnet.k == 64
    assert [lin.out_channels for lin in model.feature_tnet.point_mlp.lins] == [64, 128, 1024]
    assert model.feature_tnet.lin.out_features == 64 * 64


@pytest.mark.parametrize("transforms", [True, False])
@pytest.mark.parametrize("sizes", [SIZES, [6, 6, 6]])
def test_pointnet_permutation_invariant(transforms, sizes, make_clouds):
    pos, batch = make_clouds(sizes)
    model = prepare(
        PointNet(4, input_transform=transforms, feature_transform=transforms, **SMALL_POINTNET)
    )
    with torch.no_grad():
        expected = model(pos, batch)
        shuffled = model(shuffle_within_clouds(pos, batch), batch)
    torch.testing.assert_close(shuffled, expected, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("sizes", [SIZES, [6, 6, 6]])
def test_pointnet_clouds_are_independent_in_eval(sizes, make_clouds):
    pos, batch = make_clouds(sizes)
    model = prepare(PointNet(4, **SMALL_POINTNET))
    with torch.no_grad():
        together, reg = model(pos, batch, return_regularizer=True)
        alone = torch.cat([model(pos[batch == b]) for b in range(len(sizes))])
        regs = torch.stack(
            [model(pos[batch == b], return_regularizer=True)[1] for b in range(len(sizes))]
        )
    torch.testing.assert_close(together, alone, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(reg, regs.mean(), atol=1e-5, rtol=1e-5)
    # The perturbed transforms differ between clouds, so the check above is not vacuous.
    assert not torch.allclose(regs, regs[0].expand_as(regs))


@pytest.mark.parametrize("transforms", [True, False])
def test_pointnet_matches_per_cloud_reference(transforms, make_clouds):
    pos, batch = make_clouds(SIZES)
    model = prepare(
        PointNet(4, input_transform=transforms, feature_transform=transforms, **SMALL_POINTNET)
    )
    expected = []
    with torch.no_grad():
        for b in range(len(SIZES)):
            x = pos[batch == b]
            if transforms:
                x = x @ model.input_tnet(x)[0]
            x = model.point_mlp1(x)
            if transforms:
                x = x @ model.feature_tnet(x)[0]
            x = model.point_mlp2(x).max(dim=0, keepdim=True).values
            expected.append(model.head(x))
        out = model(pos, batch)
    torch.testing.assert_close(out, torch.cat(expected), atol=1e-5, rtol=1e-5)


def brute_force_regularizer(A):
    A = A.detach().double().numpy()
    total = 0.0
    for a in A:
        k = a.shape[0]
        for i in range(k):
            for j in range(k):
                total += (sum(a[i, m] * a[j, m] for m in range(k)) - (i == j)) ** 2
    return total / A.shape[0]


def test_orthogonality_regularizer():
    orthogonal = torch.linalg.qr(torch.randn(5, 8, 8, dtype=torch.float64)).Q
    assert float(orthogonality_regularizer(orthogonal)) < 1e-20
    rotations = random_rotations(4, 180.0, generator=0, dtype=torch.float64)
    assert float(orthogonality_regularizer(rotations, reduction="sum")) < 1e-20

    A = torch.randn(3, 5, 5, dtype=torch.float64)
    assert float(orthogonality_regularizer(A)) == pytest.approx(brute_force_regularizer(A))
    per_cloud = orthogonality_regularizer(A, reduction="none")
    assert per_cloud.shape == (3,)
    torch.testing.assert_close(orthogonality_regularizer(A, reduction="sum"), per_cloud.sum())
    with pytest.raises(ValueError, match="reduction"):
        orthogonality_regularizer(A, reduction="max")
    with pytest.raises(ValueError, match=r"\[B, k, k\]"):
        orthogonality_regularizer(A[:, :2])


def test_pointnet_regularizer_is_that_of_the_feature_transform(make_clouds):
    pos, batch = make_clouds(SIZES)
    model = prepare(PointNet(4, **SMALL_POINTNET))
    with torch.no_grad():
        _, reg = model(pos, batch, return_regularizer=True)
        # Recompute the feature transform from the public sub-modules.
        A_in = model.input_tnet(pos, batch)
        x = torch.cat([pos[batch == b] @ A_in[b] for b in range(len(SIZES))])
        A = model.feature_tnet(model.point_mlp1(x), batch)
    assert float(reg) == pytest.approx(brute_force_regularizer(A), rel=1e-4)
    assert float(reg) > 0

    basic = PointNet(4, input_transform=False, feature_transform=False, **SMALL_POINTNET)
    assert float(basic(pos, batch, return_regularizer=True)[1]) == 0.0


def test_pointnet_gradients_and_bad_input(make_clouds):
    pos, batch = make_clouds(SIZES)
    model = PointNet(3, **SMALL_POINTNET)
    logits, reg = model(pos, batch, return_regularizer=True)
    y = torch.tensor([0, 1, 2, 0])
    (torch.nn.functional.cross_entropy(logits, y) + 0.001 * reg).backward()
    assert model.point_mlp1.lins[0].weight.grad.abs().sum() > 0
    assert model.input_tnet.lin.weight.grad.abs().sum() > 0
    with pytest.raises(ValueError, match="num_classes"):
        PointNet(0)
    with pytest.raises(ValueError, match="point_channels"):
        PointNet(3, point_channels=(16,))
    with pytest.raises(ValueError, match="sorted"):
        model(pos, batch.flip(0))


def test_pcrnet_returns_rotations(make_clouds):
    template, template_batch = make_clouds(SIZES, seed=1)
    source, source_batch = make_clouds([3, 9, 4, 6], seed=2)
    model = PCRNet(**SMALL_PCRNET)
    torch.nn.init.normal_(model.head.lins[-1].weight)  # spread the quaternions out
    out = model(template, source, template_batch, source_batch)
    B = len(SIZES)
    assert out.rotation.shape == (B, 3, 3)
    assert out.quaternion.shape == (B, 4)
    assert out.translation.shape == (B, 3)
    eye = torch.eye(3).expand(B, 3, 3)
    torch.testing.assert_close(out.rotation @ out.rotation.transpose(1, 2), eye)
    torch.testing.assert_close(torch.linalg.det(out.rotation), torch.ones(B))
    torch.testing.assert_close(out.quaternion.norm(dim=-1), torch.ones(B))
    torch.testing.assert_close(out.rotation, quaternion_to_matrix(out.quaternion))
    assert not torch.allclose(out.rotation, out.rotation[:1].expand_as(out.rotation))


def test_pcrnet_gradient_flows_and_template_comes_first(make_clouds):
    template, template_batch = make_clouds(SIZES, seed=1)
    R_gt = random_rotations(len(SIZES), generator=0)
    source = torch.einsum("nij,nj->ni", R_gt[template_batch], template)
    model = PCRNet(**SMALL_PCRNET)
    out = model(template, source, template_batch, template_batch)
    eye = torch.eye(3).expand_as(R_gt)
    loss = (out.rotation @ R_gt.transpose(1, 2) - eye).square().sum(dim=(1, 2)).mean()
    loss.backward()
    for lin in [*model.encoder.lins, *model.head.lins]:
        assert lin.weight.grad is not None and lin.weight.grad.abs().sum() > 0
    # Swapping the inputs changes the concatenation order, hence the output.
    swapped = model(source, template, template_batch, template_batch)
    assert not torch.allclose(swapped.quaternion, out.quaternion)


def test_pcrnet_concatenates_template_first(make_clouds):
    template, batch = make_clouds([5, 5], seed=1)
    source, _ = make_clouds([5, 5], seed=2)
    model = PCRNet(**SMALL_PCRNET).eval()
    with torch.no_grad():
        # With the weights on the second half zeroed, only the first cloud's feature counts.
        model.head.lins[0].weight[:, SMALL_PCRNET["global_channels"] :] = 0
        out = model(template, source, batch, batch).quaternion
        new_source = model(template, source * 2 + 1, batch, batch).quaternion
        new_template = model(template * 2 + 1, source, batch, batch).quaternion
    torch.testing.assert_close(new_source, out)
    assert not torch.allclose(new_template, out)


def test_pcrnet_sizes_repr_and_errors(make_clouds):
    model = PCRNet()
    assert [lin.out_channels for lin in model.encoder.lins] == [64, 64, 64, 128, 1024]
    assert [lin.out_channels for lin in model.head.lins] == [1024, 1024, 512, 512, 256, 7]
    assert model.head.lins[0].in_channels == 2048
    assert not any(isinstance(m, torch.nn.BatchNorm1d) for m in model.modules())
    assert str(PCRNet(**SMALL_PCRNET)) == (
        "PCRNet(point_channels=[16, 16], global_channels=32, head_channels=[32, 16])"
    )
    pos, batch = make_clouds([4, 4, 4])
    small = PCRNet(**SMALL_PCRNET)
    with pytest.raises(ValueError, match="same number of clouds"):
        small(pos, pos[:8], batch, batch[:8])
    with pytest.raises(ValueError, match="source_batch must be sorted"):
        small(pos, pos, batch, batch.flip(0))


def test_autoencoder_shapes_and_layout(make_clouds):
    pos, batch = make_clouds(SIZES)
    model = PointCloudAE(**SMALL_AE)
    out = model(pos, batch)
    B = len(SIZES)
    assert out.pos.shape == (B * 50, 3)
    assert out.embedding.shape == (B, 16)
    torch.testing.assert_close(out.batch, torch.arange(B).repeat_interleave(50))
    assert str(model) == (
        "PointCloudAE(num_points=50, encoder_channels=[16, 32, 16], decoder_channels=[32])"
    )
    model = prepare(model)
    with torch.no_grad():
        out = model(pos, batch)
        torch.testing.assert_close(out.pos, model.decode(model.encode(pos, batch)))
        # Reconstruction is per cloud: cloud 2 alone gives the same points.
        alone = model(pos[batch == 2])
        torch.testing.assert_close(alone.pos, out.pos[out.batch == 2], atol=1e-5, rtol=1e-5)
    with pytest.raises(ValueError, match="embedding"):
        model.decode(torch.zeros(2, 3))


def test_autoencoder_default_sizes_and_gradient():
    model = PointCloudAE()
    assert [lin.out_channels for lin in model.encoder.lins] == [64, 128, 128, 256, 128]
    assert [lin.out_channels for lin in model.decoder.lins] == [256, 256, 6144]
    assert model.bottleneck == 128
    assert len(model.encoder.norms) == 5
    assert not any(isinstance(m, torch.nn.BatchNorm1d) for m in model.decoder.modules())
    # The decoder output is read point-major, [x0, y0, z0, x1, ...] as in the authors' reshape.
    small = PointCloudAE(**SMALL_AE).eval()
    z = torch.randn(2, 16)
    flat = small.decoder(z).detach().numpy()
    np.testing.assert_allclose(small.decode(z).detach().numpy(), flat.reshape(-1, 3))
    pos = torch.rand(20, 3)
    small.train()
    out = small(pos)
    (out.pos - out.pos.detach().mean()).square().mean().backward()
    assert small.encoder.lins[0].weight.grad.abs().sum() > 0
