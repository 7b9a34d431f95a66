"""Shared base of the segmenter and detector nodes (rclpy layer): one PointCloud2 in, one model call.

* :class:`CloudInputConfig` (``input.*``) and :class:`CloudInput`: the LiDAR-only front end (sensor-data
  QoS subscription, decode, validation with drop reasons, stamp guard), built on the library pieces the
  collector / calibrator use (:class:`ros_ncal.data.sensor_input.DropInput`, :class:`ros_ncal.health.DropCounter`,
  :class:`ros_ncal.data.stamp_guard.StampGuard`).
* :class:`DownstreamConfig`: the parameters both nodes have (``input.*``, ``checkpoint``, ``model.*``, reporting
  periods).
* :class:`ModelParams` (``model.*`` plus the top-level ``checkpoint``): a
  :class:`ros_ncal.models.inference.DownstreamPredictor` loaded at start-up. A missing or unusable
  checkpoint never stops the node: ``/diagnostics`` reports ERROR with the reason and every cloud is
  dropped as ``no_model``.
* :class:`DownstreamNode`: inference in a :class:`ros_ncal.worker.LatestWorker` thread (slot of 1, a replaced
  cloud counts as ``busy``), ``~/debug/processing_time_ms``, ``~/status`` (JSON) and ``/diagnostics``.
  Subclasses implement :meth:`DownstreamNode.publish_result`.
"""
from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from rclpy.callback_groups import MutuallyExclusiveCallbackGroup, ReentrantCallbackGroup
from rclpy.node import Node

from ros_ncal.assets import ASSETS_DIR
from ros_ncal.config_io import param
from ros_ncal.data.sensor_input import DropInput, accept_stamp, decode_cloud, keep_valid_points
from ros_ncal.data.stamp_guard import StampGuard
from ros_ncal.health import DropCounter, drop_queue_values
from ros_ncal.worker import LatestWorker

from ._common import declare_config


@dataclass
class CloudInputConfig:
    """The PointCloud2 input (``input.*`` parameters)."""
    points_topic: str = param('points', 'sensor_msgs/PointCloud2 topic')
    reliable: bool = param(False, 'subscribe RELIABLE instead of BEST_EFFORT (sensor-data QoS)')
    qos_depth: int = param(5, 'subscription queue depth (KEEP_LAST)', min=1, max=100)
    lidar_frame: str = param('', 'expected header.frame_id; empty = any non-empty frame')
    min_points: int = param(1, 'clouds with fewer finite points are dropped', min=1)
    max_nonfinite_fraction: float = param(0.9, 'drop a cloud when more than this fraction of points is NaN/inf '
                                               '(smaller NaN parts are removed)', min=0.0, max=1.0)
    max_coordinate_m: float = param(1000.0, 'points with |x|, |y| or |z| beyond this are removed like NaN ones '
                                            '(garbage values would overflow the voxel grid)', min=1.0)
    max_future_s: float = param(2.0, 'drop stamps this far ahead of the newest accepted one (0 = off)', min=0.0)
    max_past_s: float = param(30.0, 'drop stamps this far behind the newest accepted one (0 = off)', min=0.0)


@dataclass
class ModelParams:
    """How the fine-tuned model runs (``model.*`` parameters)."""
    device: str = param('auto', "torch device: 'auto' (CUDA when available), 'cpu', 'cuda', 'cuda:N'")
    max_range: float = param(0.0, 'points farther than this (horizontal, m) are not processed (0 = no limit)',
                             min=0.0)
    max_points: int = param(0, 'larger clouds are subsampled for the network, the rest take the nearest '
                               'processed point\'s result (0 = all points)', min=0)
    torch_threads: int = param(1, 'torch intra-op CPU threads, set for the whole process (0 = leave torch\'s '
                                  'default); 1 is fastest on a busy 2-core machine', min=0, max=256)


@dataclass
class DownstreamConfig:
    """The parameters every downstream node has; a node's config adds its own fields (and gives ``checkpoint``
    its help text)."""
    input: CloudInputConfig = param(default_factory=CloudInputConfig)
    checkpoint: str = param('', "fine-tuned checkpoint ('' = the node's packaged one)")
    model: ModelParams = param(default_factory=ModelParams)
    diagnostics_period_s: float = param(1.0, 'period of /diagnostics and ~/status', min=0.05, max=60.0)
    warn_period_s: float = param(5.0, 'at most one warning per drop reason per this period', min=0.0)


@dataclass
class CloudFrame:
    """A validated cloud waiting for inference."""
    points: np.ndarray       # (N, 4) float32 finite x, y, z, intensity, LiDAR frame
    frame_id: str
    stamp_ns: int
    n_removed: int           # NaN/inf or out-of-range rows removed
    received_mono: float     # time.monotonic() when the message arrived


