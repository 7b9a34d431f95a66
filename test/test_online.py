"""The online calibration core (ros_ncal.calib.online) without ROS: drift on the sensor clock, the /tf_static
gate, reset, and the joint stage's schedule, with real Samples and CalibResults and a scripted joint refiner."""
from __future__ import annotations

import numpy as np
import pytest

from ros_ncal.calib import CalibResult
from ros_ncal.calib.result import ESTIMATED_ROTATION
from ros_ncal.calib.joint import JointResult
from ros_ncal.calib.online import (DriftConfig, JointScheduleConfig, OnlineCalibration, OnlineConfig,
                                   OnlineFusionConfig, TfGateConfig)
from ros_ncal.data.sample import Sample
from ros_ncal.geometry import make_T, pose_error, rotvec_to_matrix

NOMINAL = make_T(rotvec_to_matrix([1.2, -1.2, 1.2]), [0.27, -0.08, -0.06])
SEC = 10**9
K = np.array([[40.0, 0, 16], [0, 40.0, 12], [0, 0, 1]])


def off_nominal(deg: float = 0.0, m: float = 0.0) -> np.ndarray:
    """(4, 4) the nominal rotated by ``deg`` about the optical axis and shifted by ``m`` along x (camera frame)."""
    return make_T(rotvec_to_matrix(np.radians([0.0, 0.0, deg])), [m, 0.0, 0.0]) @ NOMINAL


def sample_at(stamp_s: float, seed: int = 0) -> Sample:
    rng = np.random.default_rng(seed)
    return Sample(points=rng.normal(size=(50, 4)).astype(np.float32),
                  image=rng.integers(0, 256, (24, 32, 3), dtype=np.uint8), K=K, T_cam_lidar=NOMINAL,
                  stamp_ns=int(round(stamp_s * SEC)))


def estimate(T: np.ndarray, confidence: float = 0.9, success: bool = True) -> CalibResult:
    return CalibResult(T, confidence, success, 'scripted')


def config(**sections) -> OnlineConfig:
    """Full confidence from one frame, no /tf_static unless asked, library defaults otherwise."""
    cfg = OnlineConfig(fusion=OnlineFusionConfig(min_frames=1), tf=TfGateConfig(publish=False))
    for name, value in sections.items():
        setattr(cfg, name, value)
    return cfg


def feed(core: OnlineCalibration, stamps_s, T: np.ndarray, confidence: float = 0.9):
    return [core.process_frame(sample_at(t, i), estimate(T, confidence), NOMINAL) for i, t in enumerate(stamps_s)]


# -- drift on the sensor clock

def test_drift_warns_after_hold_s_of_sensor_time_beyond_tolerance_and_errors_beyond_twice():
    drift = DriftConfig(tolerance_deg=1.0, tolerance_m=0.05, hold_s=2.0, min_confidence=0.5)
    core = OnlineCalibration(config(drift=drift, fusion=OnlineFusionConfig(min_frames=1, window=1)))
    outs = feed(core, [100.0, 100.5, 101.0, 101.5, 102.0, 102.5], off_nominal(1.5))
    assert [o.drift.state for o in outs] == ['OK'] * 4 + ['WARN'] * 2      # 2.0 s after the first exceed
    assert [o.drift_alarm for o in outs] == [False] * 4 + [True, False]   # the transition, once
    assert outs[4].drift.since_ns == 0 and outs[4].drift.held_s == pytest.approx(2.0)
    assert outs[-1].drift.rot_deg == pytest.approx(1.5, abs=1e-6)
    # the same estimate 2.5 deg off (beyond twice the tolerance) from the start: OK until held, then ERROR
    core = OnlineCalibration(config(drift=drift, fusion=OnlineFusionConfig(min_frames=1, window=1)))
    outs = feed(core, [0.0, 1.0, 1.9, 2.0], off_nominal(2.5))
    assert [o.drift.state for o in outs] == ['OK', 'OK', 'OK', 'ERROR'] and outs[-1].drift_alarm
    # back within the tolerance: OK at once, the hold starts over
    out = core.process_frame(sample_at(2.5), estimate(off_nominal(0.2)), NOMINAL)
    assert out.drift.state == 'OK' and out.drift.since_ns is None and not out.drift_alarm
    out = core.process_frame(sample_at(3.0), estimate(off_nominal(1.5)), NOMINAL)
    assert out.drift.state == 'OK' and out.drift.since_ns == 3 * SEC     # exceeding again, not yet held


