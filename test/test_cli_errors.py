"""`ncal` errors (issue 12, item 8): one line naming the file or key and exit 2 for user errors, a --debug
traceback, outputs checked before any work, no calibration.yaml when no frame was accepted.

Real commands on real files (configs, bags, checkpoints written here); the disk-full case writes through a
symlink to /dev/full, which fails every write with ENOSPC.
"""
from __future__ import annotations

import errno
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

from ros_ncal.assets import SEG
from ros_ncal.bag import BagFrame, SensorBagWriter
from ros_ncal.cli import main
from ros_ncal.cli_errors import UserError, classify, ensure_writable

REPO = Path(__file__).resolve().parents[1]
CALIB_EVAL = REPO / 'config' / 'calib_eval.yaml'


def _run(capsys, *argv) -> tuple[int, str, str]:
    code = main([str(a) for a in argv])
    cap = capsys.readouterr()
    return code, cap.out, cap.err


def _error_lines(text: str) -> list[str]:
    return [ln for ln in text.splitlines() if 'error' in ln.lower()]


def _config_with(tmp_path: Path, section: str, **values) -> Path:
    data = yaml.safe_load(CALIB_EVAL.read_text())
    data.setdefault(section, {}).update(values)
    path = tmp_path / 'calib.yaml'
    path.write_text(yaml.safe_dump(data))
    return path


def _blocker(tmp_path: Path) -> Path:
    """A regular file: any output path below it cannot be created (root ignores permission bits)."""
    f = tmp_path / 'a_file'
    f.write_text('x')
    return f


# ------------------------------------------------------------------------------- config errors

def test_unknown_yaml_key_one_line_naming_file_and_key_exit_2(tmp_path):
    cfg = _config_with(tmp_path, 'fusion', gaet=2.0)
    proc = subprocess.run([sys.executable, '-m', 'ros_ncal.cli', 'calibrate', 'synthetic', '--frames', '1',
                           '--config', str(cfg), '--out', str(tmp_path / 'out')],
                          capture_output=True, text=True, timeout=300, cwd=REPO)
    text = proc.stdout + proc.stderr
    assert proc.returncode == 2, text
    assert 'Traceback' not in text
    lines = _error_lines(text)
    assert len(lines) == 1 and str(cfg) in lines[0] and 'gaet' in lines[0], text


def test_wrong_type_in_yaml_names_file_and_key(tmp_path, capsys):
    cfg = _config_with(tmp_path, 'fusion', max_iters='twenty')
    code, out, err = _run(capsys, 'calibrate', 'synthetic', '--frames', '1', '--config', cfg,
                          '--out', tmp_path / 'out')
    lines = _error_lines(out + err)
    assert code == 2 and len(lines) == 1 and str(cfg) in lines[0] and 'max_iters' in lines[0], out + err


def test_broken_yaml_syntax_names_file_and_line(tmp_path, capsys):
    cfg = tmp_path / 'broken.yaml'
    cfg.write_text('fusion:\n  gate: [3.0\n  window: 5\n')
    code, out, err = _run(capsys, 'calibrate', 'synthetic', '--frames', '1', '--config', cfg,
                          '--out', tmp_path / 'out')
    lines = _error_lines(out + err)
    assert code == 2 and len(lines) == 1 and str(cfg) in lines[0] and 'line 3' in lines[0], out + err


@pytest.mark.parametrize('key,value', [('batch_size', 0), ('steps', 0), ('lr', -1.0)])
def test_pretrain_impossible_setting_names_key_and_file_before_any_work(tmp_path, capsys, key, value):
    cfg = REPO / 'config' / 'nclr' / 'calib_synthetic.yaml'
    code, out, err = _run(capsys, 'pretrain', cfg, '--set', f'train.{key}={value}', '--out', tmp_path / 'run')
    assert code == 2 and f'train.{key}' in err and str(cfg) in err and len(err.strip().splitlines()) == 1, err
    assert not (tmp_path / 'run').exists(), 'no work (not even the output folder) before the check'