class CloudInput:
    """Subscribes PointCloud2 (sensor-data QoS by default) and hands validated clouds to ``on_cloud``.

    Drop reasons: cloud_malformed (bad point_step / row_step / datatype, truncated data, no x/y/z),
    cloud_empty, cloud_nonfinite, cloud_out_of_range, frame_mismatch, stamp_zero, stamp_future, stamp_past,
    internal_error.
    The callback never raises.
    """

    def __init__(self, node, cfg: CloudInputConfig, drops: DropCounter, on_cloud, callback_group=None):
        from sensor_msgs.msg import PointCloud2

        from ros_ncal.ros.qos import sensor_qos
        self.cfg = cfg
        self.drops = drops
        self.on_cloud = on_cloud
        self.stamps = StampGuard(cfg.max_future_s, cfg.max_past_s)
        self._lock = threading.Lock()
        self.received = 0
        self.accepted = 0
        self._sub = node.create_subscription(PointCloud2, cfg.points_topic, self.on_msg,
                                             sensor_qos(cfg.qos_depth, reliable=cfg.reliable),
                                             callback_group=callback_group)

    def on_msg(self, msg) -> None:
        t0 = time.monotonic()
        with self._lock:
            self.received += 1
        try:
            frame = self.validate(msg, t0)
        except DropInput as d:
            self.drops.drop(d.reason, d.detail)
            return
        except Exception as exc:  # noqa: BLE001 - hostile input must not kill the node
            self.drops.drop('internal_error', f'{type(exc).__name__}: {exc}')
            return
        with self._lock:
            self.accepted += 1
        self.on_cloud(frame)

    _on_cloud = on_msg   # the name SensorInput (collector / calibrator) uses, for shared fault tests

    def validate(self, msg, received_mono: float) -> CloudFrame:
        """PointCloud2 -> CloudFrame with the NaN/inf and out-of-range rows removed; DropInput(reason) when unusable."""
        frame = str(msg.header.frame_id).lstrip('/')
        if not frame:
            raise DropInput('frame_mismatch', 'points has an empty header.frame_id')
        if self.cfg.lidar_frame and frame != self.cfg.lidar_frame.lstrip('/'):
            raise DropInput('frame_mismatch', f'points frame {frame!r} != input.lidar_frame {self.cfg.lidar_frame!r}')
        kept = keep_valid_points(decode_cloud(msg), self.cfg.min_points, self.cfg.max_nonfinite_fraction,
                                 self.cfg.max_coordinate_m)
        ns = accept_stamp(self.stamps, msg.header.stamp)
        return CloudFrame(kept.points, frame, ns, kept.n_removed, received_mono)


def load_predictor(checkpoint: str, tasks: tuple[str, ...], mp: ModelParams):
    """(DownstreamPredictor, '') or (None, why) for a checkpoint whose task is one of ``tasks``."""
    if not checkpoint:
        return None, 'no checkpoint given'
    if not Path(checkpoint).is_file():
        return None, f'checkpoint {checkpoint} not found (train one with `ncal finetune`, set the checkpoint parameter)'
    try:
        import torch

        from ros_ncal.models.inference import DownstreamPredictor
        if mp.torch_threads > 0:
            torch.set_num_threads(mp.torch_threads)
        pred = DownstreamPredictor.from_checkpoint(checkpoint, mp.device, mp.max_range, mp.max_points)
    except Exception as exc:  # noqa: BLE001 - a bad file must leave the node running with ERROR diagnostics
        return None, f'cannot load {checkpoint}: {type(exc).__name__}: {exc}'
    if pred.task_name not in tasks:
        return None, f'{checkpoint} is a {pred.task_name!r} model; this node needs one of {list(tasks)}'
    return pred, ''


