"""The rclpy side shared by the nodes (the pieces without ROS are in the library, named below).

* :func:`declare_config`: node parameters declared from a config dataclass (one field = one parameter, nested
  dataclasses give dotted names), each with a descriptor (description, range, choices) and validated; a bad
  value raises ``ValueError`` naming the parameter. Fields are made with :func:`ros_ncal.config_io.param`,
  typed and coerced by :func:`ros_ncal.config_io.param_kind` / :func:`ros_ncal.config_io.coerce_param`.
* :class:`TfFrames`: the LiDAR -> camera chain through ``tf2_ros`` (Buffer + TransformListener), with the
  project's checks on every transform.
* :class:`SensorInput`: the camera + CameraInfo + PointCloud2 front end of the collector and calibrator:
  subscribe, decode, validate (drop reasons), pair by approximate time, resolve the nominal extrinsic. Its
  parameters, frames and pairs are :mod:`ros_ncal.data.sensor_input`.
* :func:`spin_node_main`: ``main()`` of a node executable.

In the library, tested without ROS: :class:`ros_ncal.health.DropCounter` (drops by reason, throttled
warnings), :class:`ros_ncal.worker.LatestWorker` (a worker fed through a slot of one),
:class:`ros_ncal.geometry.distortion.Rectifier` (cached undistortion), :class:`ros_ncal.data.stamp_guard.StampGuard`
(stamp sanity), :class:`ros_ncal.data.pairing.ApproximateTimePairer`, :func:`ros_ncal.geometry.extrinsic_from_params`.
"""
from __future__ import annotations

import dataclasses
import math
import threading
import time
import typing
from collections import Counter, deque
from typing import Any, Callable

import numpy as np

from ros_ncal.config_io import coerce_param, param_kind
from ros_ncal.data.pairing import ApproximateTimePairer
from ros_ncal.data.sensor_input import (CameraFrame, CloudFrame, DropInput, ExtrinsicParams, PairedInput,
                                        SensorInputConfig, accept_stamp, decode_cloud, keep_valid_points)
from ros_ncal.data.stamp_guard import StampGuard
from ros_ncal.health import DropCounter
from ros_ncal.msgcodec import (CameraIntrinsics, camera_info_to_intrinsics, stamp_to_ns,
                               transform_stamped_to_matrix)
from ros_ncal.ros.image_decode import ImageDecoder, UnsupportedEncodingError

# ----------------------------------------------------------------------------- parameters


def _int_override_to_float(node, name: str) -> None:
    """Accept an integer written in YAML / ``-p`` (``rate: 10``) for a float parameter."""
    overrides = getattr(node, '_parameter_overrides', None)  # rclpy keeps the overrides here
    ov = overrides.get(name) if isinstance(overrides, dict) else None
    if ov is not None and ov.type_.name == 'INTEGER':
        from rclpy.parameter import Parameter
        overrides[name] = Parameter(name, Parameter.Type.DOUBLE, float(ov.value))


