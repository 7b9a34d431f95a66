"""scripts/replay_joint.py: the joint stage re-run from a report's recorded fused corrections reproduces the
original run's joint results exactly when the settings are the same (so a changed setting is measured on the
very starts the network gave), and the replayed report keeps the summary's shape."""
from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest

from ros_ncal.calib import NoCorrection
from ros_ncal.calib.eval_data import load_kitti_raw_samples
from ros_ncal.calib.evaluate import run_sequences, summarize_sequences
from ros_ncal.calib.joint import JointEdgeRefiner
from ros_ncal.geometry import make_T, rotvec_to_matrix

REPO = Path(__file__).resolve().parents[1]


def _script():
    spec = importlib.util.spec_from_file_location('replay_joint', REPO / 'scripts' / 'replay_joint.py')
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_replay_with_the_same_settings_reproduces_the_joint_records(shared_data, tmp_path):
    drive = shared_data / 'kitti_raw/2011_09_26/2011_09_26_drive_sfnd_sync'
    samples, ids = load_kitti_raw_samples(drive, '57:77', step=4)
    config = str(REPO / 'config' / 'calib_eval.yaml')
    D = make_T(rotvec_to_matrix(np.radians([0.3, -0.2, 0.1])), [0.06, 0.0, -0.05])
    records = run_sequences(samples, [D], {'none': NoCorrection()}, passes=1, joint=JointEdgeRefiner.from_yaml(config))
    report = {'sample_ids': ids, 'info': {'config': config},
              'sequence': {'records': records, 'success_rre_deg': 1.0, 'success_rte_m': 0.1,
                           'summary': summarize_sequences(records, 1.0, 0.1)}}
    src, out = tmp_path / 'report.json', tmp_path / 'replayed.json'
    src.write_text(json.dumps(report))
    assert _script().main([str(src), str(out), '--frame-range', '57:77', '--frame-step', '4',
                           '--kitti-raw-drive', str(drive)]) == 0
    new = json.loads(out.read_text())
    old_joint = next(r for r in records if r['calibrator'] == 'none+joint')
    new_joint = next(r for r in new['sequence']['records'] if r['calibrator'] == 'none+joint')
    assert new_joint['joint']['objective'] == old_joint['joint']['objective']
    assert (new_joint['rre_deg'], new_joint['rte_cm']) == (old_joint['rre_deg'], old_joint['rte_cm'])
    assert new['sequence']['summary'] == report['sequence']['summary']
    assert new['info']['joint_replayed']['config'] == config
    # --calibrators names the ones replayed; the others' +joint rows (the old joint stage) are dropped
    assert _script().main([str(src), str(out), '--frame-range', '57:77', '--frame-step', '4', '--kitti-raw-drive',
                           str(drive), '--calibrators', 'nclr/classical']) == 0
    assert [r['calibrator'] for r in json.loads(out.read_text())['sequence']['records']] == ['none']
    # other frames than the report's: refused
    with pytest.raises(SystemExit, match='not the report'):
        _script().main([str(src), str(out), '--frame-range', '57:77', '--frame-step', '2', '--kitti-raw-drive',
                        str(drive)])
