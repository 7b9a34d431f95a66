"""`ncal demo --scenario publisher`: the stage-1 demo (recorded extrinsic republished, no calibration).

KITTI frames -> rosbag2 mcap -> the 'demo' suite (extrinsic_publisher) on a live graph via the
plain-venv runner -> replay with the bag player -> a listener saves overlay PNGs and compares the
published extrinsic with the recorded one (summary printed + JSON). Called from
:mod:`ros_ncal.commands.demo` after the ROS network-safety environment was applied.
"""
from __future__ import annotations

import json
import shutil
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path


@dataclass
class DemoState:
    args: object
    out: Path
    t0: float = field(default_factory=time.monotonic)
    bag_dir: Path | None = None
    bag_counts: dict = field(default_factory=dict)
    recorded: list = field(default_factory=list)  # StampedTransform from the bag's /tf_static
    runner: object = None
    listener: object = None
    player_stats: object = None
    summary: dict = field(default_factory=dict)
    timings: dict = field(default_factory=dict)


def step_write_bag(st: DemoState) -> None:
    from ros_ncal.bag import read_messages
    from ros_ncal.bag.kitti import write_kitti_bag
    from ros_ncal.msgcodec import transform_stamped_to_matrix
    bag_out = st.out / 'kitti_demo'
    if bag_out.exists():
        shutil.rmtree(bag_out)
    st.bag_dir, st.bag_counts = write_kitti_bag(st.args.kitti_dir, st.out / 'kitti_demo.mcap',
                                                repeat=st.args.repeat, hz=st.args.hz)
    for m in read_messages(st.bag_dir, topics=['/tf_static']):
        st.recorded.extend(transform_stamped_to_matrix(t) for t in m.msg.transforms)
    print(f'[demo] wrote {st.bag_dir}: {st.bag_counts}', flush=True)


def step_start_suite(st: DemoState) -> None:
    from ros_ncal.data.kitti_files import kitti_frame_ids
    from ros_ncal.ros.harness.listener import OutputListener
    from ros_ncal.runner.suite import resolve_invocations, suite_specs
    from ros_ncal.ros.suite_runner import SuiteRunner
    invs = resolve_invocations(suite_specs('demo'))
    for inv in invs:
        if inv.spec.name == 'extrinsic_publisher':
            inv.params['extrinsic_source'] = st.args.extrinsic_source
            inv.params['sensor_qos_reliable'] = True  # a replay must not lose frames ...
            inv.params['sensor_qos_depth'] = 20        # ... not even at --rate 0 (KEEP_LAST queues)
            if st.args.extrinsic_source == 'kitti_calib':
                last = kitti_frame_ids(st.args.kitti_dir)[-1]
                inv.params['kitti_calib_file'] = str(Path(st.args.kitti_dir) / 'calib' / f'{last}.txt')
    st.runner = SuiteRunner(invs).start()
    st.listener = OutputListener('/extrinsic_publisher/extrinsic', '/extrinsic_publisher/overlay',
                                 keep_overlays=st.args.keep_overlays, context=st.runner.context)
    st.runner.add_node(st.listener)
    st.runner.spin_in_thread()
    print(f'[demo] started {st.runner.report.started} + listener', flush=True)


def step_play(st: DemoState) -> None:
    from ros_ncal.ros.player import PlayerConfig, create_player
    node, player = create_player(st.runner.context, st.bag_dir,
                                 PlayerConfig(rate=st.args.rate, wait_for_subscribers_s=10.0))
    st.runner.add_node(node)
    st.player_stats = player.play()
    print(f'[demo] played {st.player_stats.published} in {st.player_stats.wall_s:.2f} s', flush=True)


def step_collect(st: DemoState) -> None:
    expected = st.bag_counts.get('/kitti/velo/points', 0)
    deadline = time.monotonic() + st.args.timeout
    while time.monotonic() < deadline and st.listener.n_overlays < expected:
        time.sleep(0.05)
    time.sleep(0.3)  # let the last diagnostics / latched messages land


