"""`ncal calibrate` and the sequence calibration behind it (ros_ncal.calib.offline)."""
import json

import numpy as np
import pytest
import yaml

from ros_ncal.calib import CalibResult, NoCorrection
from ros_ncal.calib.eval_data import load_kitti_samples
from ros_ncal.calib.offline import calibrate_sequence
from ros_ncal.cli import main as ncal
from ros_ncal.geometry import invert, is_rigid, make_T, pose_error, rotvec_to_matrix


class KnowsTruth:
    """Returns the truth for each frame (a perfect calibrator), or fails / raises on chosen calls."""

    def __init__(self, truths, fail=(), raise_on=()):
        self.truths, self.fail, self.raise_on, self.calls = truths, set(fail), set(raise_on), []

    def estimate(self, sample, T_init):
        n = len(self.calls)
        self.calls.append(np.array(T_init))
        if n in self.raise_on:
            raise RuntimeError('boom')
        if n in self.fail:
            return CalibResult.failure(T_init, 'no')
        return CalibResult(self.truths[n % len(self.truths)], 0.9, True, 'ok')


@pytest.fixture(scope='module')
def frames(kitti_dir):
    samples, _ = load_kitti_samples(kitti_dir, splits=('training',), max_frames=3)
    return samples


def test_sequence_fuses_one_correction_for_frames_with_different_nominals(frames):
    D = make_T(rotvec_to_matrix([0.02, -0.05, 0.01]), [0.1, -0.2, 0.05])
    truths = [s.T_cam_lidar for s in frames]
    nominal = [s.replace(T_cam_lidar=s.T_cam_lidar @ D) for s in frames]
    cal = KnowsTruth(truths, fail=(0,), raise_on=(1,))
    res = calibrate_sequence(nominal, cal, passes=2, frame_ids=['a', 'b', 'c'])
    assert len(res.frames) == 6 and res.accepted == 4 and res.passes == 2
    assert [f.frame_id for f in res.frames] == ['a', 'b', 'c', 'a', 'b', 'c']
    assert not res.frames[0].accepted and 'raised RuntimeError' in res.frames[1].message
    assert pose_error(res.correction, invert(D))[0] < 1e-4 and pose_error(res.correction, invert(D))[1] < 1e-6
    assert pose_error(res.T_cam_lidar, truths[0])[0] < 1e-4
    # the first two frames start from their nominals; after the first success every frame starts from the fused one
    assert np.allclose(cal.calls[1], nominal[1].T_cam_lidar) and np.allclose(cal.calls[3], truths[0], atol=1e-9)
    s = res.summary()
    assert s['frames_accepted'] == 4 and is_rigid(np.array(s['T_cam_lidar']))
    assert s['change_from_nominal']['rot_deg'] == pytest.approx(pose_error(D, np.eye(4))[0], abs=1e-3)
    assert s['rot_std_deg'] == pytest.approx(0.0, abs=1e-3) and json.dumps(s)
    # init_from nominal: every frame starts from its nominal
    cal2 = KnowsTruth(truths)
    calibrate_sequence(nominal, cal2, init_from='nominal')
    assert all(np.allclose(c, s.T_cam_lidar) for c, s in zip(cal2.calls, nominal))
    res0 = calibrate_sequence(nominal[:1], NoCorrection())
    # 'none' estimates nothing: its one frame carries the configured prior, not an unknown (docs/reliability.md)
    assert np.allclose(res0.correction, np.eye(4)) and res0.summary()['rot_std_deg'] == pytest.approx(1.0)
    assert res0.summary()['trans_std_cm'] == pytest.approx(2.0)
    with pytest.raises(ValueError, match='passes'):
        calibrate_sequence(nominal, cal, passes=0)
    with pytest.raises(ValueError, match='no samples'):
        calibrate_sequence([], cal)


def test_cli_on_a_real_bag_with_a_wrong_nominal(tmp_path, kitti_dir, capsys):
    from ros_ncal.bag.perturbed import frames_sharing_calibration, write_kitti_bag_with_error
    ids = frames_sharing_calibration(kitti_dir)[:2]
    bag, _, truth = write_kitti_bag_with_error(kitti_dir, tmp_path / 'k', ids, 2.0, 0.1, error_seed=1)
    (tmp_path / 'truth.json').write_text(json.dumps({'T_cam_lidar_true': truth['T_cam_lidar_true']}))
    out = tmp_path / 'cal'
    rc = ncal(['calibrate', str(bag), '--truth', str(tmp_path / 'truth.json'),
               '--passes', '2', '--no-progress', '--out', str(out)])
    printed = capsys.readouterr().out
    assert rc == 0, printed
    assert '2 frames (bag' in printed and 'vs ground truth: nominal 2.000 deg / 10.00 cm' in printed
    cal = yaml.safe_load((out / 'calibration.yaml').read_text())
    T = np.array(cal['T_cam_lidar']).reshape(4, 4)
    assert is_rigid(T) and cal['frames'] == 4 and cal['backend'] == 'nclr/classical'
    rep = json.loads((out / 'report.json').read_text())
    assert rep['truth']['nominal_error']['rot_deg'] == pytest.approx(2.0, abs=1e-3)
    assert len(rep['frames']) == 4 and np.allclose(rep['T_cam_lidar'], T, atol=1e-6)
    # the estimate is what the report says, and the rotation got better than the 2-degree nominal
    assert rep['truth']['calibrated_error']['rot_deg'] == pytest.approx(
        pose_error(np.array(rep['T_cam_lidar']), np.array(truth['T_cam_lidar_true']))[0], abs=1e-6)
    assert rep['truth']['calibrated_error']['rot_deg'] < 1.5
    from PIL import Image
    img = np.asarray(Image.open(out / 'overlay.png'))
    assert img.shape[1] > 2 * 1200 and img.std() > 5


def test_cli_shipped_handover_on_synthetic_frames_and_clear_errors(tmp_path, capsys):
    out = tmp_path / 'syn'
    rc = ncal(['calibrate', 'synthetic', '--frames', '2', '--perturb', '5,0.3', '--no-progress', '--out', str(out)])
    assert rc == 0, capsys.readouterr().out
    rep = json.loads((out / 'report.json').read_text())
    assert rep['backend'] == 'nclr/classical' and rep['truth']['nominal_error']['rot_deg'] == pytest.approx(5.0)
    assert rep['truth']['calibrated_error']['rot_deg'] < 2.0           # measured ~0.2 deg
    capsys.readouterr()
    assert ncal(['calibrate', str(tmp_path / 'nothing_here'), '--out', str(out)]) == 2
    assert 'cannot read' in capsys.readouterr().out
    assert ncal(['calibrate', 'synthetic', '--perturb', 'five', '--frames', '1', '--backend', 'none',
                 '--out', str(out)]) == 2
    assert ncal(['calibrate', 'synthetic', '--backend', 'nope', '--out', str(out)]) == 2
    assert 'unknown calibrator' in capsys.readouterr().out
