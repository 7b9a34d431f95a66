"""Per-frame latency of the segmenter and detector nodes on KITTI scans, against the bare library call.

For each node: the same model's ``DownstreamPredictor.predict`` timed alone on the same frames (baseline),
then the node in one process with a publisher and a listener (fresh rclpy Context, MultiThreadedExecutor):
clouds published at ``--rate`` Hz with header stamp = wall clock, latency = arrival of the output at the
listener - stamp. Prints p50 / p95 and the ratio node p50 / bare p50, plus frames processed / dropped.

Checkpoints: ``--seg`` / ``--det`` (default: the packaged ros_ncal/assets/seg.pt, det.pt when present, else
a one-step fine-tune of config/finetune/seg_1pct.yaml / det_1pct.yaml on one synthetic cloud: the same
network size as the shipped protocol models, untrained weights, written by ros_ncal.train.finetune).

    .venv/bin/python bench/bench_downstream_nodes.py --frames 20
    .venv/bin/python bench/bench_downstream_nodes.py --frames 20 --max-points 20000
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from ros_ncal.rosenv import apply_safe_ros_env  # noqa: E402
from ros_ncal.commands._domain import isolated_domain_id  # noqa: E402

apply_safe_ros_env(domain_id=isolated_domain_id())

import numpy as np  # noqa: E402

KITTI = REPO.parent / 'shared' / 'data' / 'kitti_object' / 'training' / 'velodyne'


def build_checkpoint(task: str, out_dir: Path) -> str:
    """A one-step fine-tune of the CPU-sized 1 % protocol config on one synthetic cloud (untrained weights)."""
    from ros_ncal.data.synthetic import SyntheticConfig, SyntheticWorld
    from ros_ncal.train.downstream_data import DataConfig, to_task_sample
    from ros_ncal.train.finetune import finetune, load_finetune_config
    wc = SyntheticConfig()
    wc.lidar.n_beams, wc.lidar.n_azimuth = 16, 256
    wc.camera.width, wc.camera.height, wc.camera.cx, wc.camera.cy = 32, 16, 16.0, 8.0
    wc.camera.fx = wc.camera.fy = 20.0
    wc.camera.shadows = False
    sample = to_task_sample(SyntheticWorld(wc).sample(0), 0, DataConfig(max_points=2000))
    cfg = load_finetune_config(REPO / 'config' / 'finetune' / f'{task}_1pct.yaml',
                               {'optim': {'steps': 1, 'batch_size': 1}, 'log_every': 0, 'device': 'cpu',
                                'output_dir': str(out_dir), 'run_name': f'bench_{task}'})
    return finetune(cfg, train_samples=[sample], log=lambda m: None, evaluate=False,
                    train_is_labelled=True).checkpoint


def pct(x, q):
    return float(np.percentile(np.asarray(x, dtype=np.float64), q)) if len(x) else float('nan')


def bench_bare(checkpoint: str, frames: list, n: int, device: str, max_range: float, max_points: int) -> list:
    from ros_ncal.models.inference import DownstreamPredictor
    pred = DownstreamPredictor.from_checkpoint(checkpoint, device, max_range, max_points)
    pred.predict(frames[0])   # warm-up
    out = []
    for i in range(n):
        t0 = time.perf_counter()
        pred.predict(frames[i % len(frames)])
        out.append((time.perf_counter() - t0) * 1e3)
    return out


def bench_node(kind: str, checkpoint: str, frames: list, n: int, rate: float, device: str, max_range: float,
               max_points: int, threads: int) -> dict:
    import rclpy
    from rclpy.context import Context
    from rclpy.executors import MultiThreadedExecutor
    from rclpy.node import Node
    from rclpy.parameter import Parameter
    from sensor_msgs.msg import PointCloud2
    from std_msgs.msg import Float64
    from visualization_msgs.msg import MarkerArray

    from ros_ncal.msgcodec import stamp_to_ns
    from ros_ncal.nodes.detector import DetectorNode
    from ros_ncal.nodes.segmenter import SegmenterNode
    from ros_ncal.ros.conversions import points_to_cloud_msg
    from ros_ncal.ros.qos import reliable_qos

    ctx = Context()
    rclpy.init(context=ctx)
    ex = MultiThreadedExecutor(num_threads=4, context=ctx)
    cls, topic, msg_type = ((SegmenterNode, '/segmenter/labeled_points', PointCloud2) if kind == 'seg' else
                            (DetectorNode, '/detector/detections', MarkerArray))
    params = {'checkpoint': checkpoint, 'model.device': device, 'model.max_range': float(max_range),
              'model.max_points': int(max_points), 'model.torch_threads': int(threads)}
    node = cls(context=ctx, parameter_overrides=[Parameter(k, value=v) for k, v in params.items()])
    helper = Node('bench_helper', context=ctx)
    lat, lock = [], threading.Lock()

    def on_out(msg):
        now = time.time_ns()
        header = msg.header if kind == 'seg' else msg.markers[0].header   # MarkerArray: the DELETEALL marker's
        with lock:
            lat.append((now - stamp_to_ns(header.stamp)) / 1e6)
    helper.create_subscription(msg_type, topic, on_out, reliable_qos(10))
    proc = []
    helper.create_subscription(Float64, f'/{node.get_name()}/debug/processing_time_ms',
                               lambda m: proc.append(m.data), reliable_qos(10))
    pub = helper.create_publisher(PointCloud2, '/points', reliable_qos(10))
    for nd in (node, helper):
        ex.add_node(nd)
    th = threading.Thread(target=ex.spin, daemon=True)
    th.start()
    deadline = time.monotonic() + 10
    while pub.get_subscription_count() == 0 and time.monotonic() < deadline:
        time.sleep(0.02)
    # warm-up frame (first call allocates), not counted
    pub.publish(points_to_cloud_msg(frames[0], 'velo_link', time.time_ns()))
    deadline = time.monotonic() + 120
    while not lat and time.monotonic() < deadline:
        time.sleep(0.02)
    with lock:
        lat.clear()
        proc.clear()
    processed0 = node.n_processed
    busy0 = node.drops.snapshot().get('busy', 0)
    period = 1.0 / rate
    t_next = time.monotonic()
    for i in range(n):
        pub.publish(points_to_cloud_msg(frames[i % len(frames)], 'velo_link', time.time_ns()))
        t_next += period
        time.sleep(max(0.0, t_next - time.monotonic()))
    node.worker.wait_idle(120)
    time.sleep(0.3)
    st = node.status()
    res = {'latency_ms': list(lat), 'proc_ms': list(proc), 'processed': node.n_processed - processed0,
           'busy': st['dropped'].get('busy', 0) - busy0, 'processing_ms': st['processing_time_ms'],
           'dropped': st['dropped']}
    node.close()
    ex.shutdown(timeout_sec=5)
    for nd in (node, helper):
        nd.destroy_node()
    rclpy.shutdown(context=ctx)
    return res


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('--frames', type=int, default=20, help='clouds per node')
    ap.add_argument('--rate', type=float, default=10.0, help='publish rate (Hz)')
    ap.add_argument('--seg', default='', help='seg checkpoint (default: packaged, else a built one)')
    ap.add_argument('--det', default='', help='det checkpoint (default: packaged, else a built one)')
    ap.add_argument('--device', default='auto')
    ap.add_argument('--max-range', type=float, default=0.0)
    ap.add_argument('--max-points', type=int, default=0)
    ap.add_argument('--threads', type=int, default=1,
                    help='torch intra-op threads (node parameter model.torch_threads)')
    ap.add_argument('--kitti', nargs='+', default=['000001', '000002', '000003'])
    args = ap.parse_args()
    import torch
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    frames = [np.fromfile(KITTI / f'{f}.bin', np.float32).reshape(-1, 4) for f in args.kitti]
    from ros_ncal.assets import ASSETS_DIR as assets
    tmp = Path(tempfile.mkdtemp(prefix='bench_ds_'))
    ckpts = {}
    for task, given in (('seg', args.seg), ('det', args.det)):
        packaged = assets / f'{task}.pt'
        ckpts[task] = given or (str(packaged) if packaged.is_file() else build_checkpoint(task, tmp))
    print(f'KITTI frames {args.kitti} ({np.mean([len(f) for f in frames]):.0f} points), rate {args.rate} Hz, '
          f'torch threads {torch.get_num_threads()}, max_range {args.max_range}, max_points {args.max_points}, '
          f'load {os.getloadavg()[0]:.1f}')
    for task in ('seg', 'det'):
        print(f'{task}: checkpoint {ckpts[task]}')
        bare = bench_bare(ckpts[task], frames, args.frames, args.device, args.max_range, args.max_points)
        node = bench_node(task, ckpts[task], frames, args.frames, args.rate, args.device, args.max_range,
                          args.max_points, args.threads)
        lat = node['latency_ms']
        print(f'  bare predict   p50 {pct(bare, 50):8.1f} ms  p95 {pct(bare, 95):8.1f} ms  ({len(bare)} calls)')
        print(f'  node latency   p50 {pct(lat, 50):8.1f} ms  p95 {pct(lat, 95):8.1f} ms  '
              f'(publish -> output at a listener; {node["processed"]} of {args.frames} processed, '
              f'{node["busy"]} dropped as busy)')
        print(f'  node model call p50 {pct(node["proc_ms"], 50):7.1f} ms  (~/debug/processing_time_ms; the rest of '
              'the latency is decode/encode, transport and waiting for the busy worker)')
        print(f'  ratio node p50 / bare p50: {pct(lat, 50) / pct(bare, 50):.2f}')
    return 0


if __name__ == '__main__':
    raise SystemExit(main())