def test_pretrain_unknown_key_names_it(tmp_path, capsys):
    cfg = REPO / 'config' / 'nclr' / 'calib_synthetic.yaml'
    code, out, err = _run(capsys, 'pretrain', cfg, '--set', 'train.batch_sise=4', '--out', tmp_path / 'run')
    assert code == 2 and 'batch_sise' in err and str(cfg) in err, err


# -------------------------------------------------------------------------------- missing inputs

def test_missing_checkpoint_and_missing_bag(tmp_path, capsys):
    code, out, err = _run(capsys, 'calibrate', 'synthetic', '--frames', '1', '--checkpoint', tmp_path / 'nope.pt',
                          '--out', tmp_path / 'out')
    lines = _error_lines(out + err)
    assert code == 2 and len(lines) == 1 and str(tmp_path / 'nope.pt') in lines[0], out + err
    code, out, err = _run(capsys, 'bag', 'info', tmp_path / 'no_bag')
    assert code == 2 and str(tmp_path / 'no_bag') in err and 'Traceback' not in err


def test_truncated_bag_info_one_line(tmp_path, capsys):
    mcap = _write_bag(tmp_path / 'b', black=False, frames=2)
    mcap.write_bytes(mcap.read_bytes()[: mcap.stat().st_size // 2])
    code, out, err = _run(capsys, 'bag', 'info', tmp_path / 'b')
    assert code == 2 and str(tmp_path / 'b') in err and len(err.strip().splitlines()) == 1, err


# ---------------------------------------------------------------------------------------- outputs

@pytest.mark.parametrize('argv', [
    ['calibrate', 'synthetic', '--frames', '1', '--out', '{bad}'],
    ['eval-calib', '--data', 'synthetic', '--frames', '1', '--out', '{bad}'],
    ['prepare', 'synthetic', '--frames', '1', '--out', '{bad}'],
    ['synth', '--frames', '1', '--out', '{bad}'],
    ['synth', '--frames', '1', '--shards', '{bad}'],
    ['bag', 'write-kitti', 'KITTI', '{bad}/x.mcap'],
    ['demo', '--out', '{bad}'],
    ['inspect', 'DATASET', '--out', '{bad}'],
    ['eval', 'seg', 'CKPT', '--out', '{bad}/m.json'],
    ['pretrain', 'CONFIG', '--out', '{bad}'],
    ['finetune', 'seg', 'FTCONFIG', '--output-dir', '{bad}'],
])
def test_unwritable_output_is_refused_before_any_work(tmp_path, capsys, shared_data, argv):
    bad = str(_blocker(tmp_path) / 'sub')
    subst = {'KITTI': str(shared_data / 'kitti_object' / 'training'), 'DATASET': str(tmp_path),
             'CKPT': str(SEG),
             'CONFIG': str(REPO / 'config' / 'nclr' / 'calib_synthetic.yaml'),
             'FTCONFIG': str(REPO / 'config' / 'finetune' / 'seg_1pct.yaml')}
    args = [subst.get(a, a.replace('{bad}', bad)) for a in argv]
    code, out, err = _run(capsys, *args)
    assert code == 2, out + err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and bad in lines[0] and 'not a directory' in lines[0], err
    assert out.strip() == '', f'work started before the output check: {out!r}'


def test_ensure_writable_cases(tmp_path):
    assert ensure_writable(tmp_path / 'new' / 'deeper') == tmp_path / 'new' / 'deeper'
    assert not (tmp_path / 'new').exists(), 'the check creates nothing'
    assert list(tmp_path.iterdir()) == [], 'the probe file is removed'
    f = _blocker(tmp_path)
    ensure_writable(f)                                  # an existing file: appendable, not modified
    assert f.read_text() == 'x'
    with pytest.raises(UserError, match='not a directory'):
        ensure_writable(f / 'x', '--out')


def test_full_disk_is_one_line_naming_the_output(tmp_path, capsys):
    """calibration.yaml is a symlink to /dev/full: the write fails with ENOSPC after the work."""
    out = tmp_path / 'out'
    out.mkdir()
    os.symlink('/dev/full', out / 'calibration.yaml')
    code, stdout, err = _run(capsys, 'calibrate', 'synthetic', '--frames', '1', '--backend', 'classical',
                             '--no-joint', '--no-progress', '--out', out)
    assert code == 2, stdout + err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and 'no space left' in lines[0] and str(out) in lines[0], err


# ------------------------------------------------------------------------------ debug / internal

def test_debug_flag_shows_the_traceback_before_or_after_the_command(tmp_path, capsys):
    cfg = _config_with(tmp_path, 'fusion', gaet=2.0)
    out_dir = _blocker(tmp_path) / 'sub'
    for argv in (['--debug', 'calibrate', 'synthetic', '--out', out_dir],
                 ['calibrate', 'synthetic', '--out', out_dir, '--debug']):
        code, out, err = _run(capsys, *argv)
        assert code == 2 and 'Traceback' in err and 'UserError' in err, err
    code, out, err = _run(capsys, 'calibrate', 'synthetic', '--config', cfg, '--out', out_dir)
    assert 'Traceback' not in err


def test_classify_user_and_internal_errors():
    code, line = classify(RuntimeError('boom\nsecond line'))
    assert code == 1 and '--debug' in line and '\n' not in line and 'RuntimeError: boom' in line
    code, line = classify(KeyError('k'))
    assert code == 1
    code, line = classify(OSError(errno.ENOSPC, 'No space left on device'), ['--out runs/x'])
    assert code == 2 and 'no space left' in line and '--out runs/x' in line
    code, line = classify(FileNotFoundError(errno.ENOENT, 'No such file or directory', '/x/y.bag'))
    assert code == 2 and line == '/x/y.bag: No such file or directory'
    code, line = classify(yaml.YAMLError('bad'))
    assert code == 2 and 'YAML' in line


# ---------------------------------------------------------------------------- no frame accepted

def _write_bag(bag_dir: Path, black: bool = True, frames: int = 2) -> Path:
    """Frames of a forward-looking camera; black images give no edges, so every calibrator drops them."""
    K = np.array([[100.0, 0, 64], [0, 100.0, 48], [0, 0, 1]])
    T = np.array([[0, -1, 0, 0], [0, 0, -1, 0], [1, 0, 0, 0], [0, 0, 0, 1.0]])
    with SensorBagWriter(bag_dir, 'mcap') as w:
        for i in range(frames):
            rng = np.random.default_rng(i)
            pts = np.c_[rng.uniform(5, 20, 2000), rng.uniform(-5, 5, 2000), rng.uniform(-1, 2, 2000),
                        rng.uniform(0, 1, 2000)].astype(np.float32)
            img = np.zeros((96, 128, 3), np.uint8) if black else rng.integers(0, 255, (96, 128, 3), dtype=np.uint8)
            w.write_frame(BagFrame(pts, img, K, T, (i + 1) * 10**9))
    return w.storage_file


def test_calibrate_with_no_accepted_frame_fails_by_reason_and_writes_no_calibration(tmp_path, capsys):
    _write_bag(tmp_path / 'black')
    out = tmp_path / 'out'
    out.mkdir()
    (out / 'calibration.yaml').write_text('T_cam_lidar: stale\n')     # from an earlier run
    code, stdout, err = _run(capsys, 'calibrate', tmp_path / 'black', '--backend', 'classical', '--no-progress',
                             '--out', out)
    assert code == 3, stdout + err
    assert not (out / 'calibration.yaml').exists(), 'no calibration.yaml when no frame was accepted'
    line = [ln for ln in err.splitlines() if 'no frame was accepted' in ln]
    assert len(line) == 1 and '2 x ' in line[0] and 'edges' in line[0], err
    report = yaml.safe_load((out / 'report.json').read_text())
    assert report['frames_accepted'] == 0 and sum(report['drop_reasons'].values()) == 2
