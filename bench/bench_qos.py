"""Delivery of large best-effort messages between two processes: the transport settings from before issue 12
(ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST: rmw_fastrtps's own 512 KiB shared-memory segment plus UDP on every
interface) against the shipped ones (ros_ncal.rosenv: loopback-only Fast DDS profile, 32 MiB segment), in the
same run.

A publisher process sends N frames of a 2 MB PointCloud2 (125k points x 16 B) and a 1.4 MB Image (1242x375 rgb8)
at --hz with the sensor-data QoS (BEST_EFFORT, KEEP_LAST 5), like a camera / LiDAR driver; this process
subscribes BEST_EFFORT KEEP_LAST 5 (the nodes' default) and counts what arrives and what the middleware reports
lost (message-lost events). The machine's load average is printed: on 2 shared cores a starved consumer loses
samples that no transport setting can save (they are overwritten in the KEEP_LAST queues, not reported lost).

    .venv/bin/python bench/bench_qos.py [--frames 40] [--hz 10]
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

PUBLISHER = r'''
import json, os, sys, time
import numpy as np
import rclpy
from rclpy.qos import qos_profile_sensor_data
from sensor_msgs.msg import Image, PointCloud2
n, hz = int(sys.argv[1]), float(sys.argv[2])
rclpy.init()
node = rclpy.create_node('bench_qos_driver')
pi = node.create_publisher(Image, '/bench_qos/image', qos_profile_sensor_data)
pp = node.create_publisher(PointCloud2, '/bench_qos/points', qos_profile_sensor_data)
img = Image(height=375, width=1242, encoding='rgb8', step=1242 * 3, data=bytes(1242 * 375 * 3))
pts = PointCloud2(height=1, width=125000, point_step=16, row_step=16 * 125000, data=bytes(16 * 125000))
deadline = time.monotonic() + 60
while pi.get_subscription_count() == 0 or pp.get_subscription_count() == 0:
    rclpy.spin_once(node, timeout_sec=0.05)
    if time.monotonic() > deadline:
        sys.exit(3)
time.sleep(1.0)
t0 = time.monotonic()
for k in range(n):
    img.header.stamp.sec = pts.header.stamp.sec = k
    pi.publish(img)
    pp.publish(pts)
    time.sleep(max(0.0, t0 + (k + 1) / hz - time.monotonic()))
print(json.dumps({'publish_s': time.monotonic() - t0}), flush=True)
time.sleep(1.0)
'''


def run_case(name: str, env: dict, frames: int, hz: float) -> dict:
    """Subscriber in a child process too, so each case gets its own rclpy/Fast DDS participant settings."""
    code = r'''
import json, subprocess, sys, time
import rclpy
from rclpy.event_handler import SubscriptionEventCallbacks
from rclpy.executors import MultiThreadedExecutor
from rclpy.qos import qos_profile_sensor_data
from sensor_msgs.msg import Image, PointCloud2
frames, hz, pub_code = int(sys.argv[1]), float(sys.argv[2]), sys.argv[3]
rclpy.init()
node = rclpy.create_node('bench_qos_node')
got, lost = {'image': 0, 'points': 0}, {'image': 0, 'points': 0}
def count(k):
    def f(msg):
        got[k] += 1
    return f
def lost_cb(k):
    def f(info):
        lost[k] = info.total_count
    return SubscriptionEventCallbacks(message_lost=f)
node.create_subscription(Image, '/bench_qos/image', count('image'), qos_profile_sensor_data, event_callbacks=lost_cb('image'))
node.create_subscription(PointCloud2, '/bench_qos/points', count('points'), qos_profile_sensor_data, event_callbacks=lost_cb('points'))
pub = subprocess.Popen([sys.executable, '-c', pub_code, str(frames), str(hz)], stdout=subprocess.PIPE, text=True)
ex = MultiThreadedExecutor(2)
ex.add_node(node)
while pub.poll() is None:
    ex.spin_once(timeout_sec=0.05)
t = time.monotonic()
while time.monotonic() - t < 0.5:
    ex.spin_once(timeout_sec=0.05)
out = pub.stdout.read().strip().splitlines()
print(json.dumps({'received': got, 'lost_events': lost, 'publisher': json.loads(out[-1]) if out else None,
                  'publisher_rc': pub.returncode}))
'''
    r = subprocess.run([sys.executable, '-c', code, str(frames), str(hz), PUBLISHER], env=env, capture_output=True,
                       text=True, timeout=600)
    line = r.stdout.strip().splitlines()[-1] if r.stdout.strip() else '{}'
    res = json.loads(line)
    res['case'] = name
    return res


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    ap.add_argument('--frames', type=int, default=40)
    ap.add_argument('--hz', type=float, default=10.0)
    ap.add_argument('--domain', type=int, default=None, help='ROS_DOMAIN_ID (default: an isolated one)')
    args = ap.parse_args()
    from ros_ncal.rosenv import apply_safe_ros_env
    from ros_ncal.commands._domain import isolated_domain_id
    shipped = dict(os.environ)
    apply_safe_ros_env(domain_id=args.domain if args.domain is not None else isolated_domain_id(shipped),
                       environ=shipped)
    before = {k: v for k, v in shipped.items() if k != 'FASTDDS_DEFAULT_PROFILES_FILE'}
    before.update(ROS_AUTOMATIC_DISCOVERY_RANGE='LOCALHOST', FASTDDS_BUILTIN_TRANSPORTS='SHM')
    print(f'{args.frames} frames at {args.hz:g} Hz, 2.0 MB cloud + 1.4 MB image, BEST_EFFORT KEEP_LAST 5; '
          f'load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs', flush=True)
    for name, env in (('before (LOCALHOST range)', before), ('shipped (ros_ncal.rosenv profile)', shipped)):
        t0 = time.monotonic()
        r = run_case(name, env, args.frames, args.hz)
        rec, lost = r.get('received', {}), r.get('lost_events', {})
        pub_s = (r.get('publisher') or {}).get('publish_s', float('nan'))
        print(f'{name:36s} images {rec.get("image", 0):3d}/{args.frames} ({100 * rec.get("image", 0) / args.frames:5.1f} %)  '
              f'clouds {rec.get("points", 0):3d}/{args.frames} ({100 * rec.get("points", 0) / args.frames:5.1f} %)  '
              f'lost events {lost}  publisher rate {args.frames / pub_s:.1f} Hz  ({time.monotonic() - t0:.0f} s)',
              flush=True)
    print(f'load average after: {os.getloadavg()[0]:.1f}')
    return 0


if __name__ == '__main__':
    raise SystemExit(main())
