"""Benchmark of the collector and calibrator nodes on real KITTI frames (prints figures, asserts nothing).

* Calibrator: KITTI frames published at ``--hz`` with header stamps = wall-clock now; a listener in the
  same process records when ``~/overlay``, ``~/extrinsic`` and ``/tf_static`` arrive. Latency = arrival
  time - LiDAR stamp (transport + queueing + processing). Reported per backend ('none' is the baseline:
  the same path with no calibration work; 'nclr' runs when a checkpoint is found). Drops by reason from
  the node's status.
* Collector: frames published as fast as the writer keeps up (each sent after the previous is written),
  samples/s of the node vs a bare ShardWriter.append loop on the same samples (baseline, same run).

Everything (publisher, nodes, listener) shares one process and this machine's cores, so the numbers are
an upper bound on what a dedicated robot computer would see.

    .venv/bin/python bench/bench_nodes.py --frames 30 --hz 10 --backends none,classical
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
for _i, _a in enumerate(sys.argv):   # must act before numpy is imported
    if _a == '--blas-threads' and _i + 1 < len(sys.argv):
        os.environ['OPENBLAS_NUM_THREADS'] = sys.argv[_i + 1]

from ros_ncal.assets import NCLR_CALIB  # noqa: E402
from ros_ncal.rosenv import apply_safe_ros_env  # noqa: E402
from ros_ncal.commands._domain import isolated_domain_id  # noqa: E402

apply_safe_ros_env(domain_id=isolated_domain_id())

import numpy as np  # noqa: E402
import rclpy  # noqa: E402
from rclpy.context import Context  # noqa: E402
from rclpy.executors import MultiThreadedExecutor  # noqa: E402
from rclpy.node import Node  # noqa: E402
from rclpy.parameter import Parameter  # noqa: E402

from ros_ncal.data.kitti_files import read_image_rgb, read_kitti_calib, read_velodyne  # noqa: E402
from ros_ncal.data.sample import Sample  # noqa: E402
from ros_ncal.data.shards import ShardWriter  # noqa: E402
from ros_ncal.geometry import invert, make_T, rotvec_to_matrix  # noqa: E402
from ros_ncal.msgcodec import CameraIntrinsics, stamp_to_ns  # noqa: E402
from ros_ncal.ros.conversions import (intrinsics_to_camera_info_msg, matrix_to_transform_stamped,  # noqa: E402
                                      points_to_cloud_msg, rgb_to_image_msg)
from ros_ncal.ros.qos import TF_STATIC_QOS, reliable_qos  # noqa: E402

LIDAR, CAMERA = 'velo_link', 'camera_color_left_optical_frame'
DEFAULT_KITTI = REPO.parent / 'shared' / 'data' / 'kitti_object' / 'training'


def load_frames(kitti: Path, ids=('000001', '000002', '000003')):
    out = []
    for f in ids:
        c = read_kitti_calib(kitti / 'calib' / f'{f}.txt')
        out.append((read_velodyne(kitti / 'velodyne' / f'{f}.bin'), read_image_rgb(kitti / 'image_2' / f'{f}.png'),
                    c['K'], c['T_cam_lidar']))
    return out


class Graph:
    def __init__(self):
        self.ctx = Context()
        rclpy.init(context=self.ctx)
        self.ex = MultiThreadedExecutor(num_threads=4, context=self.ctx)
        self.helper = Node('bench_helper', context=self.ctx)
        self.ex.add_node(self.helper)
        self.nodes = []
        self.thread = threading.Thread(target=self.ex.spin, daemon=True)
        self.thread.start()

    def make(self, cls, params):
        n = cls(context=self.ctx, parameter_overrides=[Parameter(k, value=v) for k, v in params.items()])
        self.ex.add_node(n)
        self.nodes.append(n)
        return n

    def close(self):
        for n in self.nodes:
            n.close()
        self.ex.shutdown(timeout_sec=5)
        for n in self.nodes + [self.helper]:
            n.destroy_node()
        rclpy.shutdown(context=self.ctx)


class Publisher:
    def __init__(self, node):
        from sensor_msgs.msg import CameraInfo, Image, PointCloud2
        from tf2_msgs.msg import TFMessage
        q = reliable_qos(10)
        self.img = node.create_publisher(Image, 'image', q)
        self.info = node.create_publisher(CameraInfo, 'camera_info', q)
        self.pts = node.create_publisher(PointCloud2, 'points', q)
        self.tf = node.create_publisher(TFMessage, '/tf_static', TF_STATIC_QOS)
        self.TFMessage = TFMessage

    def matched(self, n=1):
        return all(p.get_subscription_count() >= n for p in (self.img, self.info, self.pts))

    def frame(self, stamp, pts, img, K):
        H, W = img.shape[:2]
        self.info.publish(intrinsics_to_camera_info_msg(CameraIntrinsics(K=K, width=W, height=H), CAMERA, stamp))
        self.img.publish(rgb_to_image_msg(img, CAMERA, stamp))
        self.pts.publish(points_to_cloud_msg(pts, LIDAR, stamp))


def wait_for(pred, timeout):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if pred():
            return True
        time.sleep(0.005)
    return pred()


def pct(xs, q):
    return float(np.percentile(xs, q)) if len(xs) else float('nan')


def bench_calibrator(frames, backend: str, n: int, hz: float, checkpoint: str = '') -> dict:
    from geometry_msgs.msg import PoseWithCovarianceStamped
    from sensor_msgs.msg import Image
    from tf2_msgs.msg import TFMessage

    from ros_ncal.nodes.calibrator import CalibratorNode
    g = Graph()
    arrivals = {'overlay': [], 'extrinsic': [], 'tf_static': []}

    def rec(key):
        def cb(msg):
            t = time.time_ns()
            stamp = stamp_to_ns(msg.transforms[0].header.stamp) if key == 'tf_static' else stamp_to_ns(msg.header.stamp)
            arrivals[key].append((stamp, t))
        return cb
    try:
        params = {'backend': backend, 'fallback_backend': '', 'input.reliable': True, 'fusion.min_frames': 3,
                  'tf.max_rot_std_deg': 5.0, 'tf.max_trans_std_m': 0.5, 'tf.min_change_deg': 0.0,
                  'tf.min_change_m': 0.0}
        if checkpoint:
            params['checkpoint'] = checkpoint
        node = g.make(CalibratorNode, params)
        pub = Publisher(g.helper)
        g.helper.create_subscription(Image, '/calibrator/overlay', rec('overlay'), reliable_qos(50))
        g.helper.create_subscription(PoseWithCovarianceStamped, '/calibrator/extrinsic', rec('extrinsic'),
                                     reliable_qos(50))
        g.helper.create_subscription(TFMessage, '/tf_static', rec('tf_static'), TF_STATIC_QOS)
        assert wait_for(pub.matched, 10)
        T_true = frames[0][3]
        nominal = make_T(rotvec_to_matrix(np.radians([0.6, -0.5, 0.4])), np.array([0.04, -0.03, 0.02])) @ T_true
        pub.tf.publish(TFMessage(transforms=[matrix_to_transform_stamped(invert(nominal), LIDAR, CAMERA, 1)]))
        assert wait_for(lambda: node.input.frames.lookup(CAMERA, LIDAR) is not None, 10)
        sent = []
        t0 = time.monotonic()
        for i in range(n):
            target = t0 + i / hz
            while time.monotonic() < target:
                time.sleep(0.001)
            stamp = time.time_ns()
            pts, img, K, _ = frames[i % len(frames)]
            pub.frame(stamp, pts, img, K)
            sent.append(stamp)
        wait_for(lambda: node.calib_worker.idle() and node.overlay_worker.idle(), 120)
        time.sleep(0.3)
        st = node.status()
    finally:
        g.close()
    lat = {k: [(t - s) / 1e6 for s, t in v if s in set(sent)] for k, v in arrivals.items()}
    return {'backend': st['backend'], 'frames_sent': n, 'hz': hz, 'pairs': st['pairs'],
            'calibrated': st['calibrated'], 'overlays': st['overlays'], 'tf_published': st['tf_published'],
            'overlay_latency_ms_p50': pct(lat['overlay'], 50), 'overlay_latency_ms_p95': pct(lat['overlay'], 95),
            'extrinsic_latency_ms_p50': pct(lat['extrinsic'], 50),
            'extrinsic_latency_ms_p95': pct(lat['extrinsic'], 95),
            'tf_latency_ms_p50': pct(lat['tf_static'], 50),
            'backend_processing_ms_last': st['processing_time_ms'], 'dropped': st['dropped'],
            'confidence': st['confidence']}


def bench_collector(frames, n: int, image_format: str) -> dict:
    from ros_ncal.nodes.collector import CollectorNode
    tmp = Path(tempfile.mkdtemp(prefix='bench_collector_'))
    # baseline: the bare writer on the same samples
    samples = [Sample(points=p, image=im, K=K, T_cam_lidar=T) for p, im, K, T in frames]
    t = time.perf_counter()
    with ShardWriter(tmp / 'raw', image_format=image_format) as w:
        for i in range(n):
            w.append(samples[i % len(samples)])
    raw_s = time.perf_counter() - t
    g = Graph()
    try:
        node = g.make(CollectorNode, {'output_dir': str(tmp / 'node'), 'image_format': image_format,
                                      'input.reliable': True, 'extrinsic.T_cam_lidar': list(frames[0][3].ravel())})
        pub = Publisher(g.helper)
        assert wait_for(pub.matched, 10)
        t = time.perf_counter()
        for i in range(n):
            pts, img, K, _ = frames[i % len(frames)]
            pub.frame(time.time_ns(), pts, img, K)
            wait_for(lambda: node.written >= i + 1 or node.drops.total > 0, 60)
        node_s = time.perf_counter() - t
        st = node.status()
    finally:
        g.close()
    return {'image_format': image_format, 'samples': st['written'], 'node_samples_per_s': st['written'] / node_s,
            'writer_samples_per_s': n / raw_s, 'ratio_node_vs_writer': (st['written'] / node_s) / (n / raw_s),
            'dropped': st['dropped'], 'disk_mb': st['disk_mb']}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('--kitti-dir', default=str(DEFAULT_KITTI))
    ap.add_argument('--frames', type=int, default=30, help='frames per calibrator backend')
    ap.add_argument('--hz', type=float, default=10.0)
    ap.add_argument('--backends', default='none,classical', help="comma list; 'nclr' is added when a checkpoint exists")
    ap.add_argument('--checkpoint', default='')
    ap.add_argument('--collector-frames', type=int, default=20)
    ap.add_argument('--json', default='', help='also write the results here')
    ap.add_argument('--blas-threads', default='', help="OPENBLAS_NUM_THREADS for this run ('' = inherit)")
    args = ap.parse_args(argv)
    frames = load_frames(Path(args.kitti_dir))
    backends = [b for b in args.backends.split(',') if b]
    ckpt = args.checkpoint or str(NCLR_CALIB)
    if 'nclr' not in backends and Path(ckpt).exists():
        backends.append('nclr')
    print(f'bench_nodes: {len(frames)} KITTI frames (~{len(frames[0][0])} points, {frames[0][1].shape[1]}x'
          f'{frames[0][1].shape[0]} px), {os.cpu_count()} CPUs, load {os.getloadavg()[0]:.1f}, '
          f"OPENBLAS_NUM_THREADS={os.environ.get('OPENBLAS_NUM_THREADS', 'unset')}", flush=True)
    results = {'calibrator': [], 'collector': []}
    for b in backends:
        r = bench_calibrator(frames, b, args.frames, args.hz, ckpt if 'nclr' in b else '')
        results['calibrator'].append(r)
        print(json.dumps(r), flush=True)
    base = results['calibrator'][0] if results['calibrator'] else None
    if base:
        for r in results['calibrator'][1:]:
            print(f"  {r['backend']}: overlay latency p50 {r['overlay_latency_ms_p50']:.0f} ms = "
                  f"{r['overlay_latency_ms_p50'] / base['overlay_latency_ms_p50']:.1f}x the '{base['backend']}' "
                  f"baseline; calibrated {r['calibrated']}/{r['frames_sent']} frames", flush=True)
    for fmt in ('png', 'jpg'):
        r = bench_collector(frames, args.collector_frames, fmt)
        results['collector'].append(r)
        print(json.dumps(r), flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))
    return 0


if __name__ == '__main__':
    raise SystemExit(main())
