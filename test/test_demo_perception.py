"""`ncal demo --scenario perception`: segmenter + detector nodes on a short KITTI bag, metrics of the shipped models."""
from __future__ import annotations

import json
import math

import numpy as np
import yaml
from PIL import Image

from ros_ncal.cli import main as ncal
from ros_ncal.data.labels import SEMANTICKITTI_CLASSES
from ros_ncal.runner.suite import config_dir


def test_perception_scenario_end_to_end(tmp_path, kitti_dir, shared_data):
    cfg = yaml.safe_load((config_dir() / 'demo.yaml').read_text())
    assert 'perception' in cfg['demo']['scenarios']            # part of the default 'all'
    cfg['demo']['perception']['frames'] = ['000002', '000003']  # short bag
    cfg_path = tmp_path / 'demo.yaml'
    cfg_path.write_text(yaml.safe_dump(cfg))
    out = tmp_path / 'out'
    rc = ncal(['demo', '--scenario', 'perception', '--config', str(cfg_path), '--out', str(out),
               '--kitti-dir', str(kitti_dir / 'training')])
    assert rc == 0
    summary = json.loads((out / 'summary.json').read_text())
    p = summary['perception']
    assert p == json.loads((out / 'perception' / 'summary.json').read_text())
    assert sorted(p['nodes']) == ['/detector', '/segmenter']
    assert p['frames'] == {'published': 2, 'labeled_points': 2, 'detections': 2}
    assert p['latency_ms']['segmenter_p50'] > 0 and p['latency_ms']['detector_p50'] > 0
    # last frame: every point of KITTI 000003 comes back, with a 19-class label
    raw = np.fromfile(kitti_dir / 'training' / 'velodyne' / '000003.bin', np.float32).reshape(-1, 4)
    lf = p['last_frame']
    assert lf['points'] == int(np.isfinite(raw).all(axis=1).sum())
    assert 0 < lf['points_labelled'] <= lf['points']
    assert sum(lf['label_histogram'].values()) == lf['points']
    assert set(lf['label_histogram']) <= set(SEMANTICKITTI_CLASSES)
    assert sum(lf['boxes_by_class'].values()) == lf['boxes']
    for name in ('bev', 'camera'):
        with Image.open(p['images'][name]) as im:
            assert im.size[0] > 100 and im.size[1] > 100
    # metrics of the shipped checkpoints, as measured
    seg, det = p['metrics']['seg'], p['metrics']['det']
    assert seg['scans'] >= 1 and seg['max_range_m'] == 32.0 and seg['points'] > 0
    assert 0.0 <= seg['mIoU'] <= 100.0 and 0.0 <= seg['accuracy'] <= 100.0
    assert seg['per_class_iou'] and all(0.0 <= v <= 100.0 for v in seg['per_class_iou'].values())
    assert math.isclose(seg['mIoU'], np.mean(list(seg['per_class_iou'].values())), abs_tol=0.05)
    labelled = sorted(f.stem for f in (kitti_dir / 'training' / 'label_2').glob('*.txt'))
    assert det['frames'] == labelled
    # false positives in the camera view, counted against label_2 at the shipped default threshold
    assert set(det['false_positives_in_fov']) == set(labelled)
    assert all(isinstance(n, int) and n >= 0 for n in det['false_positives_in_fov'].values())
    assert 0.0 < det['score_threshold'] < 1.0 and set(det['held_out_frames']) <= set(labelled)
    with Image.open(p['images']['bev_comparison']) as im:     # the old figure beside the new one
        assert im.size[0] > 1.5 * im.size[1]
    assert det['iou_thresholds'] == {'car': 0.7, 'pedestrian': 0.5, 'cyclist': 0.5}
    for kind in ('AP_bev', 'AP_3d', 'AP_bev_loose', 'AP_3d_loose'):
        assert set(det[kind]) == {'car', 'pedestrian', 'cyclist'}
        for cls, v in det[kind].items():
            assert (v is None) == (det['num_gt'][cls] == 0)
            assert v is None or 0.0 <= v <= 100.0