def test_drift_is_translation_too_and_is_not_judged_below_its_confidence():
    drift = DriftConfig(tolerance_deg=1.0, tolerance_m=0.05, hold_s=0.5, min_confidence=0.5)
    core = OnlineCalibration(config(drift=drift, fusion=OnlineFusionConfig(min_frames=1, window=1)))
    outs = feed(core, [0.0, 0.5], off_nominal(0.0, 0.08))
    assert outs[-1].drift.state == 'WARN' and outs[-1].drift.trans_m == pytest.approx(0.08)
    low = OnlineCalibration(config(drift=drift, fusion=OnlineFusionConfig(min_frames=1, window=1)))
    outs = feed(low, [0.0, 1.0, 2.0, 3.0], off_nominal(5.0), confidence=0.3)   # fused confidence 0.3 < 0.5
    assert all(o.drift.state == 'OK' and o.drift.rot_deg == 0.0 for o in outs)
    assert low.sensor_time_ns == 3 * SEC                                       # the clock still runs


def test_a_step_back_in_the_stamps_neither_resets_nor_jumps_the_sensor_clock():
    drift = DriftConfig(tolerance_deg=1.0, hold_s=2.0)
    core = OnlineCalibration(config(drift=drift, fusion=OnlineFusionConfig(min_frames=1, window=1)))
    clock, states = [], []
    # a 2 s bag looped: 10.0 .. 11.5, then back to 10.0; then a 5 min pause
    for t in [10.0, 10.5, 11.0, 11.5, 10.0, 10.5, 310.5]:
        out = core.process_frame(sample_at(t), estimate(off_nominal(1.5)), NOMINAL)
        clock.append(core.sensor_time_ns / SEC)
        states.append(out.drift.state)
    assert clock == pytest.approx([0.0, 0.5, 1.0, 1.5, 2.0, 2.5, 3.0])  # the step back and the gap: one interval each
    assert states == ['OK'] * 4 + ['WARN'] * 3                          # the hold kept counting across the loop


# -- the /tf_static gate

def test_tf_gate_refuses_low_confidence_high_standard_error_and_small_change_and_allows_otherwise():
    tf = TfGateConfig(publish=True, min_confidence=0.7, max_rot_std_deg=0.5, max_trans_std_m=0.05,
                      min_change_deg=0.1, min_change_m=0.01)
    moved = off_nominal(1.0)
    # two identical confident frames: zero standard error, 1 deg from the nominal -> publish
    ok = feed(OnlineCalibration(config(tf=tf)), [0.0, 0.1], moved)
    assert [o.tf.publish for o in ok] == [False, True]
    assert 'standard error' in ok[0].tf.reason                      # one frame: infinite standard error
    assert ok[1].tf.reason == '' and ok[1].tf.reference == 'nominal'
    assert ok[1].tf.change_rot_deg == pytest.approx(1.0, abs=1e-6)
    np.testing.assert_allclose(ok[1].current, moved, atol=1e-9)
    # confidence below tf.min_confidence
    low = feed(OnlineCalibration(config(tf=tf)), [0.0, 0.1], moved, confidence=0.6)
    assert not low[1].tf.publish and 'confidence' in low[1].tf.reason
    # standard errors above the limits: frames that disagree by 2 deg
    core = OnlineCalibration(config(tf=tf))
    for i, deg in enumerate([0.0, 2.0, 0.0, 2.0]):
        out = core.process_frame(sample_at(i), estimate(off_nominal(deg)), NOMINAL)
    assert out.fused.rot_std_deg > 0.5 and out.confidence >= 0.7
    assert not out.tf.publish and 'standard error' in out.tf.reason
    # too little change from the nominal
    small = feed(OnlineCalibration(config(tf=tf)), [0.0, 0.1], off_nominal(0.05, 0.005))
    assert not small[1].tf.publish and 'moved only' in small[1].tf.reason
    # ... but a translation beyond min_change_m alone is enough
    shifted = feed(OnlineCalibration(config(tf=tf)), [0.0, 0.1], off_nominal(0.0, 0.02))
    assert shifted[1].tf.publish
    # tf.publish off, or nothing fused (a failed frame)
    off = feed(OnlineCalibration(config(tf=TfGateConfig(publish=False))), [0.0, 0.1], moved)
    assert not off[1].tf.publish and 'tf.publish' in off[1].tf.reason
    failed = OnlineCalibration(config(tf=tf)).process_frame(sample_at(0), estimate(moved, 0.0, False), NOMINAL)
    assert not failed.accepted and failed.fused is None and not failed.tf.publish
    np.testing.assert_allclose(failed.current, NOMINAL)


