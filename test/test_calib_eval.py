"""Evaluation harness: exact baseline errors by construction, no ground-truth leak, outputs written."""
import json

import numpy as np
import pytest

from ros_ncal.calib import (CalibResult, CalibratorUnavailableError, EvalConfig, NoCorrection, PerturbationPreset,
                            calibrator_input, evaluate_calibrators, make_calibrator, make_trials, true_extrinsic)
from ros_ncal.calib.eval_data import load_kitti_samples
from ros_ncal.cli import main as ncal_main
from ros_ncal.geometry import invert, make_T, matrix_to_rotvec, pose_error, rotvec_to_matrix


@pytest.fixture(scope='module')
def kitti_two(kitti_dir):
    samples, ids = load_kitti_samples(kitti_dir, splits=('training',), max_frames=2)
    assert len(samples) == 2 and ids == ['training/000000', 'training/000001']
    return samples


class LeakDetector:
    """A real calibrator that records what it was given (to check that no ground truth is passed)."""

    def __init__(self):
        self.seen = []

    def estimate(self, sample, T_init):
        self.seen.append((sample.T_cam_lidar.copy(), dict(sample.meta), T_init.copy()))
        return CalibResult(T_init, 0.5, True, 'identity')


class Raising:
    def estimate(self, sample, T_init):
        raise RuntimeError('boom')


def test_no_correction_errors_equal_perturbation_sizes(kitti_two):
    cfg = EvalConfig(trials=4, seed=3, sweep=[[1.0, 0.05], [7.0, 0.3]], sweep_trials=2)
    report = evaluate_calibrators(kitti_two, {}, cfg, preset='calib', sweep=True)
    none = [r for r in report.records if r['calibrator'] == 'none']
    assert len(none) == 8
    trials = make_trials(kitti_two, cfg.presets['calib'], 4, 3)
    for rec, tr in zip(none, trials):
        ang = np.degrees(np.linalg.norm(matrix_to_rotvec(tr.perturbation[:3, :3])))
        assert rec['rre_deg'] == pytest.approx(ang, abs=1e-6)
        assert rec['rte_cm'] == pytest.approx(100 * np.linalg.norm(tr.perturbation[:3, 3]), abs=1e-6)
        assert rec['rre_deg'] == pytest.approx(rec['init_rre_deg'], abs=1e-9)
        assert 0 <= rec['rre_deg'] <= 10.0 + 1e-9 and 0 <= rec['rte_cm'] <= 50.0 + 1e-9
    # sweep sizes are exact magnitudes
    for row in report.sweep:
        s = row['summary']['none']
        assert s['rre_median_deg'] == pytest.approx(row['deg'], abs=1e-6)
        assert s['rte_median_cm'] == pytest.approx(100 * row['m'], abs=1e-6)
    assert report.summary['none']['success_rate'] == pytest.approx(
        np.mean([(r['rre_deg'] < 2) & (r['rte_cm'] < 20) for r in none]))


def test_same_initial_guesses_for_every_calibrator_and_no_leak(kitti_two):
    T_true = make_T(rotvec_to_matrix([0.01, 0.02, -0.03]), [0.1, -0.05, 0.2]) @ kitti_two[0].T_cam_lidar
    s0 = kitti_two[0].replace(meta={**kitti_two[0].meta, 'T_cam_lidar_true': T_true.tolist()})
    assert np.allclose(true_extrinsic(s0), T_true)
    spy = LeakDetector()
    report = evaluate_calibrators([s0], {'spy': spy, 'bad': Raising()}, EvalConfig(trials=3, seed=1))
    assert [r['calibrator'] for r in report.records[:3]] == ['none', 'spy', 'bad']
    for (T_seen, meta, T_init), rec in zip(spy.seen, [r for r in report.records if r['calibrator'] == 'spy']):
        assert 'T_cam_lidar_true' not in meta
        assert np.array_equal(T_seen, T_init)
        assert pose_error(T_init, T_true)[0] == pytest.approx(rec['init_rre_deg'])
        assert rec['rre_deg'] == pytest.approx(rec['init_rre_deg'])     # identity calibrator
    bad = [r for r in report.records if r['calibrator'] == 'bad']
    assert all(r['message'].startswith('raised RuntimeError') and not r['success_flag'] for r in bad)
    # calibrator_input never mutates the original sample
    assert 'T_cam_lidar_true' in s0.meta
    assert calibrator_input(s0, np.eye(4)).T_cam_lidar.tolist() == np.eye(4).tolist()