def declare_config(node, cls, prefix: str = ''):
    """Declare one read-only parameter per field of dataclass ``cls`` on ``node``; return the filled instance.

    Nested dataclass fields become ``<field>.<subfield>`` parameters. After the per-parameter checks
    (type, ``choices``, ``min``/``max``) the instance's ``validate()`` runs when it has one.
    """
    from rcl_interfaces.msg import FloatingPointRange, IntegerRange, ParameterDescriptor
    from rclpy.exceptions import ParameterException
    hints = typing.get_type_hints(cls)
    values = {}
    for f in dataclasses.fields(cls):
        name = f'{prefix}{f.name}'
        kind = param_kind(hints[f.name])
        if kind == 'config':
            values[f.name] = declare_config(node, hints[f.name], prefix=f'{name}.')
            continue
        meta = f.metadata
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
        desc = meta.get('help', '')
        if meta.get('choices'):
            desc += f' (one of: {", ".join(map(str, meta["choices"]))})'
        d = ParameterDescriptor(name=name, description=desc, read_only=True,
                                dynamic_typing=kind in ('float_list', 'str_list'))
        if kind == 'int' and (meta.get('min') is not None or meta.get('max') is not None):
            d.integer_range = [IntegerRange(from_value=int(meta['min'] if meta.get('min') is not None else -2**62),
                                            to_value=int(meta['max'] if meta.get('max') is not None else 2**62),
                                            step=0)]
        ros_default = (list(default) or None) if kind.endswith('_list') else default
        if kind == 'float':
            if meta.get('min') is not None or meta.get('max') is not None:
                d.floating_point_range = [FloatingPointRange(
                    from_value=float(meta['min'] if meta.get('min') is not None else -1e300),
                    to_value=float(meta['max'] if meta.get('max') is not None else 1e300), step=0.0)]
            ros_default = float(default)
            _int_override_to_float(node, name)
        try:
            value = node.declare_parameter(name, ros_default, d).value
        except ParameterException as exc:   # out of the declared range, wrong type
            raise ValueError(f'parameter {name!r}: {exc}') from None
        value = coerce_param(name, kind, default if value is None and not kind.endswith('_list') else value)
        if meta.get('choices') and value not in meta['choices']:
            raise ValueError(f'parameter {name!r}: {value!r} is not one of {list(meta["choices"])}')
        for bound, ok in (('min', lambda v, b: v >= b), ('max', lambda v, b: v <= b)):
            b = meta.get(bound)
            if b is not None and kind in ('int', 'float') and not ok(value, b):
                raise ValueError(f'parameter {name!r}: {value} is {"below" if bound == "min" else "above"} '
                                 f'the allowed {bound} {b}')
        values[f.name] = value
    cfg = cls(**values)
    if hasattr(cfg, 'validate'):
        cfg.validate()
    return cfg


# ----------------------------------------------------------------------------- TF


class TfFrames:
    """The TF graph the nodes read the LiDAR -> camera chain from: a ``tf2_ros.Buffer``, fed by a
    ``tf2_ros.TransformListener`` (:meth:`listen`), looked up with ``Buffer.lookup_transform`` at the latest time.

    The listener's callbacks first apply the project's checks (:meth:`add_message`): a transform that is not
    finite, has a quaternion off unit norm by more than 1e-3, an empty frame id, or parent == child is rejected
    and counted in ``rejected`` (tf2 itself drops most of these with only a log line, and keeps a quaternion off
    by up to 0.5 %); the ones taken go to tf2 with a unit quaternion and frame ids without a leading slash (tf2's
    look-up refuses those). Thread-safe (tf2's buffer locks).
    """

    def __init__(self):
        from tf2_ros import Buffer
        self.buffer = Buffer()     # 10 s of /tf history; /tf_static kept for good
        self.rejected = 0
        self._lock = threading.Lock()
        self._frames: set[str] = set()
        self.listener = None

    def listen(self, node, on_message: Callable[[Any, bool], None], dynamic: bool):
        """A ``tf2_ros.TransformListener`` on ``node`` whose callbacks call ``on_message(msg, static)`` (which
        should end in :meth:`add_message`). ``dynamic`` False: /tf_static only (its /tf subscription is dropped)."""
        from tf2_ros import TransformListener

        class CheckedTransformListener(TransformListener):
            def callback(self, data) -> None:
                on_message(data, False)

            def static_callback(self, data) -> None:
                on_message(data, True)

        self.listener = CheckedTransformListener(self.buffer, node)
        if not dynamic:
            node.destroy_subscription(self.listener.tf_sub)
        return self.listener

    def add_message(self, msg, static: bool = True) -> int:
        """tf2_msgs/TFMessage -> number of transforms taken (bad ones are counted in ``rejected``)."""
        n = 0
        for ts in msg.transforms:
            try:
                st = transform_stamped_to_matrix(ts)
            except ValueError:
                st = None
            parent = st.parent_frame.lstrip('/') if st else ''
            child = st.child_frame.lstrip('/') if st else ''
            if not parent or not child or parent == child:
                with self._lock:
                    self.rejected += 1
                continue
            ts.header.frame_id, ts.child_frame_id = parent, child
            q = ts.transform.rotation
            norm = math.sqrt(q.x * q.x + q.y * q.y + q.z * q.z + q.w * q.w)
            q.x, q.y, q.z, q.w = q.x / norm, q.y / norm, q.z / norm, q.w / norm
            if static:
                self.buffer.set_transform_static(ts, 'ros_ncal')
            else:
                self.buffer.set_transform(ts, 'ros_ncal')
            with self._lock:
                self._frames.update((parent, child))
            n += 1
        return n

    def add(self, parent: str, child: str, T_parent_child: np.ndarray, static: bool = True) -> None:
        """One transform given as a matrix (tests, tools); the same checks as :meth:`add_message`."""
        from tf2_msgs.msg import TFMessage

        from ros_ncal.ros.conversions import matrix_to_transform_stamped
        if self.add_message(TFMessage(transforms=[matrix_to_transform_stamped(T_parent_child, parent, child, 0)]),
                            static) != 1:
            raise ValueError(f'transform {parent!r} -> {child!r} rejected')

    @property
    def frames(self) -> set[str]:
        with self._lock:
            return set(self._frames)

    def lookup(self, target: str, source: str) -> np.ndarray | None:
        """T_target_source (4, 4) along the chain at the latest common time, or None when tf2 cannot give it
        (frames unknown or not connected)."""
        from rclpy.time import Time
        from tf2_ros import TransformException
        try:
            ts = self.buffer.lookup_transform(target.lstrip('/'), source.lstrip('/'), Time())
        except TransformException:
            return None
        return transform_stamped_to_matrix(ts).T_parent_child