def test_after_mark_published_the_gate_measures_the_change_from_the_published_transform():
    tf = TfGateConfig(publish=True, min_confidence=0.7, max_rot_std_deg=0.5, max_trans_std_m=0.05,
                      min_change_deg=0.1, min_change_m=0.01)
    core = OnlineCalibration(config(tf=tf))
    moved = off_nominal(1.0)
    out = feed(core, [0.0, 0.1], moved)[-1]
    assert out.tf.publish
    core.mark_published(out.current)
    assert core.n_published == 1 and core.status()['tf_published'] == 1
    np.testing.assert_allclose(core.last_published, moved, atol=1e-9)
    again = core.process_frame(sample_at(0.2), estimate(moved), NOMINAL)
    assert not again.tf.publish and again.tf.reference == 'published' and again.tf.change_rot_deg < 1e-6
    assert 'moved only' in again.tf.reason and 'published' in again.tf.reason
    # what the caller says it sent is the reference, whatever it was
    core.mark_published(off_nominal(3.0))
    out = core.process_frame(sample_at(0.3), estimate(moved), NOMINAL)
    assert out.tf.publish and out.tf.change_rot_deg == pytest.approx(2.0, abs=1e-6)


# -- fusion, confidence, initial guess, reset

def test_fused_confidence_is_the_inliers_mean_times_the_support():
    core = OnlineCalibration(config(fusion=OnlineFusionConfig(min_frames=4)))
    outs = feed(core, [0.0, 0.1], off_nominal(0.5), confidence=0.8)
    assert outs[0].confidence == pytest.approx(0.8 * 1 / 4) and outs[1].confidence == pytest.approx(0.8 * 2 / 4)
    out = core.process_frame(sample_at(0.2), estimate(off_nominal(0.5), 0.01), NOMINAL)   # < min_frame_confidence
    assert not out.accepted and core.fused_frames == 2 and out.confidence == pytest.approx(0.4)


def test_initial_guess_is_the_current_estimate_once_fused_unless_init_from_nominal():
    core = OnlineCalibration(config())
    np.testing.assert_allclose(core.initial_guess(NOMINAL), NOMINAL)
    feed(core, [0.0], off_nominal(1.0))
    np.testing.assert_allclose(core.initial_guess(NOMINAL), off_nominal(1.0), atol=1e-9)
    nominal_first = OnlineCalibration(OnlineConfig(init_from='nominal'))
    feed(nominal_first, [0.0], off_nominal(1.0))
    np.testing.assert_allclose(nominal_first.initial_guess(NOMINAL), NOMINAL)
    with pytest.raises(ValueError, match='init_from'):
        OnlineConfig(init_from='truth')