def test_registry_and_clear_errors():
    assert isinstance(make_calibrator('none'), NoCorrection)
    with pytest.raises(ValueError, match='unknown calibrator'):
        make_calibrator('nope')
    with pytest.raises(CalibratorUnavailableError, match='checkpoint'):
        make_calibrator('nclr')
    chain = make_calibrator('none+classical')
    assert chain.names == ['none', 'classical']
    with pytest.raises(ValueError, match='unknown perturbation preset'):
        evaluate_calibrators([], {}, EvalConfig(), preset='huge')
    with pytest.raises(ValueError):
        EvalConfig.from_dict({'trails': 3})
    assert PerturbationPreset(2, 0.1).max_deg == 2


def test_cli_writes_json_markdown_and_plot(tmp_path, kitti_dir, capsys):
    out = tmp_path / 'ev'
    rc = ncal_main(['eval-calib', '--data', 'kitti', '--kitti-dir', str(kitti_dir), '--frames', '2',
                    '--calibrators', 'none', '--trials', '3', '--preset', 'wide', '--sweep', '--out', str(out)])
    assert rc == 0
    rep = json.loads((out / 'report.json').read_text())
    assert rep['preset_name'] == 'wide' and rep['preset']['max_deg'] == 20.0
    assert len(rep['records']) == 2 * 3 and rep['summary']['none']['n'] == 6
    assert len(rep['sweep']) == len(EvalConfig().sweep)
    assert all(r['rre_deg'] <= 20.0 + 1e-9 and r['rte_cm'] <= 150.0 + 1e-9 for r in rep['records'])
    md = (out / 'report.md').read_text()
    assert '| none |' in md and 'Sweep' in md
    png = (out / 'error_vs_perturbation.png').read_bytes()
    assert png[:8] == b'\x89PNG\r\n\x1a\n' and len(png) > 10_000
    assert 'RRE med' in capsys.readouterr().out
    # unknown calibrator and missing checkpoint: exit code 2 with a message, no traceback
    assert ncal_main(['eval-calib', '--calibrators', 'nclr', '--out', str(out)]) == 2
    assert 'checkpoint' in capsys.readouterr().out


class Undoes:
    """Knows the rig's miscalibration D and undoes it from the nominal (a perfect calibrator for run_sequences);
    records the initial guesses it was given."""

    def __init__(self, D, fail_first: int = 0):
        self.D, self.fail_first, self.starts = D, fail_first, []

    def estimate(self, sample, T_init):
        self.starts.append(np.array(T_init))
        if len(self.starts) <= self.fail_first:
            return CalibResult.failure(T_init, 'not yet')
        return CalibResult(sample.T_cam_lidar @ np.linalg.inv(self.D), 0.9, True, 'ok')