# ----------------------------------------------------------------------------- images


_DEFAULT_DECODER: ImageDecoder | None = None


def default_image_decoder() -> ImageDecoder:
    """One process-wide :class:`ros_ncal.ros.image_decode.ImageDecoder` (cv_bridge where installed)."""
    global _DEFAULT_DECODER
    if _DEFAULT_DECODER is None:
        _DEFAULT_DECODER = ImageDecoder()
    return _DEFAULT_DECODER


# ----------------------------------------------------------------------------- sensor front end


class SensorInput:
    """Subscribes image (raw or compressed), CameraInfo, PointCloud2 and /tf_static; calls ``on_pair``.

    Every message is validated in its callback; a bad one is counted in ``drops`` under its reason
    and never raises into the executor. ``on_pair(PairedInput)`` runs in the executor thread and
    must be quick (hand the pair to a worker).
    Drop reasons: cloud_malformed, cloud_empty, cloud_nonfinite, image_malformed, image_encoding,
    image_size_mismatch, no_camera_info, camera_info_invalid, distortion_rejected, stamp_zero,
    stamp_future, stamp_past, frame_mismatch, no_extrinsic, pair_overflow, pair_unmatched, and message_lost
    (counted from the middleware's message-lost events; ``received()['lost_<stream>']`` per stream).
    """

    def __init__(self, node, cfg: SensorInputConfig, extrinsic: ExtrinsicParams, drops: DropCounter,
                 on_pair: Callable[[PairedInput], None], callback_group=None):
        from sensor_msgs.msg import CameraInfo, CompressedImage, Image, PointCloud2

        from ros_ncal.ros.qos import sensor_qos

        self.node = node
        self.cfg = cfg
        self.drops = drops
        self.on_pair = on_pair
        self.param_extrinsic = extrinsic.matrix()
        self.extrinsic_source = extrinsic.source
        self.frames = TfFrames()
        self.images = default_image_decoder()   # msgcodec, and cv_bridge where installed (ros/image_decode.py)
        self.stamps = StampGuard(cfg.max_future_s, cfg.max_past_s)
        self.pairer = ApproximateTimePairer(int(cfg.pair_tolerance_s * 1e9), cfg.pair_max_queue)
        self._lock = threading.Lock()  # pairer + camera info
        self.intrinsics: CameraIntrinsics | None = None
        self._infos: deque = deque(maxlen=20)   # (stamp_ns, CameraIntrinsics) of recent CameraInfos
        self._newest: dict[str, int] = {}         # newest accepted stamp per stream (since the last time jump)
        self.counts = Counter()  # received per stream, pairs (guarded by _lock)
        qos = sensor_qos(cfg.qos_depth, reliable=cfg.reliable)
        lost = self._lost_events
        if cfg.image_transport == 'compressed':
            self._sub_img = node.create_subscription(CompressedImage, cfg.compressed_image_topic,
                                                     self._on_compressed, qos, callback_group=callback_group,
                                                     event_callbacks=lost('image'))
        else:
            self._sub_img = node.create_subscription(Image, cfg.image_topic, self._on_image, qos,
                                                     callback_group=callback_group, event_callbacks=lost('image'))
        info_qos = sensor_qos(cfg.qos_depth, reliable=cfg.reliable)
        self._sub_info = node.create_subscription(CameraInfo, cfg.camera_info_topic, self._on_info, info_qos,
                                                  callback_group=callback_group, event_callbacks=lost('camera_info'))
        self._sub_pts = node.create_subscription(PointCloud2, cfg.points_topic, self._on_cloud, qos,
                                                 callback_group=callback_group, event_callbacks=lost('points'))
        self._tf_freeze = False
        # tf2_ros: /tf_static (and /tf with input.tf_topic) through a TransformListener into a Buffer
        self.frames.listen(node, self._on_tf, dynamic=cfg.tf_topic)

    def _lost_events(self, stream: str):
        """Subscription event callbacks counting the messages the middleware reports lost (Fast DDS: samples
        that never arrived complete) as drops ``message_lost`` and per stream in ``counts``."""
        from rclpy.event_handler import SubscriptionEventCallbacks

        def on_lost(info) -> None:
            n = int(info.total_count_change)
            if n > 0:
                with self._lock:
                    self.counts[f'lost_{stream}'] += n
                self.drops.drop('message_lost', f'{stream}: the middleware lost {n} message(s) '
                                                f'({info.total_count} so far)', n=n)
        return SubscriptionEventCallbacks(message_lost=on_lost)

    # -- callbacks (never raise)
    def _guard(self, fn, *args) -> None:
        try:
            fn(*args)
        except DropInput as d:
            self.drops.drop(d.reason, d.detail)
        except Exception as exc:  # noqa: BLE001 - hostile input must not kill the node
            self.drops.drop('internal_error', f'{type(exc).__name__}: {exc}')

    def _on_tf(self, msg, static: bool = True) -> None:
        if self._tf_freeze:
            return
        self._guard(self.frames.add_message, msg, static)

    def freeze_tf(self) -> None:
        """Stop taking transforms (the calibrator freezes its nominal before publishing its own)."""
        self._tf_freeze = True

    def _count(self, key: str) -> None:
        with self._lock:
            self.counts[key] += 1

    def _on_info(self, msg) -> None:
        self._count('camera_info')
        self._guard(self._take_info, msg)

    def _take_info(self, msg) -> None:
        try:
            intr = camera_info_to_intrinsics(msg)
        except ValueError as exc:
            raise DropInput('camera_info_invalid', str(exc)) from None
        if intr.width <= 0 or intr.height <= 0:
            raise DropInput('camera_info_invalid', f'CameraInfo size {intr.width}x{intr.height}')
        if np.any(intr.D) and self.cfg.distortion == 'reject':
            raise DropInput('distortion_rejected', f'{intr.distortion_model} D={list(np.round(intr.D, 4))} '
                                                   "(parameter input.distortion is 'reject')")
        self._check_frame(msg.header.frame_id, self.cfg.camera_frame, 'camera_info')
        with self._lock:
            self.intrinsics = intr
            self._infos.append((stamp_to_ns(msg.header.stamp), intr))

    def intrinsics_for(self, stamp_ns: int) -> CameraIntrinsics | None:
        """The CameraInfo with this exact stamp when one of the recent ones has it, else the newest."""
        with self._lock:
            for s, intr in reversed(self._infos):
                if s == stamp_ns:
                    return intr
            return self.intrinsics

    def _on_image(self, msg) -> None:
        self._count('image')
        self._guard(self._take_image, msg, False)

    def _on_compressed(self, msg) -> None:
        self._count('image')
        self._guard(self._take_image, msg, True)

    def _check_frame(self, frame_id: str, expected: str, what: str) -> str:
        frame = str(frame_id).lstrip('/')
        if expected and frame != expected.lstrip('/'):
            raise DropInput('frame_mismatch', f'{what} frame {frame!r} != expected {expected!r}')
        if not frame:
            raise DropInput('frame_mismatch', f'{what} has an empty header.frame_id')
        return frame

    def _take_image(self, msg, compressed: bool) -> None:
        frame = self._check_frame(msg.header.frame_id, self.cfg.camera_frame, 'image')
        if not compressed:
            try:
                self.images.check(msg)  # encoding, size, step, data length (no decode)
            except UnsupportedEncodingError as exc:
                raise DropInput('image_encoding', str(exc)) from None
            except ValueError as exc:
                raise DropInput('image_malformed', str(exc)) from None
        elif len(msg.data) == 0:
            raise DropInput('image_malformed', 'CompressedImage has no data')
        ns = accept_stamp(self.stamps, msg.header.stamp)
        item = CameraFrame(msg=msg, compressed=compressed, stamp_ns=ns, frame_id=frame, decoder=self.images)
        with self._lock:
            self.counts['image_accepted'] += 1
            self._restart_pairing_on_jump_back('camera', ns)
            pairs = self.pairer.push_camera(ns, item)
        self._emit(pairs)

    def _on_cloud(self, msg) -> None:
        self._count('points')
        self._guard(self._take_cloud, msg)

    def _take_cloud(self, msg) -> None:
        frame = self._check_frame(msg.header.frame_id, self.cfg.lidar_frame, 'points')
        kept = keep_valid_points(decode_cloud(msg), self.cfg.min_points, self.cfg.max_nonfinite_fraction)
        ns = accept_stamp(self.stamps, msg.header.stamp)
        item = CloudFrame(points=kept.points, stamp_ns=ns, frame_id=frame, n_nonfinite=kept.n_nonfinite)
        with self._lock:
            self.counts['points_accepted'] += 1
            self._restart_pairing_on_jump_back('lidar', ns)
            pairs = self.pairer.push_lidar(ns, item)
        self._emit(pairs)

    def _restart_pairing_on_jump_back(self, stream: str, ns: int) -> None:
        """A stream whose stamp steps back by more than max(1 s, 2 x pair tolerance) (a looped bag, a
        restarted driver) restarts the pairer, which assumes non-decreasing stamps; what was waiting is
        counted as pair_unmatched. Call with ``_lock`` held."""
        newest = self._newest.get(stream)
        jump = max(10**9, 2 * self.pairer.tolerance_ns)
        if newest is not None and ns < newest - jump:
            old = self.pairer
            cams, lidars = old.pending
            fresh = ApproximateTimePairer(old.tolerance_ns, old.max_queue)
            fresh.dropped = old.dropped
            fresh.dropped['camera']['too_far'] += cams
            fresh.dropped['lidar']['too_far'] += lidars
            fresh.n_pairs = old.n_pairs
            self.pairer = fresh
            self._newest = {}
            self.counts['time_jumps_back'] += 1
        self._newest[stream] = ns if newest is None or stream not in self._newest else max(self._newest[stream], ns)

    def nominal_extrinsic(self, lidar_frame: str, camera_frame: str) -> np.ndarray | None:
        """T_cam_lidar from the parameters or the TF graph (per extrinsic.source), None when unknown."""
        if self.param_extrinsic is not None:
            return self.param_extrinsic
        if self.extrinsic_source == 'param':
            return None
        return self.frames.lookup(camera_frame, lidar_frame)

    def _emit(self, pairs) -> None:
        self._sync_pairer_drops()
        for p in pairs:
            self._count('pairs')
            try:
                intr = self.intrinsics_for(p.camera_stamp_ns)
                if intr is None:
                    raise DropInput('no_camera_info', 'no valid CameraInfo received yet')
                cam, cloud = p.camera, p.lidar
                if not cam.compressed and (int(cam.msg.width), int(cam.msg.height)) != (intr.width, intr.height):
                    raise DropInput('image_size_mismatch', f'image {cam.msg.width}x{cam.msg.height} vs CameraInfo '
                                                           f'{intr.width}x{intr.height}')
                if cloud.frame_id == cam.frame_id:   # both 'base_link': no extrinsic between them to calibrate
                    raise DropInput('frame_mismatch', f'camera and LiDAR messages carry the same frame id '
                                                      f'{cam.frame_id!r}; set distinct header.frame_id values '
                                                      '(or input.lidar_frame / input.camera_frame)')
                T = self.nominal_extrinsic(cloud.frame_id, cam.frame_id)
                if T is None:
                    raise DropInput('no_extrinsic', f'no transform {cloud.frame_id} -> {cam.frame_id} on /tf_static '
                                                    'and no extrinsic.* parameters')
                self.on_pair(PairedInput(camera=cam, cloud=cloud, intrinsics=intr, T_cam_lidar=T,
                                         received_mono=time.monotonic()))
                self._count('pairs_accepted')
            except DropInput as d:
                self.drops.drop(d.reason, d.detail)

    def _sync_pairer_drops(self) -> None:
        with self._lock:
            counts = self.pairer.drop_counts
        self.drops.set_external('pair_overflow', counts.get('overflow', 0))
        self.drops.set_external('pair_unmatched', counts.get('too_far', 0))

    def received(self) -> dict[str, int]:
        """Messages received per stream and pairs formed."""
        with self._lock:
            return dict(self.counts)

    def queue_sizes(self) -> dict[str, int]:
        with self._lock:
            cams, lidars = self.pairer.pending
        return {'pair_camera': cams, 'pair_lidar': lidars}


