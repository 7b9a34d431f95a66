"""`ncal demo`: the synthetic drive bag (wrong nominal, truth beside it), the KITTI bags with a chosen
nominal error, and short end-to-end runs through the calibrator suite on a live graph."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from ros_ncal.bag import BagTopics, read_messages
from ros_ncal.bag.perturbed import frames_sharing_calibration, read_truth, wrong_extrinsic, write_kitti_bag_with_error
from ros_ncal.bag.synthetic import SyntheticBagSpec, write_synthetic_bag
from ros_ncal.cli import main as ncal
from ros_ncal.geometry import invert, make_T, pose_error, rotvec_to_matrix
from ros_ncal.msgcodec import transform_stamped_to_matrix

REPO = Path(__file__).resolve().parents[1]
SMALL = str(REPO / 'config' / 'synthetic_small.yaml')


def _bag_nominals(bag_dir: Path) -> list[np.ndarray]:
    """T_cam_lidar of every /tf_static transform in the bag."""
    out = []
    for m in read_messages(bag_dir, topics=['/tf_static']):
        out += [invert(transform_stamped_to_matrix(t).T_parent_child) for t in m.msg.transforms]
    return out


def test_wrong_extrinsic_has_exact_error_sizes():
    T = make_T(rotvec_to_matrix([0.3, -1.2, 0.4]), [0.2, -0.1, 1.5])
    for deg, m, seed in ((5.0, 0.3, 0), (2.0, 0.1, 1), (0.0, 0.0, 4)):
        W = wrong_extrinsic(T, deg, m, seed)
        rot, trans = pose_error(W, T)
        assert rot == pytest.approx(deg, abs=1e-9) and trans == pytest.approx(m, abs=1e-12)
    np.testing.assert_allclose(wrong_extrinsic(T, 5, 0.3, 7), wrong_extrinsic(T, 5, 0.3, 7))
    assert not np.allclose(wrong_extrinsic(T, 5, 0.3, 7), wrong_extrinsic(T, 5, 0.3, 8))
    with pytest.raises(ValueError, match='>= 0'):
        wrong_extrinsic(T, -1.0, 0.0, 0)


def test_synthetic_bag_wrong_nominal_truth_beside_and_cache(tmp_path):
    spec = SyntheticBagSpec(config=SMALL, n_frames=3, drive_seed=5, error_deg=5.0, error_m=0.3)
    bag, counts, truth = write_synthetic_bag(tmp_path, spec, name='drive')
    tp = BagTopics()
    assert counts[tp.points] == counts[tp.image] == counts[tp.camera_info] == 3 and counts['/tf_static'] == 1
    assert not truth['reused'] and (tmp_path / 'drive.truth.json').is_file()
    T_true, T_nom = np.array(truth['T_cam_lidar_true']), np.array(truth['T_cam_lidar_nominal'])
    rot, trans = pose_error(T_nom, T_true)
    assert rot == pytest.approx(5.0, abs=1e-6) and trans == pytest.approx(0.3, abs=1e-9)
    (nominal,) = _bag_nominals(bag)          # the bag carries the WRONG nominal, never the truth
    np.testing.assert_allclose(nominal, T_nom, atol=1e-9)
    assert pose_error(nominal, T_true)[0] > 4.9
    stamps = [m.stamp_ns for m in read_messages(bag, topics=[tp.points])]
    assert stamps == truth['stamps_ns'] and all(s > 0 for s in stamps) and np.all(np.diff(stamps) == 100_000_000)
    frame_ids = {m.msg.header.frame_id for m in read_messages(bag, topics=[tp.points, tp.image])}
    assert frame_ids == {tp.lidar_frame, tp.camera_frame}
    mtime = (bag / 'drive.mcap').stat().st_mtime_ns
    _, _, again = write_synthetic_bag(tmp_path, spec, name='drive')
    assert again['reused'] and (bag / 'drive.mcap').stat().st_mtime_ns == mtime
    _, _, other = write_synthetic_bag(tmp_path, SyntheticBagSpec(config=SMALL, n_frames=3, drive_seed=5, error_deg=3.0),
                                      name='drive')
    assert not other['reused'] and pose_error(np.array(other['T_cam_lidar_nominal']), T_true)[0] == pytest.approx(3.0)


def test_kitti_bag_with_error_uses_one_calibration(tmp_path, kitti_dir):
    ids = frames_sharing_calibration(kitti_dir)
    assert len(ids) >= 2 and '000000' not in ids     # 000000 comes from another calibration day
    bag, counts, truth = write_kitti_bag_with_error(kitti_dir, tmp_path / 'k', ids[:2], 2.0, 0.1, error_seed=1)
    assert counts['/kitti/velo/points'] == 2 and read_truth(bag)['frames'] == ids[:2]
    (nominal,) = _bag_nominals(bag)
    rot, trans = pose_error(nominal, np.array(truth['T_cam_lidar_true']))
    assert rot == pytest.approx(2.0, abs=1e-6) and trans == pytest.approx(0.1, abs=1e-9)
    with pytest.raises(ValueError, match='another calibration'):
        write_kitti_bag_with_error(kitti_dir, tmp_path / 'mixed', ['000000', ids[0]])


def test_collector_settled_accounts_for_every_frame():
    from ros_ncal.ros.harness.demo_io import collector_settled
    idle = {'writer_pending': 0, 'writer_busy': 0}
    assert not collector_settled({}, 4)
    assert not collector_settled({'state': 'recording', 'written': 2, 'dropped': {}, 'skipped': {}, 'queues': idle}, 4)
    assert not collector_settled({'state': 'recording', 'written': 4, 'dropped': {}, 'skipped': {},
                                  'queues': {'writer_pending': 1, 'writer_busy': 0}}, 4)
    assert collector_settled({'state': 'recording', 'written': 2, 'dropped': {'writer_busy': 1},
                              'skipped': {'min_interval': 1}, 'queues': idle}, 4)
    assert collector_settled({'state': 'full', 'written': 2, 'queues': idle}, 4)


def _check_run(run: dict) -> None:
    for key in ('nominal', 'estimate', 'truth', 'tf_static_published', 'confidence', 'frames', 'latency_ms',
                'backend', 'images', 'diagnostics_file', 'collector', 'trajectory'):
        assert key in run, key
    for name in ('before', 'after', 'truth', 'comparison', 'convergence', 'node_overlay_first', 'node_overlay_last'):
        img = np.asarray(Image.open(run['images'][name]))
        assert img.ndim == 3 and img.shape[2] in (3, 4) and img.std() > 1.0, name   # matplotlib writes RGBA
    diag = json.loads(Path(run['diagnostics_file']).read_text())
    assert any(k.startswith('calibrator') for k in diag['diagnostics'])
    assert diag['calibrator_status']['calibrated'] == run['frames']['calibrated']


def test_demo_synthetic_and_kitti_short(tmp_path, kitti_dir, capsys):
    out = tmp_path / 'demo'
    rc = ncal(['demo', '--scenario', 'synthetic', '--synthetic-config', SMALL, '--frames', '4', '--backend', 'none',
               '--out', str(out), '--frame-timeout', '20'])
    printed = capsys.readouterr().out
    assert rc == 0, printed
    assert 'ncal demo summary' in printed and 'nominal (before)' in printed
    s = json.loads((out / 'summary.json').read_text())
    assert [r['name'] for r in s['runs']] == ['synthetic_5deg_30cm'] and s['backend_requested'] == 'none'
    run = s['runs'][0]
    _check_run(run)
    assert run['backend'] == 'none' and run['frames_in_bag'] == 4
    assert run['frames']['published'] == run['frames']['answered'] == run['frames']['calibrated'] == 4
    assert run['frames']['received'] == 4 and run['frames']['dropped'] == 0
    assert run['nominal']['rot_err_deg'] == pytest.approx(5.0, abs=1e-3)
    assert run['nominal']['trans_err_cm'] == pytest.approx(30.0, abs=1e-2)
    # 'none' keeps the nominal: the summary must say so rather than claim a correction
    assert run['estimate']['rot_err_deg'] == pytest.approx(5.0, abs=1e-3)
    assert run['improved'] == {'rotation': False, 'translation': False}
    assert run['tf_static_published'] is None and run['tf_static_publications'] == 0
    assert 1 <= run['collector']['written'] <= 4   # the collector may drop a pair as writer_busy (counted)
    assert run['collector']['written'] + run['collector']['dropped'].get('writer_busy', 0) == 4
    assert len(list((out / 'synthetic_5deg_30cm' / 'dataset').glob('*.tar'))) >= 1
    before = np.asarray(Image.open(run['images']['before']))
    truth = np.asarray(Image.open(run['images']['truth']))
    assert before.shape == truth.shape and np.abs(before.astype(int) - truth.astype(int)).mean() > 1.0

    rc = ncal(['demo', '--scenario', 'kitti', '--kitti-dir', str(kitti_dir), '--kitti-passes', '1',
               '--backend', 'none', '--no-collector', '--out', str(out)])
    assert rc == 0, capsys.readouterr().out
    s = json.loads((out / 'summary.json').read_text())
    runs = {r['name']: r for r in s['runs']}
    assert set(runs) == {'kitti_recorded', 'kitti_perturbed'}
    assert runs['kitti_recorded']['nominal']['rot_err_deg'] == pytest.approx(0.0, abs=1e-4)
    assert runs['kitti_perturbed']['nominal']['rot_err_deg'] == pytest.approx(2.0, abs=1e-3)
    assert runs['kitti_perturbed']['nominal']['trans_err_cm'] == pytest.approx(10.0, abs=1e-2)
    for r in runs.values():
        _check_run(r)
        assert r['frames']['calibrated'] == r['frames_in_bag'] and r['collector']['written'] is None
    # the synthetic bag of the first call is still cached next to the KITTI ones
    assert (out / 'bags' / 'synthetic_5deg_30cm.truth.json').is_file()


def test_demo_publisher_scenario_stage1(tmp_path, kitti_dir):
    """The stage-1 demo (extrinsic_publisher republishing the recorded extrinsic) stays reachable."""
    out = tmp_path / 'pub'
    rc = ncal(['demo', '--scenario', 'publisher', '--kitti-dir', str(kitti_dir / 'training'), '--out', str(out),
               '--repeat', '1', '--rate', '0', '--keep-overlays', '2'])
    assert rc == 0
    s = json.loads((out / 'summary.json').read_text())
    from ros_ncal.data.kitti_files import kitti_frame_ids
    ids = kitti_frame_ids(kitti_dir / 'training')
    assert s['overlays_received'] == s['overlays_expected'] == len(ids)
    assert len(s['overlay_files']) == 2 and all(Path(f).exists() for f in s['overlay_files'])
    # one recorded extrinsic per calibration (000000 and 000006 come from other days than 2011_09_26)
    from ros_ncal.data.kitti_files import read_kitti_calib
    distinct = []
    for i in ids:
        T = read_kitti_calib(kitti_dir / 'training' / 'calib' / f'{i}.txt')['T_cam_lidar']
        if not any(np.allclose(T, D, atol=1e-9) for D in distinct):
            distinct.append(T)
    assert len(distinct) >= 3 and len(s['recorded_extrinsics']) == len(distinct)
    assert s['published_extrinsics'] and all(c['rotation_error_deg'] < 1e-6 and c['translation_error_m'] < 1e-9
                                             for c in s['published_extrinsics'])


def test_demo_real_drive_realtime_best_effort_short(tmp_path, shared_data, capsys):
    """The main scenario on a few frames of the real drive: written as a robot's bag (nominal 10 deg / 50 cm off,
    truth beside it), replayed at 10 Hz with best-effort QoS twice; the correct-extrinsic run is checked too."""
    drive = shared_data / 'kitti_raw' / '2011_09_26' / '2011_09_26_drive_sfnd_sync'
    out = tmp_path / 'drive'
    rc = ncal(['demo', '--scenario', 'drive', '--drive-dir', str(drive), '--drive-frames', '3:7', '--backend', 'none',
               '--no-collector', '--out', str(out)])
    printed = capsys.readouterr().out
    assert rc == 0, printed
    assert 'started from the correct extrinsic' in printed and 'live: ~/extrinsic at the end of the passes' in printed
    s = json.loads((out / 'summary.json').read_text())
    runs = {r['name']: r for r in s['runs']}
    assert set(runs) == {'drive_10deg_50cm', 'drive_correct'}
    off, ok = runs['drive_10deg_50cm'], runs['drive_correct']
    assert off['nominal']['rot_err_deg'] == pytest.approx(10.0, abs=1e-3)
    assert off['nominal']['trans_err_cm'] == pytest.approx(50.0, abs=1e-2)
    assert ok['nominal']['rot_err_deg'] == pytest.approx(0.0, abs=1e-6)
    truth = read_truth(out / 'bags' / 'drive_10deg_50cm')
    assert [f['frame'] for f in truth['frames']] == [f'{i:010d}' for i in range(3, 7)]
    (nominal,) = _bag_nominals(out / 'bags' / 'drive_10deg_50cm')      # the bag carries the nominal only
    np.testing.assert_allclose(nominal, truth['T_cam_lidar_nominal'], atol=1e-9)
    for r in (off, ok):
        _check_run(r)
        assert r['pace'] == 'realtime' and r['best_effort'] and r['passes'] == 2 and r['frames_in_bag'] == 4
        assert r['frames']['published'] == 8 and r['frames']['received'] >= 1    # best effort may lose frames
        live = r['live']
        assert len(live['pass_starts_s']) == 2 and live['pass_starts_s'][1] >= 0.35   # 4 frames at 10 Hz, never faster
        assert live['timeline'] and all(e['t_s'] >= 0 for e in live['timeline'])
        gif = live['gif']
        assert gif['frames'] == 8 and gif['bytes'] < 5e6 and gif['size'][0] == 621     # half of 1242 px
        from PIL import Image as PILImage
        with PILImage.open(gif['path']) as im:
            assert im.n_frames == 8
    # the node ran in a process of its own, as ros2 launch starts it, and stopped cleanly on SIGINT
    log = (out / 'drive_10deg_50cm' / 'logs' / 'calibrator.log').read_text()
    assert "calibrator: backend 'none'" in log and 'Traceback' not in log, log[-2000:]
    assert 'node processes exited' not in printed
    # backend none never moves: the perturbed run misses its target, the correct run keeps its extrinsic
    c = off['live']['check']
    assert c['met'] is False and c['final']['rot_deg'] == pytest.approx(10, abs=1e-3) and 'at_end_of_passes' in c
    c = ok['live']['check']
    assert c['met'] and c['stayed'] and c['publications'] == 0 and not c['published_worse']


def test_a_node_process_that_dies_at_start_is_named_at_once(tmp_path, kitti_dir):
    """Each node in its own process (the drive's mode): a calibrator that cannot build its backend exits at
    start-up, and the replay stops with its name instead of waiting for subscribers."""
    import time

    from ros_ncal.bag.kitti import write_kitti_bag
    from ros_ncal.ros.harness.demo_io import GraphRun, run_graph
    bag, _ = write_kitti_bag(kitti_dir / 'training', tmp_path / 'b', frames=['000001'], hz=10.0)
    t0 = time.monotonic()
    with pytest.raises(RuntimeError, match='calibrator exited during start-up'):
        run_graph(GraphRun(bag_dir=bag, calibrator_params={'backend': 'no_such_backend', 'fallback_backend': ''},
                           node_processes=True, log_dir=tmp_path / 'logs', suite='demo_full'), log=lambda m: None)
    assert time.monotonic() - t0 < 90
    assert 'no_such_backend' in (tmp_path / 'logs' / 'calibrator.log').read_text()