class DownstreamNode(Node):
    """Base of the segmenter / detector: parameters, input, model, worker, reporting (see module docstring).

    Subclasses set ``NODE_NAME``, ``CONFIG`` (a :class:`DownstreamConfig` subclass), ``TASKS``,
    ``DEFAULT_CHECKPOINT``, create their publishers after ``super().__init__(**kwargs)`` and implement
    :meth:`publish_result`.
    """

    NODE_NAME = ''
    CONFIG: type[DownstreamConfig] = DownstreamConfig
    TASKS: tuple[str, ...] = ()
    DEFAULT_CHECKPOINT: Path = ASSETS_DIR / 'missing.pt'

    def __init__(self, **kwargs):
        super().__init__(kwargs.pop('node_name', self.NODE_NAME), **kwargs)
        self._setup(declare_config(self, self.CONFIG))

    def _setup(self, cfg: DownstreamConfig) -> None:
        from std_msgs.msg import Float64, String

        from ros_ncal.ros.diagnostics import DiagnosticsHelper
        from ros_ncal.ros.qos import reliable_qos
        self.cfg = cfg
        self.checkpoint = cfg.checkpoint or str(self.DEFAULT_CHECKPOINT)
        self.predictor, self.model_error = load_predictor(self.checkpoint, self.TASKS, cfg.model)
        if self.predictor is None:
            self.get_logger().error(f'{self.get_name()}: no model ({self.model_error}); clouds are dropped as '
                                    "'no_model' until restarted with a usable checkpoint")
        else:
            self.get_logger().info(f'{self.get_name()}: {self.predictor.task_name} model from {self.checkpoint} '
                                   f'on {self.predictor.device}')
        self.drops = DropCounter(self.get_logger(), cfg.warn_period_s)
        self._lock = threading.Lock()
        self.n_processed = 0
        self.latency_ms = 0.0            # message arrival -> outputs published
        self.processing_ms = 0.0         # model call alone
        self.last_points = 0
        self._errors_reported = 0
        self._sensor_group = ReentrantCallbackGroup()
        self._ctl_group = MutuallyExclusiveCallbackGroup()
        self.out_qos = reliable_qos(5)
        self._pub_proc = self.create_publisher(Float64, '~/debug/processing_time_ms', self.out_qos)
        self._pub_status = self.create_publisher(String, '~/status', 10)
        self._diag = DiagnosticsHelper(self, self.TASKS[0] if self.TASKS else 'model', hardware_id=self.checkpoint)
        self.worker = LatestWorker(self._infer, f'{self.get_name()}-inference', self._on_worker_error)
        self.input = CloudInput(self, cfg.input, self.drops, self._on_cloud, callback_group=self._sensor_group)
        self._timer = self.create_timer(cfg.diagnostics_period_s, self.publish_diagnostics,
                                        callback_group=self._ctl_group)

    # -- executor thread
    def _on_cloud(self, frame: CloudFrame) -> None:
        if self.predictor is None:
            self.drops.drop('no_model', self.model_error)
            return
        if self.worker.submit(frame) is not None:
            self.drops.drop('busy', 'inference still running; kept the newest cloud')

    def _on_worker_error(self, frame, exc: BaseException) -> None:
        self.drops.drop('inference_error', f'{type(exc).__name__}: {exc}')

    # -- worker thread
    def _infer(self, frame: CloudFrame) -> None:
        from std_msgs.msg import Float64
        t0 = time.perf_counter()
        pred = self.predictor.predict(frame.points)
        proc_ms = (time.perf_counter() - t0) * 1e3
        self.publish_result(frame, pred)
        self._pub_proc.publish(Float64(data=float(proc_ms)))
        with self._lock:
            self.n_processed += 1
            self.processing_ms = proc_ms
            self.latency_ms = (time.monotonic() - frame.received_mono) * 1e3
            self.last_points = len(frame.points)

    def publish_result(self, frame: CloudFrame, pred) -> None:  # pragma: no cover - abstract
        raise NotImplementedError

    def extra_status(self) -> dict[str, Any]:
        return {}

    # -- reporting
    def status(self) -> dict:
        with self._lock:
            st = {'task': self.predictor.task_name if self.predictor is not None else None,
                  'checkpoint': self.checkpoint, 'model_error': self.model_error,
                  'device': str(self.predictor.device) if self.predictor is not None else None,
                  'frames_received': self.input.received, 'frames_accepted': self.input.accepted,
                  'frames_processed': self.n_processed, 'latency_ms': round(self.latency_ms, 2),
                  'processing_time_ms': round(self.processing_ms, 2), 'last_points': self.last_points}
        st.update(self.extra_status())
        st['dropped'] = self.drops.snapshot()
        st['queues'] = {'pending': self.worker.pending, 'busy': int(self.worker.busy)}
        return st

    def publish_diagnostics(self) -> dict:
        from std_msgs.msg import String
        st = self.status()
        self._pub_status.publish(String(data=json.dumps(st)))
        errors = st['dropped'].get('inference_error', 0)
        if self.predictor is None:
            level, msg = 'ERROR', f'no model: {self.model_error}'
        elif errors > self._errors_reported:
            level, msg = 'WARN', f'{errors - self._errors_reported} inference error(s) since the last report'
        else:
            level, msg = 'OK', f"{st['frames_processed']} frames, latency {st['latency_ms']:.1f} ms"
        self._errors_reported = errors
        values = {'task': st['task'], 'checkpoint': st['checkpoint'], 'device': st['device'],
                  'frames_received': st['frames_received'], 'frames_processed': st['frames_processed'],
                  'latency_ms': float(st['latency_ms']), 'processing_time_ms': float(st['processing_time_ms']),
                  'points': st['last_points']}
        values.update({k: v for k, v in st.items() if k.startswith('last_') and k != 'last_points'})
        values.update(drop_queue_values(st['dropped'], st['queues']))
        self._diag.publish(level, msg, values)
        return st

    def close(self) -> None:
        self.worker.stop(timeout_s=30.0)
