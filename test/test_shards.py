"""Shard writer/reader: round trip, append-on-reopen, DDP/worker splits, crash safety, corrupt input."""
from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from ros_ncal.data.shards import (DatasetLockedError, ShardDataset, ShardError, ShardIterableDataset, ShardWriter,
                                  read_manifest)

from support import make_sample

REPO = Path(__file__).resolve().parents[1]


def test_round_trip_png_is_exact_and_manifest_counts(tmp_path):
    samples = [make_sample(i) for i in range(5)]
    with ShardWriter(tmp_path, samples_per_shard=2, class_names={'points': ['a', 'b']}, sensors={'lidar': 'x'},
                     source='test') as w:
        keys = [w.append(s) for s in samples]
    assert keys == [f'{i:09d}' for i in range(5)]
    assert sorted(p.name for p in tmp_path.glob('shard-*.tar')) == ['shard-000000.tar', 'shard-000001.tar',
                                                                     'shard-000002.tar']
    m = read_manifest(tmp_path)
    assert m['total'] == 5 and m['shards'] == {'shard-000000.tar': 2, 'shard-000001.tar': 2, 'shard-000002.tar': 1}
    assert m['class_names'] == {'points': ['a', 'b']} and m['sensors'] == {'lidar': 'x'}
    ds = ShardDataset(tmp_path)
    assert len(ds) == 5 and ds.skipped == [] and ds.notes == []
    for a, b in zip(samples, ds):
        np.testing.assert_array_equal(a.points, b.points)
        np.testing.assert_array_equal(a.image, b.image)
        np.testing.assert_array_equal(a.K, b.K)
        np.testing.assert_array_equal(a.T_cam_lidar, b.T_cam_lidar)
        np.testing.assert_array_equal(a.point_labels, b.point_labels)
        np.testing.assert_array_equal(a.instance_ids, b.instance_ids)
        np.testing.assert_array_equal(a.boxes, b.boxes)
        np.testing.assert_array_equal(a.box_labels, b.box_labels)
        np.testing.assert_array_equal(a.pixel_labels, b.pixel_labels)
        assert (b.stamp_ns, b.image_stamp_ns, b.frame_ids, b.meta) == (a.stamp_ns, a.image_stamp_ns, a.frame_ids,
                                                                        a.meta)
    # random access agrees with iteration
    np.testing.assert_array_equal(ds[3].points, samples[3].points)
    assert ds.key_of(3) == ('shard-000001.tar', '000000003')


def test_jpeg_is_close_not_exact_and_optional_fields_absent(tmp_path):
    s = make_sample(0, labels=False, hw=(64, 64))
    s = s.replace(image=np.tile(np.linspace(0, 255, 64, dtype=np.uint8)[None, :, None], (64, 1, 3)))
    with ShardWriter(tmp_path, image_format='jpg', jpeg_quality=90) as w:
        w.append(s)
    assert (tmp_path / 'shard-000000.tar').exists()
    (b,) = list(ShardDataset(tmp_path))
    assert b.point_labels is None and b.boxes is None and b.pixel_labels is None
    err = np.abs(b.image.astype(int) - s.image.astype(int))
    assert err.mean() < 3.0


def test_reopen_appends_and_continues_numbering(tmp_path):
    with ShardWriter(tmp_path, samples_per_shard=3, class_names=['x']) as w:
        for i in range(4):
            w.append(make_sample(i))
    with ShardWriter(tmp_path, samples_per_shard=3) as w:  # class names come from the manifest
        assert w.num_samples == 4 and w.class_names == ['x']
        assert w.append(make_sample(4)) == '000000004'
    ds = ShardDataset(tmp_path)
    assert len(ds) == 5 and ds.num_shards == 3
    assert [s.meta['index'] for s in ds] == [0, 1, 2, 3, 4]
    assert read_manifest(tmp_path)['total'] == 5
    with pytest.raises(ShardError, match='class_names differ'):
        ShardWriter(tmp_path, class_names=['y'])


def test_second_live_writer_is_refused(tmp_path):
    with ShardWriter(tmp_path):
        with pytest.raises(DatasetLockedError):
            ShardWriter(tmp_path)
    with ShardWriter(tmp_path) as w:  # released on close
        w.append(make_sample(0))