def test_reset_clears_fusion_joint_and_drift_but_keeps_the_nominal():
    refiner = ScriptedRefiner(success=True, correction=make_T(np.eye(3), [0.0, 0.0, 0.1]))
    drift = DriftConfig(tolerance_deg=1.0, hold_s=0.0)
    core = OnlineCalibration(config(drift=drift, joint=JointScheduleConfig(every_n=2, min_frames=2, min_fused_frames=2,
                                                                           min_spacing_s=0.0)), refiner)
    out = feed(core, [0.0, 0.5], off_nominal(2.5))[-1]
    assert out.joint is not None and core.joint_applied == 1 and core.drift.state == 'ERROR'
    core.mark_published(out.current)
    assert core.reset() == 2
    assert core.fused is None and core.fused_confidence == 0.0 and core.fused_frames == 0
    assert core.joint_buffered == 0 and core.drift.state == 'OK' and core.drift.since_ns is None
    np.testing.assert_allclose(core.nominal, NOMINAL)
    np.testing.assert_allclose(core.current, NOMINAL)                   # not the joint-refined estimate
    np.testing.assert_allclose(core.initial_guess(NOMINAL), NOMINAL)
    st = core.status()
    assert st['confidence'] == 0.0 and st['fused_frames'] == 0 and st['estimated'] is None
    assert st['tf_published'] == 1 and st['joint']['runs'] == 1           # counters and the published one stay
    assert core.last_published is not None


# -- the joint stage's schedule

class ScriptedRefiner:
    """Stands in for JointEdgeRefiner: records each call and answers a real JointResult."""

    def __init__(self, success: bool, correction: np.ndarray, on_refine=None, then: list[np.ndarray] = ()):
        self.success, self.correction, self.on_refine = success, correction, on_refine
        self.then = list(then)          # corrections of the later calls, in order (the last one stays)
        self.calls: list[tuple[list[int], list[np.ndarray]]] = []

    def refine(self, frames: list[Sample], extrinsics: list[np.ndarray]) -> JointResult:
        assert all(isinstance(f, Sample) for f in frames) and len(frames) == len(extrinsics)
        if self.calls and self.then:
            self.correction = self.then.pop(0)
        self.calls.append(([f.stamp_ns for f in frames], [np.array(T) for T in extrinsics]))
        if self.on_refine is not None:
            self.on_refine()
        return JointResult(self.correction, [self.correction @ T for T in extrinsics], 0.1, 0.2 if self.success else 0.1,
                           len(frames), {}, self.success, f'scripted ({"improved" if self.success else "no improvement"})',
                           0.0)


def test_joint_stage_runs_every_n_fused_frames_after_min_fused_frames_with_min_frames_spaced_apart():
    L = make_T(rotvec_to_matrix(np.radians([0.0, 0.2, 0.0])), [0.05, 0.0, 0.0])
    refiner = ScriptedRefiner(success=True, correction=L)
    joint = JointScheduleConfig(every_n=3, buffer=5, min_frames=3, min_fused_frames=4, min_spacing_s=1.0)
    core = OnlineCalibration(config(joint=joint), refiner)
    est = off_nominal(0.5)
    ran = []
    for i in range(9):
        out = core.process_frame(sample_at(0.5 * i, i), estimate(est), NOMINAL)
        ran.append(out.joint is not None)
        if i == 3:      # a failed frame: not fused, not buffered, not counted
            fail = core.process_frame(sample_at(0.5 * i + 0.25, 99), estimate(est, 0.0, False), NOMINAL)
            assert not fail.accepted and fail.joint is None
    # fused frame 3 has too few fused inliers (3 < 4); 6 and 9 are due, with >= 3 frames 1 s apart buffered
    assert ran == [False] * 5 + [True] + [False] * 2 + [True]
    assert [c[0] for c in refiner.calls] == [[0, SEC, 2 * SEC], [0, SEC, 2 * SEC, 3 * SEC, 4 * SEC]]
    for _, extrinsics in refiner.calls:
        for T in extrinsics:
            np.testing.assert_allclose(T, est, atol=1e-9)          # every frame starts from the fused estimate
    assert core.joint_runs == 2 and core.joint_applied == 2 and core.status()['joint']['buffered'] == 5
    np.testing.assert_allclose(core.current, L @ est, atol=1e-9)  # the refined estimate is the current one
    np.testing.assert_allclose(core.initial_guess(NOMINAL), L @ est, atol=1e-9)
    assert out.tf.change_rot_deg == pytest.approx(pose_error(L @ est, NOMINAL)[0])


