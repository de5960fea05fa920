r"""PyG's PointNet++ classifier as ``examples/pointnet2_classification.py`` of PyG 2.8 writes it
(widths scaled down for the tests), importing nothing from tg_samplenet: its set-abstraction
layers call the module-level ``fps`` and ``radius`` of ``torch_geometric.nn``, which need
pyg-lib on PyG 2.8 (a pip install of PyG has none)."""

import torch
from torch_geometric.nn import MLP, PointNetConv, fps, global_max_pool, radius


class SAModule(torch.nn.Module):
    def __init__(self, ratio, r, nn):
        super().__init__()
        self.ratio = ratio
        self.r = r
        self.conv = PointNetConv(nn, add_self_loops=False)

    def forward(self, x, pos, batch):
        idx = fps(pos, batch, ratio=self.ratio)
        row, col = radius(pos, pos[idx], self.r, batch, batch[idx], max_num_neighbors=64)
        edge_index = torch.stack([col, row], dim=0)
        x_dst = None if x is None else x[idx]
        x = self.conv((x, x_dst), (pos, pos[idx]), edge_index)
        pos, batch = pos[idx], batch[idx]
        return x, pos, batch


class GlobalSAModule(torch.nn.Module):
    def __init__(self, nn):
        super().__init__()
        self.nn = nn

    def forward(self, x, pos, batch):
        x = self.nn(torch.cat([x, pos], dim=1))
        x = global_max_pool(x, batch)
        pos = pos.new_zeros((x.size(0), 3))
        batch = torch.arange(x.size(0), device=batch.device)
        return x, pos, batch


class Net(torch.nn.Module):
    def __init__(self, num_classes):
        super().__init__()
        self.sa1_module = SAModule(0.5, 0.2, MLP([3, 16, 16, 32]))
        self.sa2_module = SAModule(0.25, 0.4, MLP([32 + 3, 32, 32, 64]))
        self.sa3_module = GlobalSAModule(MLP([64 + 3, 64, 128, 256]))
        self.mlp = MLP([256, 128, 64, num_classes], dropout=0.5, norm=None)

    def forward(self, data):
        sa0_out = (data.x, data.pos, data.batch)
        sa1_out = self.sa1_module(*sa0_out)
        sa2_out = self.sa2_module(*sa1_out)
        sa3_out = self.sa3_module(*sa2_out)
        x, pos, batch = sa3_out
        return self.mlp(x).log_softmax(dim=-1)