def test_rank_and_worker_splits_are_disjoint_and_cover(tmp_path):
    with ShardWriter(tmp_path, samples_per_shard=1, durability='shard') as w:
        for i in range(10):
            w.append(make_sample(i, n=20, labels=False))
    ds = ShardDataset(tmp_path, shuffle_shards=True, seed=3)
    seen = []
    for rank in range(2):
        for wid in range(2):
            seen.append(sorted(s.meta['index'] for s in ds.iter_shards(rank, 2, wid, 2)))
    flat = sorted(i for part in seen for i in part)
    assert flat == list(range(10)), seen
    assert all(len(p) in (2, 3) for p in seen)
    # shuffle buffer: a deterministic permutation of everything, different per epoch
    sh = ShardDataset(tmp_path, shuffle_buffer=4, shuffle_shards=True, seed=1)
    a = [s.meta['index'] for s in sh]
    assert sorted(a) == list(range(10)) and a == [s.meta['index'] for s in sh]
    sh.set_epoch(1)
    assert [s.meta['index'] for s in sh] != a
    with pytest.raises(ValueError):
        ds.shards_for(rank=2, world_size=2)
    # per-sample split: balanced to one sample, disjoint, covering; even=True pads ranks to equal length
    parts = [[s.meta['index'] for s in ds.iter_split(r, 3, w, 2, split='sample')] for r in range(3) for w in range(2)]
    assert sorted(i for p in parts for i in p) == list(range(10)) and {len(p) for p in parts} <= {1, 2}
    ranks = [sorted(s.meta['index'] for w in range(2) for s in ds.iter_split(r, 3, w, 2, even=True)) for r in range(3)]
    assert [len(r) for r in ranks] == [4, 4, 4] and set().union(*map(set, ranks)) == set(range(10))


def test_torch_iterable_dataset_with_two_workers(tmp_path):
    import torch.utils.data
    from ros_ncal.data import collate_samples
    with ShardWriter(tmp_path, samples_per_shard=2) as w:
        for i in range(6):
            w.append(make_sample(i, n=30, labels=False))
    for split in ('shard', 'sample', 'auto'):
        it = ShardIterableDataset(tmp_path, split=split)
        assert len(it) == 6
        loader = torch.utils.data.DataLoader(it, batch_size=2, num_workers=2, collate_fn=collate_samples)
        got = sorted(s.meta['index'] for batch in loader for s in batch.samples)
        assert got == list(range(6)), split


WRITER_SCRIPT = r'''
import sys, numpy as np
sys.path.insert(0, {repo!r}); sys.path.insert(0, {test!r})
from support import make_sample
from ros_ncal.data.shards import ShardWriter
w = ShardWriter(sys.argv[1], samples_per_shard=3, durability=sys.argv[2])
i = 0
while True:
    key = w.append(make_sample(i, n=5000, hw=(120, 160)))
    print(key, flush=True)
    i += 1
'''


def _run_and_kill(root: Path, durability: str, n_before_kill: int) -> list[str]:
    code = WRITER_SCRIPT.format(repo=str(REPO), test=str(REPO / 'test'))
    proc = subprocess.Popen([sys.executable, '-c', code, str(root), durability], stdout=subprocess.PIPE, text=True)
    acked = []
    try:
        while len(acked) < n_before_kill:
            line = proc.stdout.readline()
            assert line, f'writer exited early with {proc.wait()}'
            acked.append(line.strip())
        time.sleep(0.01)  # land the kill somewhere inside a later append
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    acked += [line.strip() for line in proc.stdout.read().splitlines() if line.strip()]  # printed before the kill
    return acked


def test_sigkill_mid_write_loses_at_most_the_sample_in_flight(tmp_path):
    acked = _run_and_kill(tmp_path, 'sample', 7)
    (tmp_path / '.shard-000099.tar.tmp').write_bytes(b'junk of a dead writer')  # a guaranteed stray temp file
    with pytest.warns(RuntimeWarning, match='temporary file'):
        ds = ShardDataset(tmp_path)
    keys = [ds.key_of(i)[1] for i in range(len(ds))]
    assert set(acked) <= set(keys), 'an acknowledged sample was lost'
    assert len(keys) - len(acked) <= 1  # the in-flight append may have committed before its key was printed
    assert all(r.what.endswith('.tmp') for r in ds.skipped), ds.skipped  # no torn shard is visible
    assert [s.meta['index'] for s in ds] == list(range(len(keys)))
    # appending resumes: the temp files are cleaned up, numbering continues
    with pytest.warns(RuntimeWarning, match='interrupted writer'):
        w = ShardWriter(tmp_path, samples_per_shard=3)
    with w:
        assert w.append(make_sample(100, n=10)) == f'{len(keys):09d}'
    ds2 = ShardDataset(tmp_path)
    assert len(ds2) == len(keys) + 1 and ds2.skipped == []
    assert read_manifest(tmp_path)['total'] == len(keys) + 1