def test_a_joint_estimate_is_published_on_two_agreeing_joint_results_and_a_change_above_its_accuracy():
    """The demo's case: the frames estimate the rotation only, so the fused translation's standard error is the
    prior's (large); the joint stage found the translation. Its estimate goes on /tf_static once two joint results
    agree and it moved more than tf.joint_min_change_* from the published transform."""
    tf = TfGateConfig(min_confidence=0.7, max_rot_std_deg=0.5, max_trans_std_m=0.05, min_change_deg=0.1,
                      min_change_m=0.01, joint_agree_deg=0.5, joint_agree_m=0.05, joint_min_change_deg=0.2,
                      joint_min_change_m=0.05)
    joint = JointScheduleConfig(every_n=3, buffer=10, min_frames=2, min_fused_frames=3, min_spacing_s=0.0)
    fusion = OnlineFusionConfig(min_frames=1, prior_trans_std_m=0.1)

    def frames(core, first, n, T):
        return [core.process_frame(sample_at(0.1 * i, i), CalibResult(T, 0.9, True, 'scripted',
                                                                       estimated=ESTIMATED_ROTATION), NOMINAL)
                for i in range(first, first + n)]

    def run(corrections, T=off_nominal(0.5)):
        core = OnlineCalibration(config(tf=tf, joint=joint, fusion=fusion),
                                 ScriptedRefiner(True, corrections[0], then=corrections[1:]))
        return core, frames(core, 0, 6, T)
    shift = make_T(np.eye(3), [0.0, 0.0, -0.1])
    core, outs = run([shift, make_T(np.eye(3), [0.0, 0.01, -0.1])])
    assert outs[1].fused.trans_std_m > 0.05 and 'standard error' in outs[1].tf.reason   # the fusion's gate refuses
    assert outs[2].joint is not None and not outs[2].tf.publish and 'one joint result' in outs[2].tf.reason
    assert outs[5].joint is not None and outs[5].tf.publish, outs[5].tf.reason
    np.testing.assert_allclose(outs[5].current, make_T(np.eye(3), [0.0, 0.01, -0.1]) @ outs[5].fused.T, atol=1e-9)
    # published: the next joint result within tf.joint_min_change_* of it is not republished
    core.mark_published(outs[5].current)
    more = frames(core, 6, 3, off_nominal(0.5))
    assert more[-1].joint is not None and not more[-1].tf.publish and 'joint_min_change' in more[-1].tf.reason
    # two joint results 8 cm apart: not confirmed
    _, outs = run([shift, make_T(np.eye(3), [0.08, 0.0, -0.1])])
    assert not outs[5].tf.publish and 'last two joint results differ' in outs[5].tf.reason
    # agreeing, 3 cm and 0 deg from the nominal: below the joint stage's accuracy, the nominal stays
    _, outs = run([make_T(np.eye(3), [0.03, 0.0, 0.0])], T=NOMINAL)
    assert outs[5].joint is not None and not outs[5].tf.publish and 'joint_min_change' in outs[5].tf.reason
    assert outs[5].tf.change_trans_m == pytest.approx(0.03, abs=1e-6)


def test_joint_stage_waits_for_min_frames_spaced_min_spacing_s_apart():
    refiner = ScriptedRefiner(success=True, correction=np.eye(4))
    joint = JointScheduleConfig(every_n=1, buffer=10, min_frames=3, min_fused_frames=1, min_spacing_s=2.0)
    core = OnlineCalibration(config(joint=joint), refiner)
    outs = [core.process_frame(sample_at(0.5 * i, i), estimate(off_nominal(0.5)), NOMINAL) for i in range(9)]
    # buffered at 0, 2, 4 s: the stage runs first with the third of them (frame 8), on every fused frame
    assert [o.joint is not None for o in outs] == [False] * 8 + [True]
    assert refiner.calls[0][0] == [0, 2 * SEC, 4 * SEC]
    # no refiner, no joint stage
    plain = OnlineCalibration(config(joint=joint))
    assert all(o.joint is None for o in feed(plain, [0.0, 2.0, 4.0, 6.0], off_nominal(0.5)))
    assert plain.status()['joint'] == {'enabled': False, 'runs': 0, 'applied': 0, 'buffered': 0, 'message': ''}


