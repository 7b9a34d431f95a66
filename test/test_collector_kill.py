"""SIGKILL the collector process mid-write: the dataset stays readable, loses at most the sample in flight,
and a restarted collector appends to it."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from node_harness import T_CAM_LIDAR_AXES, RosGraph, SensorPublisher, StatusListener, synthetic_frame

from ros_ncal.data.shards import ShardDataset

REPO = Path(__file__).resolve().parents[1]
S0 = 1_700_000_000 * 10**9
PERIOD = 100_000_000


def _start_collector(out: Path, log: Path) -> subprocess.Popen:
    T = '[' + ', '.join(f'{v:.1f}' for v in T_CAM_LIDAR_AXES.ravel()) + ']'
    cmd = [sys.executable, '-m', 'ros_ncal.nodes.collector', '--ros-args',
           '--params-file', str(REPO / 'config' / 'collector.yaml'),
           '-p', f'output_dir:={out}', '-p', 'status_period_s:=0.1', '-p', 'samples_per_shard:=3',
           '-p', 'extrinsic.source:=param', '-p', f'extrinsic.T_cam_lidar:={T}', '-p', 'input.reliable:=true']
    # the ROS env (SHM only, this session's domain) is inherited from conftest.py
    return subprocess.Popen(cmd, cwd=REPO, stdout=log.open('wb'), stderr=subprocess.STDOUT, env=dict(os.environ))


def _run_and_kill(g, pub, status, out: Path, log: Path, frames, first: int, n_paced: int):
    """Publish n_paced frames one at a time (each written before the next), then one more and SIGKILL at once.

    Returns the number of samples the collector reported written before the last frame.
    """
    status.latest = None
    proc = _start_collector(out, log)
    try:
        assert g.wait_for(lambda: pub.points.get_subscription_count() > 0 and pub.image.get_subscription_count() > 0
                          and pub.info.get_subscription_count() > 0, 60), log.read_text()
        assert g.wait_for(lambda: status.latest is not None and status.latest['state'] == 'recording', 60), \
            log.read_text()
        assert pub.warm_up(lambda: status.latest is not None and
                           all(status.latest['received'].get(k, 0) > 0 for k in ('image', 'camera_info', 'points'))), \
            (status.latest, log.read_text()[-2000:])
        status.latest = None
        for k in range(n_paced):
            i = first + k
            pub.send_frame(S0 + i * PERIOD, *frames[i])
            assert g.wait_for(lambda: status.latest is not None and status.latest['written'] == k + 1, 60), \
                (status.latest, log.read_text()[-2000:])
        i = first + n_paced
        pub.send_frame(S0 + i * PERIOD, *frames[i])
        time.sleep(0.02)                       # the last frame is (at most) in flight
        proc.send_signal(signal.SIGKILL)
        assert proc.wait(timeout=30) == -signal.SIGKILL
        return n_paced
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=30)


def test_sigkill_loses_at_most_the_sample_in_flight_and_restart_appends(tmp_path):
    out = tmp_path / 'ds'
    rng = np.random.default_rng(5)
    frames = [synthetic_frame(rng, n_points=300) for _ in range(12)]
    with RosGraph() as g:
        pub = SensorPublisher(g.helper)
        status = StatusListener(g.helper, '/collector/status')
        written = _run_and_kill(g, pub, status, out, tmp_path / 'run1.log', frames, first=0, n_paced=4)
        ds = ShardDataset(out, warn=False)
        assert [r for r in ds.skipped if r.what.startswith('shard-')] == []   # no torn shard is visible
        n1 = len(ds)
        assert written <= n1 <= written + 1
        stamps = [s.stamp_ns for s in ds]
        assert stamps == [S0 + i * PERIOD for i in range(n1)]
        for i, s in enumerate(ds):
            np.testing.assert_array_equal(s.points, frames[i][0])
            np.testing.assert_array_equal(s.image, frames[i][1])
        # restart on the same directory: appends after what survived
        first = n1 if n1 > written else written + 1
        written2 = _run_and_kill(g, pub, status, out, tmp_path / 'run2.log', frames, first=first, n_paced=3)
    ds = ShardDataset(out, warn=False)
    assert [r for r in ds.skipped if r.what.startswith('shard-')] == []
    assert n1 + written2 <= len(ds) <= n1 + written2 + 1
    got = [s.stamp_ns for s in ds]
    assert got[:n1 + written2] == [S0 + i * PERIOD for i in range(n1)] + \
        [S0 + (first + k) * PERIOD for k in range(written2)]
    keys = [ds.key_of(i)[1] for i in range(len(ds))]
    assert keys == sorted(keys) and len(set(keys)) == len(keys)
