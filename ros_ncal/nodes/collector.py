"""Collector node: synchronized camera + LiDAR pairs -> crash-safe dataset shards on disk.

Subscribes ``image`` (or ``image/compressed``), ``camera_info`` and ``points`` with the sensor-data QoS,
pairs them by approximate time, validates them (drops counted by reason), takes the nominal
extrinsic from ``/tf_static`` or parameters and appends :class:`~ros_ncal.data.sample.Sample` s
to a :class:`~ros_ncal.data.shards.ShardWriter` from a worker thread (the executor never waits for
the disk). Every append is durable when it returns, so a SIGKILL loses at most the sample being
written; a restart on the same ``output_dir`` appends.

Publishes ``~/status`` (std_msgs/String, JSON) and ``/diagnostics``; services ``~/start`` and
``~/stop`` (std_srvs/Trigger). Parameters: see :class:`CollectorConfig` and config/collector.yaml.

Run: ``python -m ros_ncal.nodes.collector --ros-args --params-file config/collector.yaml -p output_dir:=/data/x``
"""
from __future__ import annotations

if __name__ == '__main__':   # a process of its own: one OpenBLAS thread, quiet Ctrl-C while torch / rclpy load
    from ros_ncal.ros.lifecycle import prepare_node_process
    prepare_node_process()

import errno
import json
import os
import threading
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from rclpy.callback_groups import MutuallyExclusiveCallbackGroup, ReentrantCallbackGroup
from rclpy.node import Node

from ros_ncal.config_io import param
from ros_ncal.data.sample import InvalidSampleError, Sample
from ros_ncal.data.sensor_input import ExtrinsicParams, PairedInput, SensorInputConfig
from ros_ncal.data.shards import ShardError, ShardWriter
from ros_ncal.geometry import pose_error
from ros_ncal.geometry.distortion import Rectifier
from ros_ncal.health import DropCounter, HealthConfig, HealthMonitor, drop_queue_values, worst_level
from ros_ncal.worker import LatestWorker

from ._common import SensorInput, declare_config, spin_node_main


@dataclass
class CollectorConfig:
    """Collector parameters (``config/collector.yaml``)."""
    input: SensorInputConfig = param(default_factory=SensorInputConfig)
    extrinsic: ExtrinsicParams = param(default_factory=ExtrinsicParams)
    output_dir: str = param('ncal_dataset', 'dataset directory (created; an existing one is appended to); a '
                                            'relative path is under $ROS_HOME (default ~/.ros), not the working '
                                            'directory: ncal_dataset -> ~/.ros/ncal_dataset')
    samples_per_shard: int = param(4, 'samples per tar shard (each append rewrites the open shard)', min=1,
                                   max=10000)
    image_format: str = param('png', 'image encoding in the shards', choices=('png', 'jpg'))
    jpeg_quality: int = param(95, 'JPEG quality when image_format is jpg', min=1, max=100)
    min_interval_s: float = param(0.0, 'minimum LiDAR-stamp interval between stored samples (0 = every pair)',
                                  min=0.0)
    min_motion_m: float = param(0.0, 'store only after the LiDAR moved this far in odom_frame (0 = off; '
                                     'needs /tf, set input.tf_topic true)', min=0.0)
    min_motion_deg: float = param(0.0, 'or turned this much (0 = off)', min=0.0)
    odom_frame: str = param('odom', 'fixed frame for the motion criterion')
    max_samples: int = param(0, 'stop after this many samples written by this run (0 = unlimited)', min=0)
    disk_budget_mb: float = param(0.0, 'stop when the dataset directory reaches this size in MB (0 = unlimited)',
                                  min=0.0)
    autostart: bool = param(True, 'start recording at launch (else call ~/start)')
    status_period_s: float = param(1.0, 'period of ~/status and /diagnostics', min=0.05, max=60.0)
    warn_period_s: float = param(5.0, 'at most one warning per drop reason per this period', min=0.0)
    disk_retry_s: float = param(5.0, 'on a full disk (ENOSPC): try a write again after this long (state disk_full, '
                                     'WARN; recording resumes by itself once a write succeeds)', min=0.1)
    health: HealthConfig = param(default_factory=HealthConfig)

    def validate(self) -> None:
        if not self.output_dir.strip():
            raise ValueError('parameter output_dir must not be empty')
        self.output_dir = str(resolve_output_dir(self.output_dir))
        if (self.min_motion_m > 0 or self.min_motion_deg > 0) and not self.input.tf_topic:
            raise ValueError('min_motion_m / min_motion_deg need /tf: set input.tf_topic to true')