def test_a_failed_joint_result_is_not_applied():
    big = make_T(np.eye(3), [0.5, 0.0, 0.0])
    refiner = ScriptedRefiner(success=False, correction=big)
    joint = JointScheduleConfig(every_n=2, min_frames=2, min_fused_frames=2, min_spacing_s=0.0)
    core = OnlineCalibration(config(joint=joint), refiner)
    out = feed(core, [0.0, 0.5], off_nominal(0.5))[-1]
    assert out.joint is not None and not out.joint.success
    np.testing.assert_allclose(out.current, off_nominal(0.5), atol=1e-9)      # the fused estimate, not big @ fused
    np.testing.assert_allclose(core.current, out.fused.T)
    assert core.joint_runs == 1 and core.joint_applied == 0
    assert core.status()['joint']['message'] == 'scripted (no improvement)'


def test_a_reset_while_the_joint_stage_runs_drops_its_result_and_does_not_deadlock():
    core = None
    refiner = ScriptedRefiner(success=True, correction=make_T(np.eye(3), [0.1, 0.0, 0.0]),
                              on_refine=lambda: (core.status(), core.reset()))   # the lock is not held meanwhile
    joint = JointScheduleConfig(every_n=2, min_frames=2, min_fused_frames=2, min_spacing_s=0.0)
    core = OnlineCalibration(config(joint=joint), refiner)
    out = feed(core, [0.0, 0.5], off_nominal(0.5))[-1]
    assert out.joint is not None and core.joint_runs == 1 and core.joint_applied == 0
    assert out.fused is None and core.fused is None
    np.testing.assert_allclose(out.current, NOMINAL)


# -- the offline form (ncal calibrate, the evaluation's sequences)

def test_relative_to_nominal_fuses_corrections_of_frames_with_different_nominals():
    """Two rigs' nominals (e.g. two KITTI days) and one true correction D: fused as corrections, every frame's
    guess is its own nominal @ D; a successful frame of confidence 0 still counts with confidence_floor."""
    D = make_T(rotvec_to_matrix(np.radians([0.5, -0.3, 0.2])), [0.04, -0.02, 0.01])
    other = make_T(rotvec_to_matrix(np.radians([0.0, 2.0, 0.0])), [0.1, 0.0, 0.0]) @ NOMINAL
    core = OnlineCalibration(OnlineConfig(relative_to_nominal=True, confidence_floor=1e-3,
                                          fusion=OnlineFusionConfig(min_frame_confidence=0.0)))
    assert np.array_equal(core.initial_guess(other), other)                  # nothing fused yet
    for i, nom in enumerate([NOMINAL, other, NOMINAL, other]):
        out = core.process_frame(sample_at(0.1 * i, i), estimate(nom @ D, confidence=0.0 if i == 1 else 0.9), nom)
        assert out.accepted
        np.testing.assert_allclose(out.fused.T, D, atol=1e-9)              # the correction, not an extrinsic
        np.testing.assert_allclose(out.current, nom @ D, atol=1e-9)
    np.testing.assert_allclose(core.initial_guess(other), other @ D, atol=1e-9)
    # fused as extrinsics instead, the two rigs' estimates disagree by the nominals' 2 deg
    plain = OnlineCalibration(OnlineConfig(fusion=OnlineFusionConfig(min_frame_confidence=0.0)))
    for i, nom in enumerate([NOMINAL, other, NOMINAL, other]):
        out = plain.process_frame(sample_at(0.1 * i, i), estimate(nom @ D), nom)
    assert pose_error(out.current, other @ D)[0] > 0.5
    with pytest.raises(ValueError, match='relative_to_nominal'):
        OnlineCalibration(OnlineConfig(relative_to_nominal=True), joint_refiner=object())
    with pytest.raises(ValueError, match='confidence_floor'):
        OnlineConfig(confidence_floor=-1.0)
