"""Reliability guarantees at library level (no rclpy): health verdicts, the stamp guard after a burst of
future stamps, honest covariance of components not estimated, a full disk under the shard writer
(docs/reliability.md). The node-level halves are in test_reliability_nodes.py."""
from __future__ import annotations

import errno

import numpy as np
import pytest

from ros_ncal.calib import FusionConfig, OnlineExtrinsicFilter, fuse_extrinsics
from ros_ncal.calib.result import (ESTIMATED_ALL, ESTIMATED_NONE, ESTIMATED_ROTATION, CalibResult, ChainCalibrator,
                                   NoCorrection)
from ros_ncal.geometry import make_T, rotvec_to_matrix
from ros_ncal.data.stamp_guard import StampGuard
from ros_ncal.health import DropCounter, HealthConfig, HealthMonitor, drop_queue_values, worst_level

from support import DiskFull

# ----------------------------------------------------------------------------- health


def test_health_warns_on_a_high_drop_ratio_names_the_reasons_and_escalates_to_error():
    h = HealthMonitor(HealthConfig(window_s=5.0, max_drop_ratio=0.5, min_events=5, stale_s=0.0, error_after_s=3.0))
    assert h.update(0.0, accepted=0, processed=0, drops={}).level == 'OK'
    v = h.update(1.0, accepted=10, processed=10, drops={'cloud_empty': 1})
    assert v.level == 'OK' and v.drop_ratio == pytest.approx(1 / 11)
    # every pair is dropped for lack of an extrinsic from now on (the 25 of 25 no_extrinsic)
    levels = []
    for k in range(2, 12):
        v = h.update(float(k), accepted=10, processed=10, drops={'cloud_empty': 1, 'no_extrinsic': 10 * (k - 1)})
        levels.append(v.level)
    assert levels[0] == 'WARN' and 'ERROR' in levels and levels[-1] == 'ERROR', levels
    assert v.drop_ratio == 1.0 and 'no_extrinsic' in v.reasons[0] and 'drop ratio' in v.reasons[0]
    vals = v.values()
    assert vals['health.level'] == 'ERROR' and 'no_extrinsic' in vals['health.reasons']
    # the pairs flow again: the window forgets the drops and the verdict comes back to OK
    for k in range(12, 20):
        v = h.update(float(k), accepted=10 + 10 * (k - 11), processed=10 + 10 * (k - 11),
                     drops={'cloud_empty': 1, 'no_extrinsic': 100})
    assert v.level == 'OK' and v.reasons == [] and v.warn_for_s == 0.0


def test_health_stale_processing_and_ignored_reasons():
    cfg = HealthConfig(window_s=5.0, max_drop_ratio=0.5, min_events=5, stale_s=4.0, error_after_s=4.0,
                       ignore_reasons=['busy'])
    h = HealthMonitor(cfg, start_s=100.0)
    # a busy worker drops most pairs by design: not a health problem while frames get processed
    for k in range(1, 4):
        v = h.update(100.0 + k, accepted=10 * k, processed=k, drops={'busy': 9 * k})
        assert v.level == 'OK', v
    # processing stops (the backend hangs) while inputs keep coming
    levels = [h.update(100.0 + k, accepted=10 * k, processed=3, drops={'busy': 9 * k}).level for k in range(4, 13)]
    assert levels[:3] == ['OK'] * 3 and levels[3] == 'WARN' and levels[-1] == 'ERROR', levels
    assert 'no frame processed' in h.verdict.reasons[0]
    # not active (a stopped collector): no stale verdict, and the grace period restarts on activation
    h2 = HealthMonitor(cfg, start_s=0.0)
    assert h2.update(50.0, 0, 0, {}, active=False).level == 'OK'
    assert h2.update(52.0, 0, 0, {}, active=True).level == 'OK'
    assert h2.update(56.5, 0, 0, {}, active=True).level == 'WARN'
    assert worst_level('OK', 'WARN', 'OK') == 'WARN' and worst_level('ERROR', 'WARN') == 'ERROR'


def test_drop_counter_counts_by_reason_and_warns_once_per_reason_per_period():
    class Log:
        def __init__(self):
            self.lines = []

        def warning(self, text):
            self.lines.append(text)
    log = Log()
    d = DropCounter(log, period_s=60.0)
    d.drop('cloud_empty', 'no points')
    d.drop('cloud_empty', 'no points')
    d.drop('stamp_future', 'far ahead', n=3)
    assert d.snapshot() == {'cloud_empty': 2, 'stamp_future': 3} and d.total == 5
    assert log.lines == ['dropped input (cloud_empty, 1 so far): no points',
                         'dropped input (stamp_future, 3 so far): far ahead']
    d.set_external('pair_unmatched', 7)              # a count kept by the pairer, mirrored
    d.set_external('pair_overflow', 0)               # zero: not listed
    assert d.snapshot() == {'cloud_empty': 2, 'pair_unmatched': 7, 'stamp_future': 3}
    quiet = DropCounter(None, period_s=0.0)          # no logger: counts only
    quiet.drop('busy')
    assert quiet.snapshot() == {'busy': 1}


