"""MinkUNet and ResNetFPN backbones, registry, YAML configs and checkpoints."""
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from ros_ncal.models import (CheckpointError, MinkUNet, ResNet, ResNetFPN, build_from_checkpoint, build_model,
                             load_checkpoint, load_model_config, load_weights_into, save_checkpoint)
from ros_ncal.models.minkunet import DEPTH_BLOCKS

REPO = Path(__file__).resolve().parents[1]


pytestmark = pytest.mark.usefixtures('single_thread')   # conftest.py: one intra-op thread (many tiny ops)


def random_cloud(n, seed, extent=6.0):
    g = torch.Generator().manual_seed(seed)
    xyz = (torch.rand(n, 3, generator=g) - 0.5) * 2 * extent
    return torch.cat([xyz, torch.rand(n, 1, generator=g)], dim=1)


# ------------------------------------------------------------------------------------------------ MinkUNet
def test_minkunet_list_api_shapes_and_small_samples():
    torch.manual_seed(0)
    net = MinkUNet(in_channels=1, out_dim=16, depth=14, width=0.25, voxel_size=0.25)
    clouds = [random_cloud(2000, 0), random_cloud(1, 1), torch.zeros(0, 4), random_cloud(7, 2)]
    out, voxels = net(clouds, return_voxels=True)
    assert net.out_dim == 16
    assert [tuple(o.shape) for o in out] == [(2000, 16), (1, 16), (0, 16), (7, 16)]
    assert voxels.feats.shape[1] == 16 and voxels.stride == 1
    assert all(torch.isfinite(o).all() for o in out)
    # a whole batch of one point (one voxel at every stride) still trains: BatchNorm falls back to running stats
    single = net([random_cloud(1, 5)])[0]
    single.sum().backward()
    assert single.shape == (1, 16) and torch.isfinite(single).all()
    # points of one voxel share one feature; batched call gives the same result as the list call
    net.eval()
    with torch.no_grad():
        a = net(clouds)
        flat = torch.cat(clouds)
        bidx = torch.cat([torch.full((len(c),), i) for i, c in enumerate(clouds)])
        b = net(flat, bidx)
    torch.testing.assert_close(torch.cat(a), b)
    with torch.no_grad():
        enc = net.encode(clouds)
    torch.testing.assert_close(enc.point_feats, b)
    torch.testing.assert_close(enc.voxels.feats[enc.point2voxel], b)
    assert enc.batch_idx.tolist() == bidx.tolist()
    # voxel_xyz is the mean of the voxel's points, so it lies inside the voxel
    cell = enc.voxels.coords[enc.point2voxel, 1:].float() * net.voxel_size
    vx = enc.voxel_xyz[enc.point2voxel]
    assert bool(((vx >= cell - 1e-5) & (vx <= cell + net.voxel_size + 1e-5)).all())