def step_report(st: DemoState) -> None:
    import numpy as np
    from PIL import Image

    from ros_ncal.geometry import T_to_xyz_quat, pose_error
    ov_dir = st.out / 'overlays'
    if ov_dir.exists():
        shutil.rmtree(ov_dir)
    ov_dir.mkdir(parents=True)
    with st.listener.lock:
        overlays = list(st.listener.overlays)
        published = list(st.listener.extrinsics)
        tf_received = list(st.listener.tf_static)
        n_overlays = st.listener.n_overlays
        diagnostics = dict(st.listener.diagnostics)
    saved = []
    for i, (stamp, rgb) in enumerate(overlays):
        path = ov_dir / f'overlay_{i:02d}_{stamp}.png'
        Image.fromarray(rgb).save(path)
        saved.append(str(path))

    def describe(st_t):
        xyz, q = T_to_xyz_quat(st_t.T_parent_child)
        return {'parent': st_t.parent_frame, 'child': st_t.child_frame, 'stamp_ns': st_t.stamp_ns,
                'xyz': np.round(xyz, 6).tolist(), 'quat_xyzw': np.round(q, 6).tolist()}

    distinct = []
    for r in st.recorded:
        if not any(np.allclose(r.T_parent_child, d.T_parent_child, atol=1e-9) for d in distinct):
            distinct.append(r)
    comparisons = []
    for p in published:
        errs = [pose_error(p.T_parent_child, r.T_parent_child) for r in distinct]
        best = int(np.argmin([e[0] + e[1] for e in errs])) if errs else -1
        comparisons.append({'published': describe(p), 'closest_recorded': best,
                            'rotation_error_deg': float(errs[best][0]) if errs else None,
                            'translation_error_m': float(errs[best][1]) if errs else None})
    st.summary = {
        'bag': str(st.bag_dir), 'bag_counts': st.bag_counts,
        'played': st.player_stats.published if st.player_stats else {},
        'play_wall_s': round(st.player_stats.wall_s, 3) if st.player_stats else None,
        'suite_nodes': st.runner.report.started, 'extrinsic_source': st.args.extrinsic_source,
        'recorded_extrinsics': [describe(d) for d in distinct],
        'published_extrinsics': comparisons,
        'tf_static_received': len(tf_received),
        'overlays_received': n_overlays, 'overlays_expected': st.bag_counts.get('/kitti/velo/points', 0),
        'overlay_files': saved, 'diagnostics': diagnostics, 'timings_s': st.timings,
    }
    (st.out / 'summary.json').write_text(json.dumps(st.summary, indent=2))


STEPS = [('write_bag', step_write_bag), ('start_suite', step_start_suite), ('play', step_play),
         ('collect', step_collect), ('report', step_report)]


def print_summary(s: dict) -> None:
    print('\n=== ncal demo summary ===')
    print(f'bag: {s["bag"]}  {s["bag_counts"]}')
    print(f'played: {s["played"]} in {s["play_wall_s"]} s')
    print(f'nodes: {s["suite_nodes"]} (extrinsic source: {s["extrinsic_source"]})')
    print(f'/tf_static transforms received: {s["tf_static_received"]}')
    for i, r in enumerate(s['recorded_extrinsics']):
        print(f'recorded extrinsic {i}: {r["parent"]} -> {r["child"]} xyz {r["xyz"]} quat {r["quat_xyzw"]}')
    for c in s['published_extrinsics']:
        print(f'published ~/extrinsic xyz {c["published"]["xyz"]}: vs recorded {c["closest_recorded"]}: '
              f'{c["rotation_error_deg"]:.2e} deg, {c["translation_error_m"]:.2e} m')
    print(f'overlays: {s["overlays_received"]}/{s["overlays_expected"]} received; saved {len(s["overlay_files"])} '
          f'PNG(s) in {Path(s["overlay_files"][0]).parent if s["overlay_files"] else "-"}')
    print(f'timings (s): {s["timings_s"]}')


def run_publisher_demo(args) -> int:
    """args: kitti_dir, out, repeat, hz, rate, extrinsic_source, keep_overlays, timeout."""
    st = DemoState(args=args, out=Path(args.out))
    st.out.mkdir(parents=True, exist_ok=True)
    try:
        for name, step in STEPS:
            t = time.monotonic()
            step(st)
            st.timings[name] = round(time.monotonic() - t, 3)
        st.summary['timings_s'] = st.timings
        (st.out / 'summary.json').write_text(json.dumps(st.summary, indent=2))
    except (FileNotFoundError, ValueError) as exc:
        print(f'ncal demo: {exc}', file=sys.stderr)
        return 2
    finally:
        if st.runner is not None:
            st.runner.stop()
    print_summary(st.summary)
    print(f'summary JSON: {st.out / "summary.json"}')
    ok = st.summary.get('overlays_received', 0) > 0 and bool(st.summary.get('published_extrinsics'))
    return 0 if ok else 1