def ros_home() -> Path:
    """$ROS_HOME, else ~/.ros (where ROS 2 keeps logs and per-user data)."""
    return Path(os.environ.get('ROS_HOME') or Path.home() / '.ros').expanduser()


def resolve_output_dir(output_dir: str) -> Path:
    """Absolute dataset directory: ``~`` expanded; a relative path is taken under :func:`ros_home`, so the
    dataset does not land wherever ``ros2 launch`` happened to be started."""
    path = Path(output_dir.strip()).expanduser()
    return path if path.is_absolute() else ros_home() / path


def dir_size_bytes(root: Path) -> int:
    total = 0
    try:
        with os.scandir(root) as it:
            for e in it:
                if e.is_file(follow_symlinks=False):
                    total += e.stat(follow_symlinks=False).st_size
    except FileNotFoundError:
        return 0
    return total


class CollectorNode(Node):
    """Records validated camera-LiDAR pairs into a shard dataset (see module docstring)."""

    def __init__(self, **kwargs):
        super().__init__(kwargs.pop('node_name', 'collector'), **kwargs)
        from diagnostic_msgs.msg import DiagnosticArray  # noqa: F401 - fail early when missing
        from std_msgs.msg import String
        from std_srvs.srv import Trigger

        from ros_ncal.ros.diagnostics import DiagnosticsHelper

        self.cfg: CollectorConfig = declare_config(self, CollectorConfig)
        self.drops = DropCounter(self.get_logger(), self.cfg.warn_period_s)
        self.skipped: Counter = Counter()
        self._lock = threading.Lock()
        self.state = 'stopped'
        self.state_detail = ''
        self.written = 0               # samples this run appended
        self.started_writes = 0        # samples the worker began to write
        self.last_write_ms = 0.0
        self._last_stamp_ns: int | None = None
        self._last_pose: np.ndarray | None = None
        self._writer: ShardWriter | None = None
        self._rectifier = Rectifier()
        self._disk_bytes = dir_size_bytes(Path(self.cfg.output_dir))
        self._retry_at = 0.0           # disk_full: monotonic time of the next trial write
        self.disk_full_events = 0
        self.health = HealthMonitor(self.cfg.health, start_s=time.monotonic())

        self._sensor_group = ReentrantCallbackGroup()
        self._ctl_group = MutuallyExclusiveCallbackGroup()
        self.worker = LatestWorker(self._write_pair, name='collector-writer', on_error=self._on_worker_error)
        self.input = SensorInput(self, self.cfg.input, self.cfg.extrinsic, self.drops, self._on_pair,
                                 callback_group=self._sensor_group)
        self._status_pub = self.create_publisher(String, '~/status', 10)
        self._diag = DiagnosticsHelper(self, 'collector', hardware_id=self.cfg.output_dir)
        self._srv_start = self.create_service(Trigger, '~/start', self._srv_start_cb, callback_group=self._ctl_group)
        self._srv_stop = self.create_service(Trigger, '~/stop', self._srv_stop_cb, callback_group=self._ctl_group)
        self._timer = self.create_timer(self.cfg.status_period_s, self.publish_status, callback_group=self._ctl_group)
        if self.cfg.autostart:
            ok, msg = self.start()
            if not ok:
                self.get_logger().error(f'autostart failed: {msg}')
        self.get_logger().info(f'collector: writing to {self.cfg.output_dir} (state {self.state})')

    # -- control
    def start(self) -> tuple[bool, str]:
        with self._lock:
            if self.state == 'recording':
                return True, 'already recording'
            if self._limit_reached():
                self.state = 'full'
                return False, f'limit reached: {self.state_detail}'
            if self._writer is None:
                try:
                    self._writer = ShardWriter(self.cfg.output_dir, samples_per_shard=self.cfg.samples_per_shard,
                                               image_format=self.cfg.image_format,
                                               jpeg_quality=self.cfg.jpeg_quality, source='collector',
                                               sensors=None)
                except (ShardError, OSError) as exc:
                    self.state, self.state_detail = 'error', f'cannot open {self.cfg.output_dir}: {exc}'
                    return False, self.state_detail
            self.state, self.state_detail = 'recording', ''
            return True, f'recording to {self.cfg.output_dir} ({self._writer.num_samples} samples there)'

    def stop(self) -> tuple[bool, str]:
        with self._lock:
            if self.state not in ('recording', 'disk_full'):
                return True, f'not recording ({self.state})'
            self.state = 'stopped'
            return True, f'stopped after {self.written} samples'

    def _srv_start_cb(self, request, response):
        response.success, response.message = self.start()
        return response

    def _srv_stop_cb(self, request, response):
        response.success, response.message = self.stop()
        return response

    def _limit_reached(self) -> bool:
        if self.cfg.max_samples and self.written >= self.cfg.max_samples:
            self.state_detail = f'max_samples {self.cfg.max_samples} written'
            return True
        if self.cfg.disk_budget_mb and self._disk_bytes >= self.cfg.disk_budget_mb * 1e6:
            self.state_detail = f'disk_budget_mb {self.cfg.disk_budget_mb} used ({self._disk_bytes / 1e6:.1f} MB)'
            return True
        return False

    # -- data path (executor thread: quick)
    def _on_pair(self, pair: PairedInput) -> None:
        with self._lock:
            if self.state == 'disk_full' and time.monotonic() >= self._retry_at:
                self._retry_at = time.monotonic() + self.cfg.disk_retry_s   # this pair is the trial write
            elif self.state != 'recording':
                self.skipped[f'not_recording_{self.state}'] += 1
                return
            stamp = pair.cloud.stamp_ns
            if self.cfg.min_interval_s > 0 and self._last_stamp_ns is not None and \
                    abs(stamp - self._last_stamp_ns) < self.cfg.min_interval_s * 1e9:
                self.skipped['min_interval'] += 1
                return
            pose = None
            if self.cfg.min_motion_m > 0 or self.cfg.min_motion_deg > 0:
                pose = self.input.frames.lookup(self.cfg.odom_frame, pair.cloud.frame_id)
                if pose is None:
                    self.skipped['no_odometry'] += 1
                    return
                if self._last_pose is not None:
                    rot, trans = pose_error(pose, self._last_pose)
                    if not ((self.cfg.min_motion_m > 0 and trans >= self.cfg.min_motion_m) or
                            (self.cfg.min_motion_deg > 0 and rot >= self.cfg.min_motion_deg)):
                        self.skipped['min_motion'] += 1
                        return
            self._last_stamp_ns = stamp
            if pose is not None:
                self._last_pose = pose
        replaced = self.worker.submit(pair)
        if replaced is not None:
            self.drops.drop('writer_busy', 'the previous pair was still waiting for the disk; kept the newest')

    # -- worker thread
    def _write_pair(self, pair: PairedInput) -> None:
        with self._lock:
            if self.state not in ('recording', 'disk_full') or self._writer is None:
                self.skipped[f'not_recording_{self.state}'] += 1
                return
            if self._limit_reached():
                self.state = 'full'
                self.skipped['not_recording_full'] += 1
                return
            self.started_writes += 1
        try:
            rgb = pair.decode_image(self._rectifier)
        except ValueError as exc:
            self.drops.drop(getattr(exc, 'reason', 'image_malformed'), str(exc))
            return
        try:
            sample = Sample(points=pair.cloud.points, image=rgb, K=pair.intrinsics.K, T_cam_lidar=pair.T_cam_lidar,
                            stamp_ns=pair.cloud.stamp_ns, image_stamp_ns=pair.camera.stamp_ns,
                            frame_ids=(pair.cloud.frame_id, pair.camera.frame_id),
                            meta={'source': 'collector', 'node': self.get_fully_qualified_name(),
                                  'distortion_model': pair.intrinsics.distortion_model,
                                  'rectified': bool(np.any(pair.intrinsics.D)),
                                  'nonfinite_points_removed': pair.cloud.n_nonfinite})
        except InvalidSampleError as exc:
            self.drops.drop('sample_invalid', str(exc))
            return
        t0 = time.perf_counter()
        try:
            self._writer.append(sample)
        except OSError as exc:
            if exc.errno in (errno.ENOSPC, errno.EDQUOT):
                # the writer removed its partial temporary file; committed samples are untouched
                self.drops.drop('disk_full', f'{type(exc).__name__}: {exc}')
                with self._lock:
                    if self.state != 'disk_full':
                        self.disk_full_events += 1
                        self.get_logger().warning(f'disk full under {self.cfg.output_dir}: recording paused, '
                                                  f'retrying every {self.cfg.disk_retry_s:g} s')
                    if self.state in ('recording', 'disk_full'):
                        self.state = 'disk_full'
                        self.state_detail = f'disk full ({exc.strerror}); retrying every {self.cfg.disk_retry_s:g} s'
                    self._retry_at = time.monotonic() + self.cfg.disk_retry_s
                return
            self.drops.drop('write_error', f'{type(exc).__name__}: {exc}')
            with self._lock:
                self.state, self.state_detail = 'error', f'write failed: {exc}'
            return
        dt = (time.perf_counter() - t0) * 1e3
        with self._lock:
            if self.state == 'disk_full':
                self.state, self.state_detail = 'recording', ''
                self.get_logger().info('disk space is back: recording resumed')
            self.written += 1
            self.last_write_ms = dt
            self._disk_bytes = dir_size_bytes(Path(self.cfg.output_dir))
            if self._limit_reached():
                self.state = 'full'
                self.get_logger().info(f'collector stopped: {self.state_detail}')

    def _on_worker_error(self, pair, exc: BaseException) -> None:
        self.drops.drop('internal_error', f'writer: {type(exc).__name__}: {exc}')

    # -- reporting
    def status(self) -> dict:
        with self._lock:
            st = {'state': self.state, 'detail': self.state_detail, 'written': self.written,
                  'started_writes': self.started_writes,
                  'dataset_samples': self._writer.num_samples if self._writer is not None else None,
                  'disk_mb': round(self._disk_bytes / 1e6, 3), 'last_write_ms': round(self.last_write_ms, 2),
                  'skipped': dict(self.skipped), 'disk_full_events': self.disk_full_events}
        st['dropped'] = self.drops.snapshot()
        st['received'] = self.input.received()
        st['queues'] = {**self.input.queue_sizes(), 'writer_pending': self.worker.pending,
                        'writer_busy': int(self.worker.busy)}
        st['output_dir'] = self.cfg.output_dir
        return st

    def publish_status(self) -> dict:
        from std_msgs.msg import String
        self.input._sync_pairer_drops()  # noqa: SLF001 - refresh pairer drop totals
        st = self.status()
        level = {'recording': 'OK', 'stopped': 'OK', 'full': 'WARN', 'disk_full': 'WARN', 'error': 'ERROR'}[st['state']]
        # processed: written, or deliberately skipped (min_interval, min_motion) while recording
        verdict = self.health.update(time.monotonic(), accepted=st['received'].get('pairs_accepted', 0),
                                     processed=st['written'] + sum(st['skipped'].values()),
                                     drops=st['dropped'], active=st['state'] == 'recording')
        level = worst_level(level, verdict.level)
        st['health'] = {'level': verdict.level, 'reasons': verdict.reasons}
        self._status_pub.publish(String(data=json.dumps(st)))
        flat = {'state': st['state'], 'written': st['written'], 'dataset_samples': st['dataset_samples'],
                'disk_mb': st['disk_mb'], 'last_write_ms': st['last_write_ms']}
        flat.update(verdict.values())
        flat.update(drop_queue_values(st['dropped'], st['queues']))
        message = '; '.join([st['detail'] or st['state'], *verdict.reasons])
        self._diag.publish(level, message, flat)
        return st

    def close(self) -> None:
        """Finish the sample being written and release the dataset (call before destroy_node)."""
        with self._lock:
            if self.state == 'recording':
                self.state = 'stopped'
        self.worker.stop(timeout_s=30.0)
        if self._writer is not None:
            self._writer.close()
            self._writer = None


def main(args=None) -> int:
    return spin_node_main(CollectorNode, args)


if __name__ == '__main__':
    raise SystemExit(main())