def test_sequences_fuse_corrections_and_start_from_the_fused_estimate(kitti_two):
    from ros_ncal.calib.evaluate import run_sequences, summarize_sequences
    # two frames with different true extrinsics share one sequence (corrections are fused, not extrinsics)
    T2 = make_T(rotvec_to_matrix([0.0, 0.03, 0.0]), [0.2, 0.0, 0.0]) @ kitti_two[1].T_cam_lidar
    frames = [kitti_two[0], kitti_two[1].replace(meta={**kitti_two[1].meta, 'T_cam_lidar_true': T2.tolist()})]
    D = make_T(rotvec_to_matrix([0.05, -0.08, 0.02]), [0.1, 0.3, -0.2])
    good, late = Undoes(D), Undoes(D, fail_first=1)
    recs = run_sequences(frames, [D], {'none': NoCorrection(), 'good': good, 'late': late}, passes=2)
    by = {r['calibrator']: r for r in recs}
    init_rre, init_rte = pose_error(D, np.eye(4))
    assert by['none']['rre_deg'] == pytest.approx(init_rre) and by['none']['rte_cm'] == pytest.approx(100 * init_rte)
    assert by['good']['rre_deg'] < 1e-4 and by['good']['rte_cm'] < 1e-4 and by['good']['fused_frames'] == 4
    assert by['good']['trajectory'][0][0] < 1e-4 and len(by['good']['trajectory']) == 4
    # the records carry what a later stage needs to replay the sequence's end: D and the fused correction
    assert np.allclose(by['good']['perturbation'], D) and np.allclose(by['good']['fused_correction'], invert(D))
    assert np.allclose(by['none']['fused_correction'], np.eye(4))
    # the first frame fails: it starts from the nominal, the fused estimate is still the nominal, error kept
    assert late.starts[0] == pytest.approx(true_extrinsic(frames[0]) @ D)
    assert late.starts[1] == pytest.approx(true_extrinsic(frames[1]) @ D)
    assert by['late']['trajectory'][0][0] == pytest.approx(init_rre)
    # after a success, every frame starts from the fused estimate (= the truth here)
    assert late.starts[2] == pytest.approx(true_extrinsic(frames[0]), abs=1e-9)
    assert late.starts[3] == pytest.approx(T2, abs=1e-9)
    assert by['late']['rre_deg'] < 1e-4 and by['late']['fused_frames'] == 3
    s = summarize_sequences(recs, 2.0, 0.2)
    assert s['good']['success_rate'] == 1.0 and s['none']['success_rate'] == float(init_rre < 2 and init_rte < 0.2)
    with pytest.raises(ValueError, match='passes'):
        run_sequences(frames, [D], {'good': good}, passes=0)


def test_cli_sequence_protocol_and_nclr_section(tmp_path, kitti_dir, capsys):
    import yaml

    from ros_ncal.nclr.calibrator import NCLRInferenceConfig
    cfg = tmp_path / 'eval.yaml'
    cfg.write_text(yaml.safe_dump({'nclr': {'translation': 'full', 'iterations': 2}, 'fusion': {'gate': 2.5}}))
    assert NCLRInferenceConfig.from_yaml(cfg).translation == 'full'
    assert NCLRInferenceConfig().translation == 'fixed'
    with pytest.raises(ValueError, match='unknown key'):
        NCLRInferenceConfig.from_dict({'translaton': 'full'})
    with pytest.raises(ValueError, match='translation'):
        NCLRInferenceConfig.from_dict({'translation': 'some'})
    out = tmp_path / 'ev'
    rc = ncal_main(['eval-calib', '--data', 'kitti', '--kitti-dir', str(kitti_dir), '--frames', '2',
                    '--calibrators', 'none', '--trials', '1', '--sequence', '2', '--sequences', '3',
                    '--config', str(cfg), '--out', str(out)])
    assert rc == 0
    rep = json.loads((out / 'report.json').read_text())
    seq = rep['sequence']
    assert seq['passes'] == 2 and seq['n_sequences'] == 3 and seq['fusion']['gate'] == 2.5
    # sequence success is the online target's 1 deg / 10 cm, not the single-frame 2 deg / 20 cm
    assert (seq['success_rre_deg'], seq['success_rte_m']) == (1.0, 0.1)
    assert seq['summary']['none']['success_rate'] == pytest.approx(np.mean(
        [r['rre_deg'] < 1.0 and r['rte_cm'] < 10.0 for r in seq['records']]))
    assert 'success (<1 deg, <10 cm)' in (out / 'report.md').read_text()
    assert len(seq['records']) == 3 and all(len(r['trajectory']) == 4 for r in seq['records'])
    assert all(r['rre_deg'] == pytest.approx(r['init_rre_deg']) for r in seq['records'])
    assert 'Online sequences' in (out / 'report.md').read_text() and 'Online sequences' in capsys.readouterr().out
    assert (out / 'sequence_convergence.png').read_bytes()[:4] == b'\x89PNG'
    assert ncal_main(['eval-calib', '--data', 'kitti', '--kitti-dir', str(kitti_dir), '--sequence', '-1',
                      '--out', str(out)]) == 2


