"""ApproximateTimePairer: tolerance, one use per item, bounded queues, drop reasons."""
from hypothesis import given, settings
from hypothesis import strategies as st

from ros_ncal.data.pairing import ApproximateTimePairer

MS = 1_000_000


def test_pairs_interleaved_streams_with_jitter():
    p = ApproximateTimePairer(tolerance_ns=20 * MS, max_queue=5)
    pairs = []
    for k in range(10):
        pairs += p.push_lidar(k * 100 * MS, f'cloud{k}')
        pairs += p.push_camera(k * 100 * MS + 7 * MS, (f'img{k}', f'info{k}'))  # camera item may be a tuple
    assert [(pr.camera[0], pr.lidar) for pr in pairs] == [(f'img{k}', f'cloud{k}') for k in range(10)]
    assert all(pr.dt_ns == 7 * MS for pr in pairs)
    assert sum(p.drop_counts.values()) == 0 and p.pending == (0, 0)


def test_waits_for_a_closer_camera_and_drops_the_unused_one():
    p = ApproximateTimePairer(tolerance_ns=50 * MS)
    assert p.push_camera(0, 'early') == []
    assert p.push_lidar(40 * MS, 'cloud') == []  # 'early' is in tolerance but a closer one may come
    pairs = p.push_camera(45 * MS, 'close')
    assert [(x.camera, x.lidar) for x in pairs] == [('close', 'cloud')]
    p.push_lidar(200 * MS, 'next')  # 'early' can no longer match anything
    assert p.dropped['camera']['too_far'] == 1


def test_too_far_and_overflow_counted():
    p = ApproximateTimePairer(tolerance_ns=10 * MS, max_queue=3)
    p.push_lidar(0, 'a')
    assert p.push_camera(100 * MS, 'late') == []
    assert p.dropped['lidar']['too_far'] == 1
    for k in range(5):  # no camera in reach: lidar queue bounded at 3
        p.push_lidar((200 + k) * MS, k)
    assert p.dropped['lidar']['overflow'] == 2 and p.pending[1] == 3
    assert p.drop_counts['overflow'] == 2


def test_flush_pairs_leftovers_offline():
    p = ApproximateTimePairer(tolerance_ns=30 * MS)
    p.push_camera(0, 'c0')
    p.push_lidar(20 * MS, 'l0')  # newest camera is older: undecided until flush
    assert p.pending == (1, 1)
    pairs = p.flush()
    assert [(x.camera, x.lidar) for x in pairs] == [('c0', 'l0')] and p.pending == (0, 0)


@settings(max_examples=60, deadline=None)
@given(cams=st.lists(st.integers(0, 2000), max_size=30), lidars=st.lists(st.integers(0, 2000), max_size=30),
       tol=st.integers(0, 80), qmax=st.integers(1, 8), seed=st.randoms())
def test_invariants(cams, lidars, tol, qmax, seed):
    events = [('c', t, i) for i, t in enumerate(sorted(cams))] + [('l', t, i) for i, t in enumerate(sorted(lidars))]
    events.sort(key=lambda e: (e[1], seed.random()))
    p = ApproximateTimePairer(tolerance_ns=tol, max_queue=qmax)
    pairs = []
    for kind, t, i in events:
        pairs += p.push_camera(t, ('c', i)) if kind == 'c' else p.push_lidar(t, ('l', i))
    pairs += p.flush()
    assert all(abs(x.dt_ns) <= tol for x in pairs)
    used_c = [x.camera for x in pairs]
    used_l = [x.lidar for x in pairs]
    assert len(set(used_c)) == len(used_c) and len(set(used_l)) == len(used_l)
    # every item is either paired or counted as dropped
    assert len(pairs) + sum(p.dropped['lidar'].values()) == len(lidars)
    assert len(pairs) + sum(p.dropped['camera'].values()) == len(cams)
