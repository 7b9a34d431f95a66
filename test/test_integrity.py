"""Integrity (issue 12): checkpoints carry a content hash verified at load; damaged bags are reported.

Real files: checkpoints written by save_checkpoint (the function pretraining and fine-tuning use), the
shipped assets, an MCAP bag written by the project's SensorBagWriter; bytes are flipped in copies.
"""
from __future__ import annotations

import shutil
import struct
import warnings
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch

from ros_ncal.assets import ASSETS_DIR
from ros_ncal.bag import BagFrame, BagReadError, SensorBagWriter, read_messages
from ros_ncal.cli import main
from ros_ncal.models.checkpoint import (CHECKPOINT_SCHEMA_VERSION, HASH_KEY, CheckpointError, _read_payload,
                                        content_hash, load_checkpoint, rehash_checkpoint, save_checkpoint)

REPO = Path(__file__).resolve().parents[1]
ASSETS = ASSETS_DIR
MAX_ASSET_BYTES = 20 * 1024 * 1024


def _small_checkpoint(path: Path) -> Path:
    g = torch.Generator().manual_seed(0)
    state = {'conv.weight': torch.randn(16, 8, 3, generator=g), 'bn.running_mean': torch.zeros(16),
             'bn.num_batches_tracked': torch.tensor(5), 'mask': torch.tensor([True, False])}
    return save_checkpoint(path, state, {'type': 'Tiny', 'width': 0.5},
                           {'step': 3, 'optimizer': {'state': {0: {'exp_avg': torch.ones(4)}}, 'lr': [1e-3]}})


def _entry_offset(path: Path, name_suffix: str) -> tuple[int, int]:
    """(offset of the entry's data in the file, size) for the zip entry ending in name_suffix."""
    raw = path.read_bytes()
    with zipfile.ZipFile(path) as z:
        info = next(i for i in z.infolist() if i.filename.endswith(name_suffix))
    name_len, extra_len = struct.unpack_from('<HH', raw, info.header_offset + 26)
    return info.header_offset + 30 + name_len + extra_len, info.file_size


def _flip(src: Path, dst: Path, offset: int, mask: int = 0x10) -> Path:
    data = bytearray(src.read_bytes())
    data[offset] ^= mask
    dst.write_bytes(data)
    return dst


def test_saved_checkpoint_carries_a_verified_hash(tmp_path):
    path = _small_checkpoint(tmp_path / 'm.pt')
    payload = load_checkpoint(path)
    assert payload['schema_version'] == CHECKPOINT_SCHEMA_VERSION == 2
    assert payload[HASH_KEY] == content_hash(payload) and len(payload[HASH_KEY]) == 64
    assert oct(path.stat().st_mode & 0o777) == oct(0o644), 'a new checkpoint must be readable by others'