def test_sigkill_in_shard_durability_never_exposes_partial_shard(tmp_path):
    _run_and_kill(tmp_path, 'shard', 4)
    ds = ShardDataset(tmp_path, warn=False)
    # only full 3-sample shards are visible
    assert all(len(s.keys) == 3 for s in ds.shards)
    assert [s.meta['index'] for s in ds] == list(range(len(ds)))


def test_truncated_and_corrupt_shards_are_skipped_and_reported(tmp_path):
    with ShardWriter(tmp_path, samples_per_shard=2) as w:
        for i in range(6):
            w.append(make_sample(i))
    s0, s1, s2 = sorted(tmp_path.glob('shard-*.tar'))
    data = s1.read_bytes()
    s1.write_bytes(data[: len(data) // 2])  # torn in the middle of a member
    raw = bytearray(s2.read_bytes())  # flip bytes inside the first member's data (points.npy of sample 4)
    raw[512 + 200: 512 + 210] = b'\xff' * 10
    s2.write_bytes(bytes(raw))
    with pytest.warns(RuntimeWarning, match='shard-000001.tar'):
        ds = ShardDataset(tmp_path)
    assert [r.what for r in ds.skipped] == ['shard-000001.tar']
    assert 'truncated' in ds.skipped[0].reason
    assert ds.num_shards == 2
    with pytest.warns(RuntimeWarning, match='checksum'):
        got = [s.meta['index'] for s in ds]
    assert got == [0, 1, 5]
    assert any('000000004' in r.what and 'checksum' in r.reason for r in ds.skipped)
    # cut exactly at a sample boundary (the end-of-archive marker is gone): still detected as torn
    off, size = ds.shards[0].members['000000000']['meta.json']
    s0.write_bytes(s0.read_bytes()[: off + size + (-size) % 512])
    ds = ShardDataset(tmp_path, warn=False)
    assert 'shard-000000.tar' in [r.what for r in ds.skipped]


def test_manifest_is_reconciled_with_disk(tmp_path):
    with ShardWriter(tmp_path, samples_per_shard=2) as w:
        for i in range(3):
            w.append(make_sample(i, labels=False))
    m = json.loads((tmp_path / 'manifest.json').read_text())
    m['shards'] = {'shard-000000.tar': 5, 'shard-000007.tar': 2}
    (tmp_path / 'manifest.json').write_text(json.dumps(m))
    ds = ShardDataset(tmp_path)
    assert len(ds) == 3
    text = ' | '.join(ds.notes)
    assert 'shard-000007.tar' in text and 'not on disk' in text
    assert 'manifest says 5' in text and 'shard-000001.tar: on disk' in text
    (tmp_path / 'manifest.json').write_text('{not json')
    ds = ShardDataset(tmp_path)
    assert len(ds) == 3 and any('unreadable manifest' in n for n in ds.notes)
    (tmp_path / 'manifest.json').unlink()
    assert len(ShardDataset(tmp_path)) == 3


def test_bad_writer_arguments_and_meta(tmp_path):
    with pytest.raises(ValueError, match='image_format'):
        ShardWriter(tmp_path, image_format='bmp')
    with pytest.raises(ValueError, match='samples_per_shard'):
        ShardWriter(tmp_path, samples_per_shard=0)
    with ShardWriter(tmp_path) as w:
        with pytest.raises(ValueError, match='JSON'):
            w.append(make_sample(0).replace(meta={'x': object()}))
        with pytest.raises(ValueError, match='uint16'):
            w.append(make_sample(0).replace(pixel_labels=np.full((24, 32), -1)))
        assert w.num_samples == 0
    assert len(ShardDataset(tmp_path)) == 0
    with pytest.raises(ShardError, match='not found'):
        ShardDataset(tmp_path / 'nope')
