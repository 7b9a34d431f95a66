"""extrinsic_publisher node: a given or recorded camera-LiDAR extrinsic on /tf_static + overlays.

Subscribes ``points`` (PointCloud2), ``image`` (Image), ``camera_info`` (CameraInfo) with the
sensor-data QoS (remap them), and /tf_static when ``extrinsic_source`` is ``tf_static``.
Publishes ``/tf_static`` (T_lidar_cam: frame_id = lidar_frame, child = camera_frame),
``~/extrinsic`` (the same TransformStamped, latched), ``~/overlay`` (rgb8 Image: points of the
paired cloud projected with the current extrinsic, coloured by depth) and ``/diagnostics``.
Parameters: config/extrinsic_publisher.yaml.
"""
from __future__ import annotations

if __name__ == '__main__':
    from ros_ncal.ros.lifecycle import quiet_interrupts_during_import
    quiet_interrupts_during_import()   # Ctrl-C while rclpy loads: exit 0, no traceback

import time

import numpy as np
from geometry_msgs.msg import TransformStamped
from rcl_interfaces.msg import ParameterDescriptor
from rclpy.node import Node
from sensor_msgs.msg import CameraInfo, Image, PointCloud2
from tf2_msgs.msg import TFMessage

from ros_ncal.data.pairing import ApproximateTimePairer
from ros_ncal.geometry import T_from_xyz_quat, invert, validate_rigid
from ros_ncal.msgcodec import (camera_info_to_intrinsics, cloud_to_xyzi, image_to_rgb, stamp_to_ns,
                               transform_stamped_to_matrix)
from ros_ncal.ros.conversions import matrix_to_transform_stamped, rgb_to_image_msg
from ros_ncal.ros.diagnostics import DiagnosticsHelper
from ros_ncal.ros.qos import TF_STATIC_QOS, latched_qos, sensor_qos
from ros_ncal.ros.tf_static import StaticTransformBroadcaster
from ros_ncal.viz import draw_projection_overlay

SOURCES = ('tf_static', 'kitti_calib', 'xyz_quat')