def test_flipped_weight_byte_is_a_clear_error_not_a_silent_load(tmp_path):
    path = _small_checkpoint(tmp_path / 'm.pt')
    off, size = _entry_offset(path, 'data/0')       # the first tensor's raw bytes
    bad = _flip(path, tmp_path / 'bad.pt', off + size // 2)
    # torch itself does not notice: the weights differ and load without complaint
    raw = torch.load(bad, weights_only=True)
    assert not torch.equal(raw['model_state']['conv.weight'], load_checkpoint(path)['model_state']['conv.weight'])
    with pytest.raises(CheckpointError, match='content hash mismatch') as err:
        load_checkpoint(bad)
    assert str(bad) in str(err.value)


def test_no_single_flip_loads_different_contents(tmp_path):
    """Flip one byte at many places of a checkpoint: every load either raises CheckpointError or returns
    exactly the original contents (zip metadata a reader ignores)."""
    path = _small_checkpoint(tmp_path / 'm.pt')
    ref = load_checkpoint(path)
    data = path.read_bytes()
    bad = tmp_path / 'bad.pt'
    raised = 0
    positions = range(0, len(data), max(1, len(data) // 150))
    for pos in positions:
        _flip(path, bad, pos, 0x01)
        try:
            got = load_checkpoint(bad)
        except CheckpointError:
            raised += 1
            continue
        assert content_hash(got) == ref[HASH_KEY], f'byte {pos}: changed contents loaded silently'
    assert raised > len(positions) // 3


def test_truncated_and_missing_checkpoints(tmp_path):
    path = _small_checkpoint(tmp_path / 'm.pt')
    cut = tmp_path / 'cut.pt'
    cut.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(CheckpointError, match='cut.pt'):
        load_checkpoint(cut)
    with pytest.raises(CheckpointError, match='not found'):
        load_checkpoint(tmp_path / 'nope.pt')


def test_legacy_checkpoint_loads_with_a_warning_and_can_be_rehashed(tmp_path):
    path = _small_checkpoint(tmp_path / 'm.pt')
    legacy = _read_payload(path, 'cpu')
    legacy.pop(HASH_KEY)
    legacy['schema_version'] = 1
    old = tmp_path / 'old.pt'
    torch.save(legacy, old)
    with pytest.warns(RuntimeWarning, match='no content hash'):
        payload = load_checkpoint(old)
    assert torch.equal(payload['model_state']['conv.weight'], legacy['model_state']['conv.weight'])
    rehash_checkpoint(old)
    with warnings.catch_warnings():
        warnings.simplefilter('error')
        upgraded = load_checkpoint(old)
    assert upgraded['schema_version'] == 2 and upgraded[HASH_KEY] == load_checkpoint(path)[HASH_KEY]
    # a schema-2 file that lost its hash, and a corrupt file, are never re-blessed
    off, size = _entry_offset(path, 'data/0')
    bad = _flip(path, tmp_path / 'bad.pt', off + 3)
    with pytest.raises(CheckpointError, match='hash mismatch'):
        rehash_checkpoint(bad, tmp_path / 'fixed.pt')
    assert not (tmp_path / 'fixed.pt').exists()
    stripped = _read_payload(path, 'cpu')
    stripped.pop(HASH_KEY)
    torch.save(stripped, tmp_path / 'stripped.pt')
    with pytest.raises(CheckpointError, match=HASH_KEY):
        load_checkpoint(tmp_path / 'stripped.pt')


@pytest.mark.parametrize('name', ['nclr_calib.pt', 'nclr_backbone.pt', 'seg.pt', 'det.pt'])
def test_shipped_assets_carry_a_verified_hash(name):
    path = ASSETS / name
    assert path.stat().st_size <= MAX_ASSET_BYTES
    with warnings.catch_warnings():
        warnings.simplefilter('error')          # a legacy (hash-less) asset would warn: fail instead
        payload = load_checkpoint(path)
    assert payload['schema_version'] == 2 and payload[HASH_KEY] == content_hash(payload)


def test_calibrate_with_a_corrupt_checkpoint_exits_2_in_one_line(tmp_path, capsys):
    src = ASSETS / 'nclr_calib.pt'
    off, size = _entry_offset(src, 'data/0')
    bad = _flip(src, tmp_path / 'nclr_calib_bad.pt', off + size // 2)
    code = main(['calibrate', 'synthetic', '--frames', '1', '--checkpoint', str(bad), '--out', str(tmp_path / 'out'),
                 '--no-progress'])
    text = capsys.readouterr()
    text = text.out + text.err
    assert code == 2, text
    assert 'Traceback' not in text and str(bad) in text and 'hash mismatch' in text, text
    assert not (tmp_path / 'out' / 'calibration.yaml').exists()


# ----------------------------------------------------------------------------------------------- bags

def _write_bag(bag_dir: Path, frames: int = 3) -> Path:
    K = np.array([[50.0, 0, 32], [0, 50.0, 24], [0, 0, 1]])
    with SensorBagWriter(bag_dir, 'mcap') as w:
        for i in range(frames):
            rng = np.random.default_rng(i)
            w.write_frame(BagFrame(rng.normal(size=(300, 4)).astype(np.float32),
                                   rng.integers(0, 255, (48, 64, 3), dtype=np.uint8), K, np.eye(4), (i + 1) * 10**9))
    return w.storage_file


def _chunks(data: bytes) -> list[tuple[int, int]]:
    """(record start, record length) of every MCAP Chunk record (opcode 0x06)."""
    out, pos = [], 8
    while pos < len(data) - 8:
        op, length = data[pos], struct.unpack_from('<Q', data, pos + 1)[0]
        if op == 0x06:
            out.append((pos, length))
        if op in (0x0F, 0x02):
            break
        pos += 9 + length
    return out


def test_bag_written_by_the_project_has_chunk_crcs(tmp_path):
    mcap = _write_bag(tmp_path / 'b')
    data = mcap.read_bytes()
    chunks = _chunks(data)
    assert chunks and all(struct.unpack_from('<I', data, start + 9 + 24)[0] != 0 for start, _ in chunks)
    assert len(list(read_messages(tmp_path / 'b'))) == 10


def test_flipped_bytes_in_a_bag_chunk_are_reported(tmp_path):
    mcap = _write_bag(tmp_path / 'b')
    shutil.copytree(tmp_path / 'b', tmp_path / 'c')
    copy = tmp_path / 'c' / mcap.name
    start, length = _chunks(mcap.read_bytes())[0]
    for where in (0.3, 0.6, 0.9):               # inside image / cloud payloads of the first chunk
        _flip(mcap, copy, start + 9 + int(length * where), 0x40)
        with pytest.raises(BagReadError, match='checksum') as err:
            list(read_messages(tmp_path / 'c'))
        assert str(tmp_path / 'c') in str(err.value)


def test_truncated_bag_is_reported(tmp_path):
    mcap = _write_bag(tmp_path / 'b')
    shutil.copytree(tmp_path / 'b', tmp_path / 'c')
    copy = tmp_path / 'c' / mcap.name
    copy.write_bytes(mcap.read_bytes()[: mcap.stat().st_size * 2 // 3])
    with pytest.raises(BagReadError, match='corrupt or truncated'):
        list(read_messages(tmp_path / 'c'))


def test_ncal_calibrate_on_a_corrupt_bag_exits_2_in_one_line(tmp_path, capsys):
    mcap = _write_bag(tmp_path / 'b')
    shutil.copytree(tmp_path / 'b', tmp_path / 'c')
    copy = tmp_path / 'c' / mcap.name
    start, length = _chunks(mcap.read_bytes())[0]
    _flip(mcap, copy, start + 9 + length // 2, 0x40)
    code = main(['calibrate', str(tmp_path / 'c'), '--backend', 'classical', '--out', str(tmp_path / 'out'),
                 '--no-progress'])
    text = capsys.readouterr()
    text = text.out + text.err
    assert code == 2, text
    assert 'Traceback' not in text and 'checksum' in text and str(tmp_path / 'c') in text, text