def test_drop_and_queue_counts_flatten_for_diagnostics():
    """health.drop_queue_values: the /diagnostics keys every node publishes for its drops and queues."""
    d = DropCounter(None, period_s=0.0)
    d.drop('busy', n=2)
    d.drop('cloud_empty')
    assert drop_queue_values(d.snapshot(), {'pending': 1, 'busy': 0}) == {
        'dropped_total': 3, 'dropped.busy': 2, 'dropped.cloud_empty': 1, 'queue.pending': 1, 'queue.busy': 0}
    assert drop_queue_values({}, {}) == {'dropped_total': 0}


# ----------------------------------------------------------------------------- stamp guard


def test_stamp_guard_rejects_future_and_past_and_recovers_from_a_jump():
    g = StampGuard(max_future_s=1.0, max_past_s=5.0, reset_after=3)
    assert g.check(0) == 'stamp_zero'
    assert g.check(100 * 10**9) is None
    assert g.check(102 * 10**9) == 'stamp_future'   # does not move the reference
    assert g.check(100_500_000_000) is None
    assert g.check(90 * 10**9) == 'stamp_past'
    assert g.check(90 * 10**9) == 'stamp_past'
    assert g.check(90 * 10**9) == 'stamp_past'      # third in a row: time jumped back, reference reset
    assert g.check(90_100_000_000) is None


def test_stamp_guard_recovers_from_a_burst_of_future_stamps_within_two_real_frames():
    """A camera + LiDAR stream at 10 Hz, then a burst of 30 mutually consistent far-future stamps (a hostile or
    glitching publisher) that moves the reference, then the real stream again: at most the first real message
    is lost; every message of the second real frame is accepted (the issue: 20 messages blacked out)."""
    g = StampGuard(max_future_s=2.0, max_past_s=30.0)          # the nodes' defaults (reset_after 20)
    t0 = 1_700_000_000 * 10**9
    period = 10**8
    for k in range(10):
        assert g.check(t0 + k * period) is None and g.check(t0 + k * period + 10**6) is None
    burst = [t0 + 10**12 + k * period for k in range(30)]
    verdicts = [g.check(s) for s in burst]
    assert verdicts.count('stamp_future') == 19 and g.resets == 1      # the burst did move the reference
    real = []
    for k in range(10, 14):                                              # camera then LiDAR per real frame
        real.append((g.check(t0 + k * period), g.check(t0 + k * period + 10**6)))
    lost = sum(v is not None for pair in real for v in pair)
    assert lost <= 1 and real[1] == (None, None) and real[2] == (None, None), real
    assert g.reverts == 1
    # the recovered reference still rejects the burst's stamps
    assert g.check(burst[-1] + period) == 'stamp_future'


def test_stamp_guard_a_single_old_stamp_does_not_undo_a_real_resumption():
    """A stream that really resumed far ahead (reset by agreement) is not pulled back by one stale stamp."""
    g = StampGuard(max_future_s=2.0, max_past_s=30.0, reset_after=5)
    t0 = 1_700_000_000 * 10**9
    assert g.check(t0) is None
    resumed = [t0 + 100 * 10**9 + k * 10**8 for k in range(8)]
    assert [g.check(s) for s in resumed][4:] == [None] * 4
    assert g.check(t0 + 10**8) == 'stamp_past'                 # one old stamp: rejected, reference kept
    assert g.check(resumed[-1] + 10**8) is None and g.reverts == 0


# ----------------------------------------------------------------------------- honest covariance


def _rot_jitter(rng, deg):
    return make_T(rotvec_to_matrix(np.radians(rng.normal(0, deg, 3))), np.zeros(3))


def test_a_translation_nobody_estimated_carries_the_prior_not_the_spread_of_a_constant():
    rng = np.random.default_rng(0)
    nominal = make_T(rotvec_to_matrix(np.radians([1.0, -2.0, 0.5])), np.array([0.27, -0.08, -0.06]))
    Ts = [_rot_jitter(rng, 0.2) @ nominal for _ in range(20)]
    for k, T in enumerate(Ts):
        T[:3, 3] = nominal[:3, 3]                          # rotation-only calibrator: translation kept
    cfg = FusionConfig(prior_rot_std_deg=1.0, prior_trans_std_m=0.02)
    honest = fuse_extrinsics(Ts, config=cfg, estimated=ESTIMATED_ROTATION)
    blind = fuse_extrinsics(Ts, config=cfg)                 # the old behaviour: everything "estimated"
    assert blind.trans_std_m < 1e-9                         # the 1e-13 m^2
    assert honest.trans_std_m == pytest.approx(0.02)
    np.testing.assert_allclose(np.diag(honest.covariance)[3:], 0.02 ** 2 / 3)
    # the rotation is measured: its standard error is the data's, not the prior
    assert honest.rot_std_deg == pytest.approx(blind.rot_std_deg) and honest.rot_std_deg < 0.2
    assert list(honest.estimated) == [True] * 3 + [False] * 3
    # streaming filter: the same through push(estimated=...); a single frame keeps an unknown rotation
    f = OnlineExtrinsicFilter(cfg)
    assert f.push(Ts[0], 0.9, ESTIMATED_ROTATION)
    one = f.estimate()
    assert one.rot_std_deg == float('inf') and one.trans_std_m == pytest.approx(0.02)
    for T in Ts[1:]:
        f.push(T, 0.9, ESTIMATED_ROTATION)
    assert f.estimate().trans_std_m == pytest.approx(0.02)
    # one frame that did estimate the translation makes it a measured component again
    f.push(Ts[0], 0.9, ESTIMATED_ALL)
    assert f.estimate().estimated.all() and f.estimate().trans_std_m < 0.02
    with pytest.raises(ValueError, match='prior'):
        FusionConfig(prior_trans_std_m=0.0).validate()