def test_minkunet_samples_are_independent_in_eval():
    torch.manual_seed(1)
    net = MinkUNet(out_dim=8, depth=14, width=0.25, voxel_size=0.3).eval()
    c0, c1 = random_cloud(800, 3), random_cloud(500, 4)
    with torch.no_grad():
        alone = net([c0])[0]
        together = net([c0, c1])[0]
    torch.testing.assert_close(alone, together, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize('depth', [14, 18, 34])
def test_minkunet_depths_and_parameter_counts(depth):
    net = MinkUNet(depth=depth, width=0.125, out_dim=4, voxel_size=0.5)
    blocks = [m for m in net.modules() if type(m).__name__ == 'BasicBlock']
    assert len(blocks) == sum(DEPTH_BLOCKS[depth])
    out = net([random_cloud(300, depth)])[0]
    assert out.shape == (300, 4)


def test_minkunet_full_width_parameter_count_matches_reference_layout():
    # MinkUNet34 with channels (32, 32, 64, 128, 256, 256, 128, 96, 96) and a 64-d head: 37.88 M parameters
    # (the torchsparse / NCLR MinkUNet34 layout has the same count up to the head).
    net = build_model(load_model_config(REPO / 'config' / 'models' / 'minkunet34.yaml'))
    assert net.channels == (32, 32, 64, 128, 256, 256, 128, 96, 96)
    assert sum(p.numel() for p in net.parameters()) == 37876896


def test_minkunet_input_feature_modes_and_errors():
    net = MinkUNet(in_channels=4, input_features='xyz_intensity', out_dim=8, width=0.125)
    assert net([random_cloud(100, 5)])[0].shape == (100, 8)
    with pytest.raises(ValueError, match='in_channels'):
        MinkUNet(in_channels=1, input_features='xyz_intensity')
    with pytest.raises(ValueError, match='depth'):
        MinkUNet(depth=50)
    with pytest.raises(ValueError, match='pooling'):
        MinkUNet(pooling='max')
    with pytest.raises(ValueError, match='columns'):
        MinkUNet(width=0.125)([torch.zeros(10, 3)])
    with pytest.raises(ValueError, match='empty'):
        MinkUNet(width=0.125)([torch.zeros(0, 4)])
    # float64 clouds (straight from numpy) run through a float32 network
    out64 = MinkUNet(width=0.125, out_dim=3)([random_cloud(50, 6).double()])[0]
    assert out64.dtype == torch.float32 and out64.shape == (50, 3)


def procedural_scene(seed, n=1500):
    """Ground plane (class 0), boxes (class 1) and vertical poles (class 2) with labels by geometry."""
    g = np.random.default_rng(seed)
    n_ground, n_box = n // 2, n // 3
    n_pole = n - n_ground - n_box
    ground = np.c_[g.uniform(-8, 8, (n_ground, 2)), g.normal(0, 0.02, n_ground)]
    centre = g.uniform(-5, 5, (1, 2))
    box = np.c_[centre + g.uniform(-1.2, 1.2, (n_box, 2)), g.uniform(0.1, 1.5, n_box)]
    pole_xy = g.uniform(-6, 6, (3, 2))[g.integers(0, 3, n_pole)] + g.normal(0, 0.05, (n_pole, 2))
    pole = np.c_[pole_xy, g.uniform(0.1, 3.5, n_pole)]
    xyz = np.concatenate([ground, box, pole])
    labels = np.r_[np.zeros(n_ground), np.ones(n_box), np.full(n_pole, 2)].astype(np.int64)
    intensity = g.uniform(0, 1, (len(xyz), 1))
    return torch.from_numpy(np.c_[xyz, intensity]).float(), torch.from_numpy(labels)


def test_minkunet14_tiny_trains_on_procedural_scenes():
    torch.manual_seed(0)
    scenes = [procedural_scene(s) for s in range(4)]
    net = MinkUNet(in_channels=1, out_dim=3, depth=14, width=0.25, voxel_size=0.25)
    opt = torch.optim.Adam(net.parameters(), lr=1e-2)
    losses = []
    for step in range(25):
        batch = [scenes[(2 * step) % 4], scenes[(2 * step + 1) % 4]]
        logits = torch.cat(net([p for p, _ in batch]))
        loss = torch.nn.functional.cross_entropy(logits, torch.cat([lab for _, lab in batch]))
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert np.mean(losses[-5:]) < 0.5 * np.mean(losses[:3]), losses
    net.eval()
    with torch.no_grad():
        pts, lab = procedural_scene(99)
        acc = (net([pts])[0].argmax(1) == lab).float().mean().item()
    assert acc > 0.8, acc


def test_minkunet_on_real_kitti_crop(kitti_dir):
    scan = np.fromfile(kitti_dir / 'training' / 'velodyne' / '000001.bin', dtype=np.float32).reshape(-1, 4)
    pts = torch.from_numpy(scan)
    pts = pts[(pts[:, 0].abs() < 15) & (pts[:, 1].abs() < 15)]
    net = MinkUNet(out_dim=8, depth=14, width=0.125, voxel_size=0.2)
    out = net([pts])[0]
    out.square().mean().backward()
    assert out.shape == (len(pts), 8)
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in net.parameters() if p.requires_grad)


def test_convert_sync_batchnorm_keeps_names_and_outputs():
    from ros_ncal.models import convert_sync_batchnorm
    from ros_ncal.models.sparse import SparseBatchNorm, SparseSyncBatchNorm
    torch.manual_seed(3)
    net = MinkUNet(out_dim=4, depth=14, width=0.125, voxel_size=0.4).eval()
    pts = [random_cloud(300, 12)]
    with torch.no_grad():
        before = net(pts)[0]
    keys = list(net.state_dict())
    net = convert_sync_batchnorm(net)
    assert not any(type(m) is SparseBatchNorm for m in net.modules())
    assert any(isinstance(m, SparseSyncBatchNorm) for m in net.modules())
    assert list(net.state_dict()) == keys
    with torch.no_grad():
        torch.testing.assert_close(net(pts)[0], before)
    net.train()
    assert net(pts)[0].shape == (300, 4)  # not distributed: plain batch statistics
    img = convert_sync_batchnorm(ResNetFPN(depth=18, base_channels=8, out_dim=4))
    assert isinstance(img.backbone.bn1, torch.nn.SyncBatchNorm)


def test_minkunet_runs_under_cpu_autocast():
    net = MinkUNet(out_dim=8, depth=14, width=0.125, voxel_size=0.4)
    with torch.autocast('cpu', dtype=torch.bfloat16):
        out = net([random_cloud(500, 11)])[0]
    out.float().square().mean().backward()
    assert out.shape == (500, 8)
    assert all(p.grad.dtype == torch.float32 and torch.isfinite(p.grad).all() for p in net.parameters())


# ------------------------------------------------------------------------------------------------ ResNetFPN
@pytest.mark.parametrize('depth,stride,hw', [(18, 4, (64, 96)), (34, 8, (65, 101)), (50, 4, (37, 50))])
def test_resnet_fpn_output_shapes(depth, stride, hw):
    net = ResNetFPN(depth=depth, base_channels=8, out_dim=12, stride=stride)
    out = net(torch.randn(2, 3, *hw))
    assert out.shape == (2, 12, math.ceil(hw[0] / stride), math.ceil(hw[1] / stride))
    out.mean().backward()
    assert net.backbone.conv1.weight.grad is not None
    with pytest.raises(ValueError, match='float'):
        net(torch.zeros(1, 3, 32, 32, dtype=torch.uint8))


