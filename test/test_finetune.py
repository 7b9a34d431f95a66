"""Downstream heads and fine-tuning: real synthetic clouds, a tiny real MinkUNet, real checkpoints on disk."""
import json
import math

import numpy as np
import pytest
import torch

from ros_ncal.data.synthetic import SyntheticConfig, SyntheticWorld
from ros_ncal.eval.box_geometry import bev_iou
from ros_ncal.eval.metrics_det import DetectionEvaluator
from ros_ncal.models.checkpoint import load_checkpoint, save_checkpoint
from ros_ncal.models.heads.bev_det_head import BEVDetConfig, BEVDetHead, gaussian_radius
from ros_ncal.models.heads.panoptic_head import cluster_instances, instance_offset_targets
from ros_ncal.models.heads.seg_head import inverse_sqrt_frequency_weights
from ros_ncal.models.registry import build_model
from ros_ncal.train.downstream_data import (AugmentConfig, DataConfig, augment, labelled_subset,
                                            select_labelled_scenes, to_task_sample)
from ros_ncal.train.finetune import config_from_dict, finetune, load_finetuned

TINY_BACKBONE = {'type': 'MinkUNet', 'depth': 14, 'in_channels': 1, 'input_features': 'intensity',
                 'out_dim': 16, 'width': 0.125, 'voxel_size': 0.25}
TINY_DET_HEAD = {'x_range': [-20.0, 20.0], 'y_range': [-20.0, 20.0], 'cell_size': 1.0, 'neck_channels': 16}