class ExtrinsicPublisher(Node):
    def __init__(self, node_name: str = 'extrinsic_publisher', **kwargs):
        super().__init__(node_name, **kwargs)
        p = self._declare_parameters()
        self.lidar_frame, self.camera_frame = p['lidar_frame'], p['camera_frame']
        self.T_cam_lidar: np.ndarray | None = None
        self.counts = {'clouds': 0, 'images': 0, 'pairs': 0, 'overlays': 0, 'bad_messages': 0, 'no_extrinsic': 0,
                       'no_camera_info': 0}
        self._latency_ms: list[float] = []
        self._camera_infos: dict[int, object] = {}
        self._awaiting_info: list = []  # pairs whose CameraInfo (same stamp) has not arrived yet
        self._pairer = ApproximateTimePairer(int(p['pair_tolerance_ms'] * 1e6), p['pair_max_queue'])
        self._overlay_every = max(1, p['overlay_every_n'])
        self._radius, self._max_depth = p['overlay_point_radius'], p['overlay_max_depth_m']

        self._extrinsic_pub = self.create_publisher(TransformStamped, '~/extrinsic', latched_qos(1))
        self._overlay_pub = self.create_publisher(Image, '~/overlay', 5)
        self._diag = DiagnosticsHelper(self, 'extrinsic and overlay')
        self._broadcaster = None
        qos = sensor_qos(p['sensor_qos_depth'], reliable=p['sensor_qos_reliable'])
        self.create_subscription(PointCloud2, 'points', self._on_points, qos)
        self.create_subscription(Image, 'image', self._on_image, qos)
        self.create_subscription(CameraInfo, 'camera_info', self._on_camera_info, qos)

        source = p['extrinsic_source']
        if source == 'tf_static':
            self.create_subscription(TFMessage, '/tf_static', self._on_tf_static, TF_STATIC_QOS)
        else:
            if source == 'kitti_calib':
                from ros_ncal.data.kitti_files import read_kitti_calib
                T = read_kitti_calib(p['kitti_calib_file'])['T_cam_lidar']
            else:
                v = np.asarray(p['T_cam_lidar_xyz_quat'], dtype=np.float64)
                if v.size != 7:
                    raise ValueError(f'T_cam_lidar_xyz_quat needs 7 values (x y z qx qy qz qw), got {v.size}')
                T = T_from_xyz_quat(v[:3], v[3:] / np.linalg.norm(v[3:]))
            if p['publish_tf_static']:
                self._broadcaster = StaticTransformBroadcaster(self)
            self._set_extrinsic(validate_rigid(T, name='T_cam_lidar'), self.get_clock().now().nanoseconds)
        self.create_timer(p['diagnostics_period_s'], self._publish_diagnostics)
        self.get_logger().info(f'extrinsic source: {source}; frames {self.lidar_frame} -> {self.camera_frame}')

    def _declare_parameters(self) -> dict:
        def declare(name, default, description):
            return self.declare_parameter(name, default, ParameterDescriptor(description=description)).value
        p = {
            'lidar_frame': declare('lidar_frame', 'velo_link', 'LiDAR frame id (TF parent of the extrinsic)'),
            'camera_frame': declare('camera_frame', 'camera_color_left_optical_frame', 'camera optical frame id'),
            'extrinsic_source': declare('extrinsic_source', 'tf_static', f'one of {SOURCES}'),
            'kitti_calib_file': declare('kitti_calib_file', '', 'KITTI calib file (extrinsic_source=kitti_calib)'),
            'T_cam_lidar_xyz_quat': declare('T_cam_lidar_xyz_quat', [0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 1.0],
                                            'x y z qx qy qz qw of T_cam_lidar (extrinsic_source=xyz_quat)'),
            'publish_tf_static': declare('publish_tf_static', True, 'publish a given extrinsic on /tf_static'),
            'pair_tolerance_ms': declare('pair_tolerance_ms', 50.0, 'max camera-LiDAR stamp difference'),
            'pair_max_queue': declare('pair_max_queue', 10, 'pairing queue length per stream'),
            'sensor_qos_reliable': declare('sensor_qos_reliable', False, 'RELIABLE instead of BEST_EFFORT inputs'),
            'sensor_qos_depth': declare('sensor_qos_depth', 5, 'input queue depth'),
            'overlay_every_n': declare('overlay_every_n', 1, 'publish an overlay every n pairs'),
            'overlay_point_radius': declare('overlay_point_radius', 1, 'half size of a drawn point, pixels'),
            'overlay_max_depth_m': declare('overlay_max_depth_m', 60.0, 'depth of the far end of the colour ramp'),
            'diagnostics_period_s': declare('diagnostics_period_s', 1.0, '/diagnostics period'),
        }
        if p['extrinsic_source'] not in SOURCES:
            raise ValueError(f'extrinsic_source must be one of {SOURCES}, got {p["extrinsic_source"]!r}')
        if p['extrinsic_source'] == 'kitti_calib' and not p['kitti_calib_file']:
            raise ValueError('extrinsic_source=kitti_calib needs kitti_calib_file')
        if p['pair_tolerance_ms'] < 0 or p['pair_max_queue'] < 1 or p['diagnostics_period_s'] <= 0:
            raise ValueError('pair_tolerance_ms >= 0, pair_max_queue >= 1, diagnostics_period_s > 0 required')
        return p

    def _set_extrinsic(self, T_cam_lidar: np.ndarray, stamp_ns: int) -> None:
        self.T_cam_lidar = T_cam_lidar
        msg = matrix_to_transform_stamped(invert(T_cam_lidar), self.lidar_frame, self.camera_frame, stamp_ns)
        self._extrinsic_pub.publish(msg)
        if self._broadcaster is not None:
            self._broadcaster.send_transform(msg)

    def _on_tf_static(self, msg: TFMessage) -> None:
        for t in msg.transforms:
            try:
                st = transform_stamped_to_matrix(t)
            except ValueError as exc:
                self.counts['bad_messages'] += 1
                self.get_logger().warning(f'bad /tf_static transform: {exc}', throttle_duration_sec=5.0)
                continue
            if st.parent_frame == self.lidar_frame and st.child_frame == self.camera_frame:
                T = invert(st.T_parent_child)
                if self.T_cam_lidar is None or not np.allclose(T, self.T_cam_lidar, atol=1e-9):
                    self._set_extrinsic(T, st.stamp_ns)

    def _on_camera_info(self, msg: CameraInfo) -> None:
        self._camera_infos[stamp_to_ns(msg.header.stamp)] = msg
        while len(self._camera_infos) > 20:
            self._camera_infos.pop(next(iter(self._camera_infos)))
        ready = [p for p in self._awaiting_info if p.camera_stamp_ns in self._camera_infos]
        self._awaiting_info = [p for p in self._awaiting_info if p.camera_stamp_ns not in self._camera_infos]
        for pair in ready:
            self._overlay(pair, self._camera_infos[pair.camera_stamp_ns])

    def _on_image(self, msg: Image) -> None:
        self.counts['images'] += 1
        self._handle(self._pairer.push_camera(stamp_to_ns(msg.header.stamp), msg))

    def _on_points(self, msg: PointCloud2) -> None:
        self.counts['clouds'] += 1
        self._handle(self._pairer.push_lidar(stamp_to_ns(msg.header.stamp), msg))

    def _handle(self, pairs) -> None:
        """Overlay each pair with the CameraInfo of the image's stamp; wait (up to 3 pairs) for it."""
        for pair in pairs:
            self.counts['pairs'] += 1
            if (self.counts['pairs'] - 1) % self._overlay_every:
                continue
            info = self._camera_infos.get(pair.camera_stamp_ns)
            if info is not None:
                self._overlay(pair, info)
                continue
            self._awaiting_info.append(pair)
            while len(self._awaiting_info) > 3:  # the stamps never matched: use the newest CameraInfo
                old = self._awaiting_info.pop(0)
                if self._camera_infos:
                    self._overlay(old, self._camera_infos[max(self._camera_infos)])
                else:
                    self.counts['no_camera_info'] += 1

    def _overlay(self, pair, info) -> None:
        t0 = time.perf_counter()
        if self.T_cam_lidar is None:
            self.counts['no_extrinsic'] += 1
            return
        try:
            K = camera_info_to_intrinsics(info).K
            rgb = image_to_rgb(pair.camera)
            cloud = cloud_to_xyzi(pair.lidar, drop_nonfinite=True)
            overlay, _ = draw_projection_overlay(rgb, cloud.points, self.T_cam_lidar, K, self._radius,
                                                 self._max_depth)
        except ValueError as exc:
            self.counts['bad_messages'] += 1
            self.get_logger().warning(f'dropping a bad pair: {exc}', throttle_duration_sec=5.0)
            return
        self._overlay_pub.publish(rgb_to_image_msg(overlay, pair.camera.header.frame_id, pair.camera_stamp_ns))
        self.counts['overlays'] += 1
        self._latency_ms.append((time.perf_counter() - t0) * 1e3)
        self._latency_ms = self._latency_ms[-100:]

    def _publish_diagnostics(self) -> None:
        drops = dict(self._pairer.drop_counts)
        values = dict(self.counts, **{f'drop_{k}': v for k, v in drops.items()})
        if self._latency_ms:
            values['overlay_latency_ms_mean'] = float(np.mean(self._latency_ms))
        level = 'OK' if self.T_cam_lidar is not None else 'WARN'
        self._diag.publish(level, 'extrinsic known' if self.T_cam_lidar is not None else 'no extrinsic yet', values)


def main(args=None) -> int:
    from ._common import spin_node_main
    return spin_node_main(ExtrinsicPublisher, args)


if __name__ == '__main__':
    raise SystemExit(main())