def test_resnet_parameter_names_and_counts_match_torchvision_layout():
    r50 = ResNet(50)
    # torchvision resnet50 has 25,557,032 parameters including fc (2048 * 1000 + 1000)
    assert sum(p.numel() for p in r50.parameters()) == 25557032 - 2049000
    r18 = ResNet(18)
    assert sum(p.numel() for p in r18.parameters()) == 11689512 - 513000
    keys = set(r50.state_dict())
    for k in ['conv1.weight', 'bn1.running_var', 'layer1.0.conv3.weight', 'layer1.0.downsample.0.weight',
              'layer1.0.downsample.1.running_mean', 'layer4.2.bn3.bias']:
        assert k in keys


def test_load_pretrained_reports_keys(tmp_path):
    src = ResNet(18, base_channels=16)
    sd = {f'module.{k}': v for k, v in src.state_dict().items()}
    sd['module.fc.weight'] = torch.zeros(1000, 128)
    sd['module.fc.bias'] = torch.zeros(1000)
    path = tmp_path / 'r18.pth'
    torch.save({'state_dict': sd}, path)
    net = ResNetFPN(depth=18, base_channels=16, out_dim=8)
    report = net.load_pretrained(str(path))
    assert report.ok and not report.unexpected and not report.missing
    assert torch.equal(net.backbone.layer3[1].conv2.weight, src.layer3[1].conv2.weight)
    wrong = ResNetFPN(depth=18, base_channels=8, out_dim=8)
    rep = wrong.load_pretrained(str(path))
    assert not rep.ok and rep.shape_mismatch
    with pytest.raises(ValueError, match='do not match'):
        wrong.load_pretrained(str(path), strict=True)


def test_frozen_backbone_keeps_bn_statistics():
    net = ResNetFPN(depth=18, base_channels=8, out_dim=8, freeze_backbone=True).train()
    before = net.backbone.bn1.running_mean.clone()
    net(torch.randn(2, 3, 32, 32) * 3 + 1).mean().backward()
    assert torch.equal(before, net.backbone.bn1.running_mean)
    assert net.backbone.conv1.weight.grad is None and net.head.weight.grad is not None


# ------------------------------------------------------------------------------------------------ registry + ckpt
def test_all_model_yamls_build():
    names = sorted(p.name for p in (REPO / 'config' / 'models').glob('*.yaml'))
    assert {'minkunet14.yaml', 'minkunet18.yaml', 'minkunet34.yaml', 'resnet18.yaml', 'resnet34.yaml',
            'resnet50.yaml'} <= set(names)
    for name in names:
        cfg = load_model_config(REPO / 'config' / 'models' / name)
        if cfg['type'] == 'MinkUNet':
            cfg['width'] = 0.125
        else:
            cfg['base_channels'] = 8
        assert build_model(cfg).out_dim == cfg['out_dim']
    with pytest.raises(ValueError, match='unknown model type'):
        build_model({'type': 'PointNet'})
    with pytest.raises(ValueError, match='bad arguments'):
        build_model({'type': 'MinkUNet', 'colour': 3})


def test_checkpoint_roundtrip_and_errors(tmp_path):
    cfg = {'type': 'MinkUNet', 'depth': 14, 'width': 0.125, 'out_dim': 8, 'voxel_size': 0.3}
    net = build_model(cfg).eval()
    path = save_checkpoint(tmp_path / 'ckpt' / 'm.pt', net.state_dict(), cfg, {'epoch': 2})
    assert [p.name for p in path.parent.iterdir()] == ['m.pt'], 'no temporary files may remain'
    rebuilt, payload = build_from_checkpoint(path)
    assert payload['extra'] == {'epoch': 2} and payload['schema_version'] == 2 and len(payload['content_sha256']) == 64
    pts = random_cloud(400, 9)
    with torch.no_grad():
        torch.testing.assert_close(net([pts])[0], rebuilt.eval()([pts])[0])
    # a pretraining checkpoint of a bigger model: load only the backbone part into a fresh backbone
    wrapper = torch.nn.ModuleDict({'backbone3d': net, 'head': torch.nn.Linear(8, 2)})
    save_checkpoint(tmp_path / 'pre.pt', wrapper.state_dict(), None)
    fresh = build_model(cfg)
    report = load_weights_into(fresh, tmp_path / 'pre.pt', prefix='backbone3d.', strict=True)
    assert report.ok and len(report.loaded) == len(net.state_dict())
    assert torch.equal(fresh.head.weight, net.head.weight)
    with pytest.raises(CheckpointError, match='prefix'):
        load_weights_into(fresh, tmp_path / 'pre.pt', prefix='image.')
    torch.save({'weights': 1}, tmp_path / 'foreign.pt')
    with pytest.raises(CheckpointError, match='not a ros_ncal checkpoint'):
        load_checkpoint(tmp_path / 'foreign.pt')
    with pytest.raises(CheckpointError, match='not found'):
        load_checkpoint(tmp_path / 'missing.pt')