@pytest.fixture(autouse=True, scope='module')
def _single_thread():
    """One intra-op thread: on the shared 2-core machine two OpenMP threads oversubscribed by other
    processes made one tiny training step take up to 30 s instead of 0.2 s (measured)."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope='module')
def tiny_samples():
    """3 training + 1 held-out synthetic clouds (16 beams, cropped to +-20 m, 2000 points each)."""
    wc = SyntheticConfig()
    wc.lidar.n_beams, wc.lidar.n_azimuth = 16, 512
    wc.camera.width, wc.camera.height, wc.camera.cx, wc.camera.cy = 64, 32, 32.0, 16.0
    wc.camera.fx = wc.camera.fy = 40.0
    wc.camera.shadows = False
    world = SyntheticWorld(wc)
    dc = DataConfig(crop_min=(-20.0, -20.0, -4.0), crop_max=(20.0, 20.0, 4.0), max_points=2000)
    train = [to_task_sample(world.sample(i), i, dc) for i in range(3)]
    held_out = [to_task_sample(world.sample(50), 50, dc)]
    return train, held_out


def _cfg(task, tmp_path, steps=12, **kw):
    data = {'task': task, 'backbone': dict(TINY_BACKBONE), 'augment': {'rotate_z': False, 'flip_y': False,
                                                                       'scale': [1.0, 1.0]},
            'optim': {'steps': steps, 'batch_size': 3, 'lr': 3e-3, 'warmup_frac': 0.0},
            'head': dict(TINY_DET_HEAD) if task == 'det' else {}, 'log_every': 0, 'output_dir': str(tmp_path),
            'device': 'cpu'}
    data.update(kw)
    return config_from_dict(data)


def _decreased(losses, k=3):
    return float(np.mean(losses[-k:])) < float(np.mean(losses[:k]))


def _save_random_backbone(path, seed=7):
    torch.manual_seed(seed)
    bb = build_model(TINY_BACKBONE)
    state = {k: v.clone() for k, v in bb.state_dict().items()}
    # The layout the NCLR pretraining exports: the backbone's state_dict under a 'backbone' key + its config.
    save_checkpoint(path, {'backbone': state}, TINY_BACKBONE, extra={'note': 'random init for tests'})
    return state


# ------------------------------------------------------------------ heads

def test_inverse_sqrt_frequency_weights_hand_case():
    w = inverse_sqrt_frequency_weights(np.array([5, 100, 25, 0]))
    # freq (ignore dropped) 0.8, 0.2 -> w ~ 1/sqrt(f), normalised so sum(freq * w) = 1.
    assert w[0] == 0 and w[3] == 0
    assert float(w[2] / w[1]) == pytest.approx(2.0)
    assert float(0.8 * w[1] + 0.2 * w[2]) == pytest.approx(1.0)
    with pytest.raises(ValueError, match='no labelled points'):
        inverse_sqrt_frequency_weights(np.array([7, 0, 0]))


def test_gaussian_radius_keeps_min_overlap():
    r = gaussian_radius(8.0, 4.0, 0.5)
    l, w = 8.0 - r, 4.0 - r
    assert l * w / (2 * 32 - l * w) == pytest.approx(0.5)
    assert gaussian_radius(8.0, 4.0, 0.7) < r


def test_bev_det_targets_decode_back_to_the_boxes():
    """Encoding boxes as targets and decoding the targets as if predicted recovers them (AP = 1)."""
    cfg = BEVDetConfig(x_range=(-20.0, 20.0), y_range=(-20.0, 20.0), cell_size=0.5, score_threshold=0.5)
    head = BEVDetHead(8, cfg)
    boxes = np.array([[3.3, -4.1, -0.9, 4.2, 1.8, 1.5, 0.3], [-10.2, 7.7, -0.8, 0.7, 0.6, 1.7, -2.0],
                      [12.0, 12.0, -1.0, 1.8, 0.6, 1.6, 1.2], [30.0, 0.0, 0.0, 4.0, 2.0, 1.5, 0.0]], np.float32)
    labels = np.array([0, 1, 2, 0])  # the last box lies outside the grid
    t = head.build_targets([torch.from_numpy(boxes)], [torch.from_numpy(labels)], 'cpu')
    assert int(t['mask'].sum()) == 3
    logits = torch.logit(t['heatmap'].clamp(1e-6, 1 - 1e-6))
    dets = head.decode({'heatmap': logits, 'regression': t['regression']})[0]
    assert sorted(dets['labels'].tolist()) == [0, 1, 2]
    inside = cfg.boxes_in_range(boxes)
    assert inside.tolist() == [True, True, True, False]
    assert np.diag(bev_iou(dets['boxes'][np.argsort(dets['labels'])], boxes[:3])) == pytest.approx(1.0, abs=1e-4)
    ev = DetectionEvaluator()
    ev.add(dets['boxes'], dets['scores'], dets['labels'], boxes[inside], labels[inside])
    assert ev.compute()['mAP_3d'] == pytest.approx(1.0)


def test_panoptic_offsets_and_clustering():
    xyz = torch.tensor([[0, 0, 0], [2, 0, 0], [10, 0, 0], [10, 2, 0], [5, 5, 0]], dtype=torch.float32)
    labels = torch.tensor([1, 1, 1, 1, 9])
    inst = torch.tensor([1, 1, 2, 2, 0])
    is_thing = torch.zeros(20, dtype=torch.bool)
    is_thing[1:9] = True
    target, valid = instance_offset_targets(xyz, labels, inst, torch.zeros(5, dtype=torch.long), is_thing)
    assert valid.tolist() == [True, True, True, True, False]
    assert target[0].tolist() == [1, 0, 0] and target[3].tolist() == [0, -1, 0]
    shifted = (xyz + target).numpy()          # perfect offsets: each instance collapses to its centre
    ids = cluster_instances(shifted, labels.numpy(), range(1, 9), radius=0.5)
    assert ids[0] == ids[1] != ids[2] == ids[3] and ids[4] == 0 and min(ids[:4]) >= 1


# ------------------------------------------------------------------ data protocol

def test_label_fraction_is_chosen_by_scene_with_a_fixed_seed(tiny_samples):
    scenes = [f's{k}' for k in range(100)]
    one = select_labelled_scenes(scenes, 0.01, seed=0)
    ten = select_labelled_scenes(scenes, 0.1, seed=0)
    assert len(one) == 1 and len(ten) == 10
    assert select_labelled_scenes(scenes, 0.1, seed=0) == ten          # reproducible
    assert select_labelled_scenes(scenes, 0.1, seed=1) != ten          # the seed matters
    # All frames of a chosen scene come together.
    train, _ = tiny_samples
    frames = [s.__class__(s.points, s.labels, s.instances, s.boxes, s.box_labels, s.index, 'A' if k < 2 else 'B')
              for k, s in enumerate(train)]
    sub = labelled_subset(frames, 0.5, seed=3)
    assert {s.scene for s in sub} in ({'A'}, {'B'}) and len(sub) == (2 if sub[0].scene == 'A' else 1)


def test_augmentation_moves_points_and_boxes_together(tiny_samples):
    from ros_ncal.data.boxes3d import points_in_boxes
    s = next(t for t in tiny_samples[0] if len(t.boxes))
    before = points_in_boxes(s.points[:, :3], s.boxes)
    a = augment(s, AugmentConfig(), np.random.default_rng(5))
    assert not np.allclose(a.points[:, :2], s.points[:, :2])
    assert (points_in_boxes(a.points[:, :3], a.boxes) == before).all()


# ------------------------------------------------------------------ fine-tuning

def test_seg_scratch_and_pretrained_loss_decreases_and_checkpoint_roundtrip(tiny_samples, tmp_path):
    train, held_out = tiny_samples
    res = finetune(_cfg('seg', tmp_path), train, held_out, log=lambda m: None)
    assert _decreased(res.losses), res.losses
    assert 0.0 <= res.metrics['mIoU'] <= 1.0
    # The checkpoint rebuilds the same model: identical predictions.
    model, task, payload = load_finetuned(res.checkpoint)
    assert payload['config']['task'] == 'seg'
    assert task.evaluate(model, held_out, torch.device('cpu'))['mIoU'] == pytest.approx(res.metrics['mIoU'])
    # The predictor (the nodes' library call): full-cloud labels; subsampled clouds spread to all points.
    from ros_ncal.models.inference import DownstreamPredictor
    pred = DownstreamPredictor.from_checkpoint(res.checkpoint, device='cpu')
    full = pred.predict(held_out[0].points)
    with torch.no_grad():
        f = model.features([torch.from_numpy(held_out[0].points)])[0]
        assert (full.labels == model.head.predict(model.head(f)).numpy()).all()
    sub = DownstreamPredictor.from_checkpoint(res.checkpoint, device='cpu', max_points=500, max_range=15.0)
    part = sub.predict(held_out[0].points)
    near = np.hypot(held_out[0].points[:, 0], held_out[0].points[:, 1]) <= 15.0
    assert part.num_processed == 500 and (part.labels[near] > 0).all() and (part.labels[~near] == 0).all()
    assert pred.predict(np.zeros((0, 4), np.float32)).labels.shape == (0,)
    summary = json.loads(open(res.summary_path).read())
    assert summary['main_metric'] == 'mIoU' and summary['labelled_samples'] == 3

    ck = tmp_path / 'backbone.pt'
    saved = _save_random_backbone(ck)
    res_p = finetune(_cfg('seg', tmp_path, pretrained=str(ck), run_name='p'), train, held_out, log=lambda m: None)
    rep = res_p.pretrained_report
    assert rep['loaded'] == len(saved) and rep['missing_keys'] == [] and rep['unexpected_keys'] == []
    assert _decreased(res_p.losses), res_p.losses


def test_pretrained_weights_are_the_starting_point_and_foreign_keys_are_reported(tmp_path):
    from ros_ncal.train.finetune import build_backbone
    ck = tmp_path / 'backbone.pt'
    saved = _save_random_backbone(ck, seed=3)
    cfg = _cfg('seg', tmp_path, pretrained=str(ck))
    bb, bcfg, rep = build_backbone(cfg, log=lambda m: None)
    assert bcfg == TINY_BACKBONE
    for k, v in bb.state_dict().items():
        assert torch.equal(v, saved[k]), k
    # A full-model checkpoint ('backbone.' prefixed keys + other modules) also loads; extras are reported.
    full = {**{f'backbone.{k}': v for k, v in saved.items()}, 'image_net.weight': torch.zeros(2)}
    save_checkpoint(tmp_path / 'full.pt', full, {'backbone': TINY_BACKBONE, 'image': {'type': 'x'}})
    bb2, _, rep2 = build_backbone(_cfg('seg', tmp_path, pretrained=str(tmp_path / 'full.pt')), log=lambda m: None)
    assert rep2['missing_keys'] == [] and rep2['loaded'] == len(saved)
    # The full NCLR checkpoint layout: 'point_net.*' keys, the backbone config nested in the network config.
    nclr_state = {**{f'point_net.{k}': v for k, v in saved.items()}, 'image_net.conv1.weight': torch.zeros(1)}
    bare = {k: v for k, v in TINY_BACKBONE.items() if k != 'type'}
    save_checkpoint(tmp_path / 'nclr.pt', nclr_state, {'type': 'NCLRNet', 'nclr': {'network': {'point_backbone': bare}}})
    bb3, bcfg3, rep3 = build_backbone(_cfg('seg', tmp_path, pretrained=str(tmp_path / 'nclr.pt')), log=lambda m: None)
    assert bcfg3 == TINY_BACKBONE and rep3['loaded'] == len(saved) and rep3['missing_keys'] == []
    nan_state = {k: (v * float('nan') if v.is_floating_point() else v) for k, v in saved.items()}
    save_checkpoint(tmp_path / 'nan.pt', {'backbone': nan_state}, TINY_BACKBONE)
    with pytest.raises(ValueError, match='NaN/inf'):
        build_backbone(_cfg('seg', tmp_path, pretrained=str(tmp_path / 'nan.pt')), log=lambda m: None)
    save_checkpoint(tmp_path / 'foreign.pt', {'something.else': torch.zeros(3)}, TINY_BACKBONE)
    with pytest.raises(ValueError, match='no backbone weights matched'):
        build_backbone(_cfg('seg', tmp_path, pretrained=str(tmp_path / 'foreign.pt')), log=lambda m: None)


def test_linear_probe_leaves_backbone_unchanged(tiny_samples, tmp_path):
    train, held_out = tiny_samples
    ck = tmp_path / 'backbone.pt'
    saved = _save_random_backbone(ck)
    res = finetune(_cfg('seg', tmp_path, steps=6, pretrained=str(ck), linear_probe=True), train, held_out,
                   log=lambda m: None)
    state = load_checkpoint(res.checkpoint)['model_state']
    for k, v in saved.items():      # weights and BN running statistics alike
        assert torch.equal(state[f'backbone.{k}'], v), k
    assert _decreased(res.losses, k=2), res.losses


def test_det_finetune_loss_decreases(tiny_samples, tmp_path):
    train, held_out = tiny_samples
    res = finetune(_cfg("det", tmp_path), train, held_out, log=lambda m: None)
    assert _decreased(res.losses), res.losses
    assert set(res.metrics['AP_bev']) == {'car', 'pedestrian', 'cyclist'}
    from ros_ncal.models.inference import DownstreamPredictor
    out = DownstreamPredictor.from_checkpoint(res.checkpoint, device='cpu').predict(held_out[0].points)
    assert out.boxes.shape[1] == 7 and len(out.boxes) == len(out.scores) == len(out.box_labels)
    # KITTI-style evaluation inside the camera view only: boxes behind the sensor are never in it.
    from ros_ncal.train.downstream_tasks import DetTask
    fov = DetTask({**TINY_DET_HEAD, 'eval_region': 'camera_fov'})
    s = held_out[0]
    inside = fov._in_camera(s, s.boxes)
    assert not inside[s.boxes[:, 0] < 0].any()
    model, _, _ = load_finetuned(res.checkpoint)
    res_fov = fov.evaluate(model, held_out, torch.device('cpu'))
    in_grid = DetTask(TINY_DET_HEAD).cfg.boxes_in_range(s.boxes)
    assert res_fov['num_gt']['car'] == int((inside & in_grid & (s.box_labels == 0)).sum())
    assert res_fov['num_gt']['car'] < res.metrics['num_gt']['car']
    assert res.metrics['num_gt']['car'] > 0


def test_panoptic_finetune_loss_decreases(tiny_samples, tmp_path):
    train, held_out = tiny_samples
    res = finetune(_cfg("panoptic", tmp_path), train, held_out, log=lambda m: None)
    assert _decreased(res.losses), res.losses
    assert 0.0 <= res.metrics['PQ'] <= 1.0 and not math.isnan(res.metrics['mIoU'])


def test_cli_finetune_then_eval_and_label_efficiency_sweep(tmp_path):
    """`ncal finetune` + `ncal eval` from a YAML, and the sweep end to end with a tiny budget."""
    from ros_ncal.cli import main
    from ros_ncal.train.label_efficiency import run_sweep
    world_yaml = tmp_path / 'world.yaml'
    world_yaml.write_text('lidar: {n_beams: 16, n_azimuth: 512}\ncamera: {shadows: false}\n')
    sets = ['--set', f'data.synthetic_config={world_yaml}', '--set', 'data.train_indices=[0,2]',
            '--set', 'data.eval_indices=[60,61]', '--set', 'data.max_points=2000',
            '--set', f'backbone={json.dumps(TINY_BACKBONE)}']
    assert main(['finetune', 'seg', 'config/finetune/seg_10pct.yaml', '--steps', '2', '--seed', '1',
                 '--output-dir', str(tmp_path / 'cli'), *sets]) == 0
    ck = tmp_path / 'cli' / 'seg_10pct_scratch_s1.pt'
    assert ck.is_file()
    assert main(['eval', 'seg', str(ck), '--out', str(tmp_path / 'ev.json')]) == 0
    assert 0.0 <= json.loads((tmp_path / 'ev.json').read_text())['metrics']['mIoU'] <= 1.0
    assert main(['finetune', 'det', 'config/finetune/seg_1pct.yaml', *sets]) == 2   # task / config mismatch

    pre = tmp_path / 'backbone.pt'
    _save_random_backbone(pre)
    overrides = {'data': {'synthetic_config': str(world_yaml), 'train_indices': [0, 2], 'eval_indices': [60, 61],
                          'max_points': 2000}}
    rows = run_sweep(str(pre), tasks=('seg',), fractions=(0.5, 1.0), seeds=(0,), out_dir=tmp_path / 'sweep',
                     steps=2, overrides=overrides, log=lambda m: None)
    assert [(r['fraction'], r['init']) for r in rows] == [(0.5, 'scratch'), (0.5, 'pretrained'),
                                                          (1.0, 'scratch'), (1.0, 'pretrained')]
    assert [r['labelled_samples'] for r in rows] == [1, 1, 2, 2]
    md = (tmp_path / 'sweep' / 'label_efficiency.md').read_text()
    assert '| seg | 50 % | mIoU |' in md and (tmp_path / 'sweep' / 'label_efficiency.png').is_file()
    assert len((tmp_path / 'sweep' / 'results.jsonl').read_text().splitlines()) == 4


# ------------------------------------------------------------------ real labels (KITTI / SemanticKITTI)

def _ground_with_box(scene, box, n_obj=60, seed=0):
    """A TaskSample: a flat ground grid at z = -1.9 plus ``n_obj`` points inside ``box`` (class 0)."""
    from ros_ncal.train.downstream_data import TaskSample
    rng = np.random.default_rng(seed)
    gx, gy = np.meshgrid(np.arange(-20, 20, 0.5), np.arange(-20, 20, 0.5))
    ground = np.stack([gx.ravel(), gy.ravel(), np.full(gx.size, -1.9), np.full(gx.size, 0.2)], 1)
    x, y, z, l, w, h, yaw = box
    local = rng.uniform(-0.45, 0.45, (n_obj, 3)) * [l, w, h]
    c, s = math.cos(yaw), math.sin(yaw)
    obj = np.stack([x + c * local[:, 0] - s * local[:, 1], y + s * local[:, 0] + c * local[:, 1],
                    z + local[:, 2], np.full(n_obj, 0.5)], 1)
    pts = np.concatenate([ground, obj]).astype(np.float32)
    return TaskSample(pts, np.zeros(len(pts), np.int64), np.zeros(len(pts), np.int64),
                      np.asarray([box], np.float32), np.zeros(1, np.int64), 0, scene, real=True)


def test_gt_sampling_pastes_objects_with_their_points_and_keeps_boxes_consistent():
    from ros_ncal.eval.box_geometry import points_in_boxes
    from ros_ncal.train.downstream_data import GTDatabase
    a = _ground_with_box('a', (8.0, 2.0, -1.0, 4.0, 1.8, 1.5, 0.3), seed=1)
    b = _ground_with_box('b', (-6.0, -5.0, -1.0, 4.2, 1.9, 1.5, -1.0), seed=2)
    c = _ground_with_box('c', (8.5, 2.2, -1.0, 4.0, 1.8, 1.5, 0.0), seed=3)   # overlaps a's box
    db = GTDatabase([a, b, c])
    assert len(db) == 3 and db.counts() == {0: 3}
    out = db.paste(a, {0: 5}, np.random.default_rng(0))
    # b's object is pasted; c's (overlapping a's own box) and a's own object (same scene) are not
    assert len(out.boxes) == 2 and out.box_labels.tolist() == [0, 0]
    assert np.allclose(out.boxes[1], b.boxes[0])
    assert len(out.points) == len(out.labels) == len(out.instances)
    inside = points_in_boxes(out.points, out.boxes, 0.1)
    b_item = next(it for it in db.items if it[0] == 'b')[3]        # b's object (+ ground under it) as cut from b
    assert len(b_item) >= 60
    # the pasted box holds exactly b's cut points: the scene's points there were removed first
    assert inside[1].sum() == len(b_item)
    assert np.array_equal(np.sort(out.points[inside[1]], axis=0), np.sort(b_item, axis=0))
    assert inside[0].sum() == points_in_boxes(a.points, a.boxes, 0.1)[0].sum()   # a's own object untouched
    assert bev_iou(out.boxes[:1], out.boxes[1:]).max() == 0
    # through augment (yaw, flip, scale): the pasted box still holds its points
    cfg = AugmentConfig(gt_sampling={0: 5}, rotate_range=math.pi)
    for seed in range(3):
        aug = augment(a, cfg, np.random.default_rng(seed), db)
        assert len(aug.boxes) == 2
        assert points_in_boxes(aug.points, aug.boxes, 0.02).sum(axis=1).min() >= 55
    assert len(augment(a, AugmentConfig(gt_sampling={0: 5}), np.random.default_rng(0)).boxes) == 1  # no database


def test_beam_dropout_removes_whole_rings_and_keeps_boxes():
    from ros_ncal.train.downstream_data import beam_dropout, beam_index
    a = _ground_with_box('a', (8.0, 2.0, -1.0, 4.0, 1.8, 1.5, 0.3))
    ring = beam_index(a.points, 16)
    assert ring.min() == 0 and ring.max() == 15
    out = beam_dropout(a, 0.5, 16, np.random.default_rng(3))
    dropped = np.random.default_rng(3).random(16) < 0.5          # the rings the same generator drops
    assert 0 < dropped.sum() < 16
    assert np.array_equal(out.points, a.points[~dropped[ring]])   # whole rings removed, the rest untouched
    assert np.array_equal(out.boxes, a.boxes) and len(out.labels) == len(out.points)
    assert beam_dropout(a, 0.0, 16, np.random.default_rng(0)) is a


def test_real_kitti_and_semantickitti_frames_load_with_labels(kitti_dir, shared_data):
    from ros_ncal.geometry import project_lidar
    from ros_ncal.train.downstream_data import RealDataConfig, load_real_samples
    rc = RealDataConfig(kind='kitti', root=str(kitti_dir / 'training'), train_frames=['000001', '000008'],
                        eval_frames=['000001'])
    dc = DataConfig()
    tr = load_real_samples(rc, dc, 'train')
    assert [s.scene for s in tr] == ['kitti/000001', 'kitti/000008'] and all(s.real for s in tr)
    K, T, hw = tr[0].camera
    assert project_lidar(tr[0].points[:, :3].astype(np.float64), T, K, hw)[2].all()   # fov_only crop
    assert tr[1].box_labels.tolist() == [0] * 6
    assert len(tr[0].ignore_boxes) == 1                  # 000001's Truck
    ev = load_real_samples(rc, dc, 'eval')[0]
    assert len(ev.points) > 2 * len(tr[0].points)         # held-out clouds keep the full view
    sk = load_real_samples(RealDataConfig(kind='semantickitti', root=str(shared_data / 'semantickitti/sequences/00'),
                                          train_frames=['000000'], max_points=5000), dc, 'train')[0]
    assert len(sk.points) == 5000 and (sk.labels > 0).mean() > 0.5 and sk.labels.max() <= 19


def test_decode_drops_boxes_without_points_and_applies_score_calibration():
    cfg = BEVDetConfig(x_range=(-20.0, 20.0), y_range=(-20.0, 20.0), cell_size=1.0, neck_channels=8,
                       score_threshold=0.3, min_points_in_box=5)
    head = BEVDetHead(4, cfg)
    boxes = np.array([[5.3, 2.6, -1.0, 4.0, 1.8, 1.5, 0.2], [-8.4, 6.2, -1.0, 4.2, 1.7, 1.5, 1.2]], np.float32)
    t = head.build_targets([boxes], [np.array([0, 0])], 'cpu')
    logits = torch.logit(t['heatmap'].clamp(1e-4, 1 - 1e-4))
    out = {'heatmap': logits, 'regression': t['regression']}
    a = _ground_with_box('a', tuple(boxes[0]))
    pts = torch.from_numpy(a.points)
    assert len(head.decode(out)[0]['boxes']) == 2                     # no points given: no support check
    d = head.decode(out, pts, torch.zeros(len(pts), dtype=torch.long))[0]
    assert len(d['boxes']) == 1 and bev_iou(d['boxes'], boxes[:1])[0, 0] > 0.95
    # calibration a = 1, b = -20 pushes every car score (raw peaks 1 - 1e-4: logit 9.2) below the threshold
    head.cfg.score_calibration = {'car': [1.0, -20.0]}
    assert len(head.decode(out)[0]['boxes']) == 0
    head.cfg.score_calibration = {'car': [1.0, 0.0]}                  # identity
    assert np.allclose(head.calibrate_scores(np.array([0.2, 0.7]), np.array([0, 0])), [0.2, 0.7], atol=1e-6)


def test_real_label_efficiency_protocol_end_to_end(tmp_path, shared_data):
    """Pretrained vs scratch on a real SemanticKITTI scan, evaluated on the held-out scan (tiny budget)."""
    from ros_ncal.train.label_efficiency import run_real_sweep
    pre = tmp_path / 'backbone.pt'
    _save_random_backbone(pre)
    overrides = {'data': {'crop_min': [-8.0, -8.0, -4.0], 'crop_max': [8.0, 8.0, 4.0]},
                 'real': {'max_points': 3000, 'eval_max_points': 3000, 'root': str(shared_data / 'semantickitti/sequences/00')},
                 'optim': {'batch_size': 1}, 'log_every': 0, 'device': 'cpu'}
    rows = run_real_sweep(str(pre), tasks=('seg',), seeds=(0, 1), out_dir=tmp_path / 'real', steps=2,
                          overrides=overrides, log=lambda m: None)
    assert [(r['init'], r['seed']) for r in rows] == [('scratch', 0), ('pretrained', 0), ('scratch', 1),
                                                      ('pretrained', 1)]
    assert all(r['frames'] == ['semantickitti/00/000000'] and r['eval_frames'] == ['semantickitti/00/000001']
               for r in rows)
    assert all(0.0 <= r['value'] <= 1.0 for r in rows)
    md = (tmp_path / 'real' / 'label_efficiency.md').read_text()
    assert '| seg | 100 % | mIoU |' in md and (tmp_path / 'real' / 'label_efficiency.png').is_file()