def spin_node_main(node_factory, args=None) -> int:
    """``main()`` of a node executable: safe ROS env, init, spin in a MultiThreadedExecutor, clean shutdown.

    SIGINT / SIGTERM (``ros2 launch`` sends SIGINT, then another, on Ctrl-C) stop the executor, the node's
    workers and rclpy in order; further signals during that are ignored; exit status 0, no traceback
    (:mod:`ros_ncal.ros.lifecycle`)."""
    from ros_ncal.rosenv import apply_safe_ros_env
    apply_safe_ros_env()
    import rclpy
    from rclpy.executors import MultiThreadedExecutor
    from rclpy.signals import SignalHandlerOptions

    from ros_ncal.ros.lifecycle import InterruptWatcher, spin_until_interrupted
    with InterruptWatcher(restore=False) as interrupts:      # the process ends after this
        rclpy.init(args=args, signal_handler_options=SignalHandlerOptions.NO)
        node = None
        try:
            node = node_factory()
            if not interrupts.interrupted:
                executor = MultiThreadedExecutor(num_threads=2)
                executor.add_node(node)
                spin_until_interrupted(executor, interrupts)
        finally:
            if node is not None:
                close = getattr(node, 'close', None)
                if close is not None:
                    close()
                node.destroy_node()
            rclpy.try_shutdown()
    return 0