def test_calibrators_say_which_components_they_estimated():
    T = np.eye(4)
    assert CalibResult.failure(T, 'x').estimated == ESTIMATED_NONE
    assert NoCorrection().estimate(None, T).estimated == ESTIMATED_NONE

    class Stage:
        def __init__(self, est, ok=True):
            self.est, self.ok = est, ok

        def estimate(self, sample, T_init):
            return CalibResult(T_init, 0.8, self.ok, '', estimated=self.est)
    assert ChainCalibrator([Stage(ESTIMATED_ROTATION), Stage(ESTIMATED_NONE)]).estimate(None, T).estimated == \
        ESTIMATED_ROTATION
    assert ChainCalibrator([Stage(ESTIMATED_ROTATION), Stage(ESTIMATED_ALL, ok=False)]).estimate(None, T).estimated \
        == ESTIMATED_ROTATION
    # the classical edge alignment with its default (rotation-only) levels keeps the translation
    from ros_ncal.calib.classical import ClassicalCalibConfig
    cfg = ClassicalCalibConfig()
    assert any(lv.search_rotation for lv in cfg.levels) and not any(lv.search_translation for lv in cfg.levels)
    from ros_ncal.nclr.calibrator import NCLRInferenceConfig
    assert NCLRInferenceConfig().translation == 'fixed'
    with pytest.raises(ValueError, match='6 flags'):
        CalibResult(T, 1.0, True, estimated=(True,) * 3)


def test_classical_calibrator_reports_rotation_only_on_a_real_frame(kitti_dir):
    from ros_ncal.calib.classical import ClassicalCalibConfig, EdgeAlignmentCalibrator
    from ros_ncal.data.kitti_files import read_image_rgb, read_kitti_calib, read_velodyne
    from ros_ncal.data.sample import Sample
    d = kitti_dir / 'training'
    c = read_kitti_calib(d / 'calib' / '000001.txt')
    s = Sample(points=read_velodyne(d / 'velodyne' / '000001.bin'), image=read_image_rgb(d / 'image_2' / '000001.png'),
               K=c['K'], T_cam_lidar=c['T_cam_lidar'])
    cal = EdgeAlignmentCalibrator(ClassicalCalibConfig(image_scale=0.5))
    res = cal.estimate(s, c['T_cam_lidar'])
    assert res.estimated == (ESTIMATED_ROTATION if res.success else ESTIMATED_NONE), res.message
    # a pure rotation about the camera origin: the correction T T0^-1 has no translation
    np.testing.assert_allclose((res.T_cam_lidar @ np.linalg.inv(c['T_cam_lidar']))[:3, 3], 0.0, atol=1e-9)


# ----------------------------------------------------------------------------- full disk


def _sample(rng, n=64):
    from ros_ncal.data.sample import Sample
    pts = np.concatenate([rng.uniform(2, 20, (n, 3)), rng.uniform(0, 1, (n, 1))], axis=1).astype(np.float32)
    img = rng.integers(0, 255, (16, 24, 3), dtype=np.uint8)
    K = np.array([[20.0, 0, 12], [0, 20.0, 8], [0, 0, 1]])
    return Sample(points=pts, image=img, K=K, T_cam_lidar=np.eye(4), stamp_ns=1)


def test_shard_writer_on_a_full_disk_removes_its_temporary_file_and_continues_when_space_is_back(tmp_path,
                                                                                                 monkeypatch):
    from ros_ncal.data.shards import ShardDataset, ShardWriter
    rng = np.random.default_rng(0)
    root = tmp_path / 'ds'
    disk = DiskFull(monkeypatch, root)
    w = ShardWriter(root, samples_per_shard=4)
    keys = [w.append(_sample(rng)) for _ in range(2)]
    disk.full = True
    for _ in range(3):
        with pytest.raises(OSError) as exc:
            w.append(_sample(rng))
        assert exc.value.errno == errno.ENOSPC
        assert not list(root.glob('.*.tmp')), 'partial temporary shard left behind'
    assert disk.hits == 3
    # committed samples stay readable while the disk is full
    assert [s.stamp_ns for s in ShardDataset(root)] == [1, 1] and w.num_samples == 2
    disk.full = False
    keys += [w.append(_sample(rng)) for _ in range(3)]
    w.close()
    assert keys == [f'{k:09d}' for k in range(5)]               # numbering continues without a gap
    ds = ShardDataset(root)
    assert len(list(ds)) == 5 and not ds.skipped