class Shift:
    """A real calibrator for the combinator tests: moves the guess by a fixed rotation; reports an objective
    that peaks at a target rotation (so a refinement from the right start scores higher)."""

    def __init__(self, delta_rotvec, target=None, success=True, report_objective=True):
        self.delta = make_T(rotvec_to_matrix(delta_rotvec), [0.0, 0.0, 0.0])
        self.target, self.success, self.report, self.starts = target, success, report_objective, []

    def estimate(self, sample, T_init):
        self.starts.append(np.array(T_init))
        T = self.delta @ T_init
        extras = {}
        if self.report:
            extras['objective'] = -pose_error(T, self.target)[0]
        return CalibResult(T, 0.8, self.success, 'shifted', extras)


def test_handover_keeps_the_refinement_with_the_better_objective(kitti_two):
    from ros_ncal.calib import HandoverCalibrator
    s = kitti_two[0]
    target = s.T_cam_lidar
    near = make_T(rotvec_to_matrix([0.0, 0.01, 0.0]), [0, 0, 0]) @ target        # 0.57 deg off: refiner's basin
    # the coarse stage moves 3 deg away (a learned calibrator's floor); refining from the start wins
    coarse = Shift([0.0, 0.05, 0.0], target, report_objective=False)
    refiner = Shift([0.0, -0.01, 0.0], target)
    res = HandoverCalibrator(coarse, refiner, ['nclr', 'classical']).estimate(s, near)
    assert res.success and res.extras['picked'] == 'classical from start'
    assert pose_error(res.T_cam_lidar, target)[0] < 1e-4
    assert refiner.starts[0] == pytest.approx(near) and len(refiner.starts) == 2
    # far start: the coarse estimate lands near the target, refining from there wins
    far = make_T(rotvec_to_matrix([0.0, -0.15, 0.0]), [0, 0, 0]) @ target
    coarse = Shift([0.0, 0.14, 0.0], target, report_objective=False)
    res = HandoverCalibrator(coarse, Shift([0.0, 0.01, 0.0], target), ['nclr', 'classical']).estimate(s, far)
    assert res.extras['picked'] == 'classical from nclr' and pose_error(res.T_cam_lidar, target)[0] < 1e-4
    # coarse failed: only the refinement from the start; refiner not confident: keep the coarse estimate
    res = HandoverCalibrator(Shift([0, 0.14, 0], success=False, report_objective=False),
                             Shift([0, 0.01, 0], target)).estimate(s, far)
    assert 'from start' in res.extras['picked'] and len(res.extras) == 3
    res = HandoverCalibrator(coarse, Shift([0, 0.01, 0], target, success=False), ['a', 'b']).estimate(s, far)
    assert res.success and pose_error(res.T_cam_lidar, target)[0] == pytest.approx(pose_error(far, target)[0] - 8.02,
                                                                                   abs=0.05)
    assert 'kept a' in res.message
    # no comparable objective: chain behaviour
    res = HandoverCalibrator(coarse, Shift([0, 0.01, 0], report_objective=False), ['a', 'b']).estimate(s, far)
    assert res.extras['picked'] == 'b from a'
    # spec syntax
    h = make_calibrator('none/classical')
    assert isinstance(h, HandoverCalibrator) and h.names == ['none', 'classical']
    for bad in ('nclr/', 'a/b/c', 'none+classical/classical'):
        with pytest.raises(ValueError):
            make_calibrator(bad)


def test_refinement_is_part_of_the_spec_grammar():
    """The calibrator node's `refine` parameter composes specs through the registry (one grammar)."""
    from ros_ncal.calib.registry import with_refinement
    assert with_refinement('nclr', 'classical') == 'nclr+classical'
    assert with_refinement('nclr+classical', 'classical') == 'nclr+classical'
    assert with_refinement('nclr/classical', 'classical') == 'nclr/classical'    # a handover refines by itself
    assert with_refinement('nclr', 'none') == 'nclr'
    with pytest.raises(ValueError, match='refine'):
        with_refinement('nclr', 'joint')
