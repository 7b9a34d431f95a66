"""Pickles the project reads never run code (issue 12, item 1): the plain-data unpickler."""
from __future__ import annotations

import collections
import pickle
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from ros_ncal.data.readers.nuscenes import iter_nuscenes_samples, load_info
from ros_ncal.data.safe_pickle import UnsafePickleError, safe_load, safe_loads

REPO = Path(__file__).resolve().parents[1]


class _WritesAFile:
    """Unpickling this calls exec(), which creates ``target``: what a hostile info file does."""

    def __init__(self, target: Path):
        self.target = str(target)

    def __reduce__(self):
        return exec, (f'open({self.target!r}, "w").write("pwned")',)


def _hostile_info(tmp_path: Path, target: Path) -> Path:
    """An mmdet3d-looking info pickle whose data_list carries the payload."""
    pkl = tmp_path / 'hostile.pkl'
    pkl.write_bytes(pickle.dumps({'metainfo': {'categories': {'car': 0}}, 'data_list': [_WritesAFile(target)]}))
    return pkl


def test_the_payload_is_real_with_plain_pickle(tmp_path):
    """Control: plain pickle.load runs the payload (so the tests below would fail with it)."""
    target = tmp_path / 'control_pwned.txt'
    pickle.loads(pickle.dumps(_WritesAFile(target)))
    assert target.read_text() == 'pwned'


def test_nuscenes_reader_refuses_code_and_names_the_file(tmp_path):
    target = tmp_path / 'pwned.txt'
    pkl = _hostile_info(tmp_path, target)
    with pytest.raises(UnsafePickleError) as err:
        load_info(pkl)
    assert str(pkl) in str(err.value) and 'builtins.exec' in str(err.value)
    with pytest.raises(ValueError):
        list(iter_nuscenes_samples(pkl))
    assert not target.exists(), 'the pickle ran code'


def test_ncal_prepare_nuscenes_refuses_code_one_line_exit_2(tmp_path):
    target = tmp_path / 'pwned_cli.txt'
    pkl = _hostile_info(tmp_path, target)
    proc = subprocess.run([sys.executable, '-m', 'ros_ncal.cli', 'prepare', 'nuscenes', str(pkl),
                           '--out', str(tmp_path / 'ds')], capture_output=True, text=True, timeout=120, cwd=REPO)
    assert proc.returncode == 2, proc.stderr
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and str(pkl) in lines[0] and 'refused' in lines[0], proc.stderr
    assert 'Traceback' not in proc.stderr + proc.stdout
    assert not target.exists(), 'the pickle ran code'


@pytest.mark.parametrize('protocol', [2, 4, 5])
def test_plain_data_round_trips(protocol):
    data = {'a': np.arange(12, dtype=np.float32).reshape(3, 4), 'b': [1, 2.5, 'x', None, True, b'raw'],
            'c': (np.int64(7), np.float64(0.25), np.bool_(True)), 'd': collections.OrderedDict(k=np.zeros(0)),
            'e': np.array(['ab', 'c']), 'f': np.array([(1, 2.0)], dtype=[('i', '<i4'), ('f', '<f8')]),
            'g': {3, 4}, 'h': np.asfortranarray(np.eye(3))}
    out = safe_loads(pickle.dumps(data, protocol=protocol))
    assert out.keys() == data.keys() and out['b'] == data['b'] and out['g'] == {3, 4}
    for k in ('a', 'e', 'f', 'h'):
        np.testing.assert_array_equal(out[k], data[k])
        assert out[k].dtype == data[k].dtype
    assert out['c'] == data['c'] and isinstance(out['d'], collections.OrderedDict)


def test_code_hidden_in_an_object_array_is_refused():
    arr = np.empty(2, dtype=object)
    arr[0], arr[1] = {'ok': 1}, _WritesAFile(Path('/nonexistent/never'))
    with pytest.raises(UnsafePickleError):
        safe_loads(pickle.dumps({'x': arr}))


def test_other_globals_are_refused():
    for obj in (Path('/tmp'), print, collections.Counter('ab'), type('X', (), {})):
        try:
            blob = pickle.dumps(obj)
        except (pickle.PicklingError, AttributeError):
            continue
        with pytest.raises(UnsafePickleError):
            safe_loads(blob)


def test_truncated_pickle_is_a_clear_error(tmp_path):
    p = tmp_path / 'cut.pkl'
    p.write_bytes(pickle.dumps({'data_list': list(range(1000))})[:-50])
    with pytest.raises(ValueError, match=str(p)):
        safe_load(p)


def test_real_mmdet3d_info_pickle_loads_like_plain_pickle(shared_data):
    """The shared nuScenes info file (and the KITTI mmdet3d info) read identically with the safe unpickler."""
    for pkl in (shared_data / 'nuscenes' / 'n015-2018-07-24-11-22-45+0800.pkl',
                *sorted((shared_data / 'kitti_object_reduced' / 'training' / 'mmdet3d_info').glob('*.pkl'))[:1]):
        with open(pkl, 'rb') as f:
            expected = pickle.load(f)   # trusted project data: the reference for the comparison only
        got = safe_load(pkl)
        _assert_same(got, expected)


def _assert_same(a, b):
    assert type(a) is type(b)
    if isinstance(b, dict):
        assert list(a) == list(b)
        for k in b:
            _assert_same(a[k], b[k])
    elif isinstance(b, (list, tuple)):
        assert len(a) == len(b)
        for x, y in zip(a, b):
            _assert_same(x, y)
    elif isinstance(b, np.ndarray):
        np.testing.assert_array_equal(a, b)
        assert a.dtype == b.dtype
    else:
        assert a == b or (a != a and b != b)


def test_no_loader_in_the_package_can_run_code():
    """Static guard: every pickle-based read in ros_ncal goes through a restricted unpickler."""
    import re
    bad = []
    rules = [(re.compile(r'\bpickle\.(load|loads|Unpickler)\b'), 'plain pickle'),
             (re.compile(r'\btorch\.load\((?!.*weights_only=True)'), 'torch.load without weights_only=True'),
             (re.compile(r'allow_pickle\s*=\s*True'), 'np.load(allow_pickle=True)'),
             (re.compile(r'\byaml\.(load|unsafe_load|full_load)\('), 'yaml.load (not safe_load)'),
             (re.compile(r'\b(joblib|dill|shelve|marshal)\b'), 'a code-running deserializer')]
    for path in sorted((REPO / 'ros_ncal').rglob('*.py')):
        if path.name == 'safe_pickle.py':
            continue
        for n, line in enumerate(path.read_text().splitlines(), 1):
            code = line.split('#', 1)[0]
            bad += [f'{path.relative_to(REPO)}:{n}: {why}' for rx, why in rules if rx.search(code)]
    assert not bad, bad
