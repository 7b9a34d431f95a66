"""Detector node: PointCloud2 in, 3D boxes out as RViz markers and (when available) vision_msgs.

Subscribes ``points`` (sensor_msgs/PointCloud2, sensor-data QoS); runs a fine-tuned detection model
(:class:`ros_ncal.models.inference.DownstreamPredictor`, ``checkpoint`` parameter, default the packaged
``ros_ncal/assets/det.pt``) in a worker thread; publishes per cloud, with the input's header:

* ``~/detections`` (visualization_msgs/MarkerArray, always): a DELETEALL marker first, then per box a
  LINE_LIST wireframe (namespace ``boxes``, 12 edges, coloured by class) and a TEXT_VIEW_FACING label
  ``"<class> <score>"`` above it (namespace ``labels``); ids are the box index;
* ``~/detections3d`` (vision_msgs/Detection3DArray, when vision_msgs is importable): per box one
  ObjectHypothesisWithPose (class_id = class name, score) and a BoundingBox3D (centre pose with the yaw
  as a quaternion about z, size = length along the heading, width, height).

Boxes are ``x, y, z, l, w, h, yaw`` in the LiDAR frame, z the centre of the vertical extent; only boxes
with score >= ``min_score`` are published. Reporting: ``~/debug/processing_time_ms``, ``~/status``,
``/diagnostics`` (see :mod:`._downstream`).
"""
from __future__ import annotations

if __name__ == '__main__':   # a process of its own: one OpenBLAS thread, quiet Ctrl-C while torch / rclpy load
    from ros_ncal.ros.lifecycle import prepare_node_process
    prepare_node_process()

from dataclasses import dataclass

import numpy as np

from ros_ncal.assets import DET
from ros_ncal.config_io import param
from ros_ncal.data.boxes3d import BOX_EDGES, box_corners
from ros_ncal.data.labels import BOX_PALETTE, class_colors

from ._common import spin_node_main
from ._downstream import CloudFrame, DownstreamConfig, DownstreamNode


@dataclass
class MarkerParams:
    line_width: float = param(0.08, 'box wireframe line width (m)', min=0.001, max=10.0)
    text_size: float = param(0.8, 'label text height (m)', min=0.01, max=50.0)
    alpha: float = param(1.0, 'marker opacity', min=0.0, max=1.0)
    lifetime_s: float = param(0.0, 'marker lifetime (0 = until the next DELETEALL)', min=0.0)


@dataclass
class DetectorConfig(DownstreamConfig):
    """Detector parameters (``config/detector.yaml``)."""
    checkpoint: str = param('', f"fine-tuned det checkpoint ('' = the packaged {DET.name})")
    min_score: float = param(0.0, 'publish boxes with at least this score (on top of the model\'s own threshold)',
                             min=0.0, max=1.0)
    publish_vision_msgs: bool = param(True, 'publish ~/detections3d (vision_msgs/Detection3DArray) when importable')
    markers: MarkerParams = param(default_factory=MarkerParams)


def box_edge_points(boxes: np.ndarray) -> np.ndarray:
    """boxes: (M, 7) x y z l w h yaw -> (M, 24, 3) float64 LINE_LIST vertices (12 edges, pairs of endpoints)."""
    corners = box_corners(boxes)                                   # (M, 8, 3)
    idx = np.asarray(BOX_EDGES, dtype=np.int64).reshape(-1)        # (24,)
    return corners[:, idx]


def yaw_quaternion(yaw: float) -> tuple[float, float, float, float]:
    """Rotation about z by ``yaw`` (rad) as (x, y, z, w)."""
    return 0.0, 0.0, float(np.sin(yaw / 2.0)), float(np.cos(yaw / 2.0))


def class_name(names, label: int) -> str:
    return str(names[label]) if names is not None and 0 <= label < len(names) else f'class_{label}'


def make_marker_array(header, boxes: np.ndarray, scores: np.ndarray, labels: np.ndarray, names,
                      mp: MarkerParams):
    """-> visualization_msgs/MarkerArray: DELETEALL, then per box a LINE_LIST wireframe and a text label."""
    from builtin_interfaces.msg import Duration
    from geometry_msgs.msg import Point
    from std_msgs.msg import ColorRGBA
    from visualization_msgs.msg import Marker, MarkerArray
    out = MarkerArray()
    out.markers.append(Marker(header=header, action=Marker.DELETEALL))
    lifetime = Duration(sec=int(mp.lifetime_s), nanosec=int(round((mp.lifetime_s % 1.0) * 1e9)))
    edges = box_edge_points(boxes)
    for i, (box, score, label) in enumerate(zip(boxes, scores, labels)):
        r, g, b = (class_colors(label, BOX_PALETTE) / 255.0).tolist()
        color = ColorRGBA(r=r, g=g, b=b, a=float(mp.alpha))
        wire = Marker(header=header, ns='boxes', id=i, type=Marker.LINE_LIST, action=Marker.ADD,
                      lifetime=lifetime, color=color)
        wire.pose.orientation.w = 1.0
        wire.scale.x = float(mp.line_width)
        wire.points = [Point(x=float(p[0]), y=float(p[1]), z=float(p[2])) for p in edges[i]]
        text = Marker(header=header, ns='labels', id=i, type=Marker.TEXT_VIEW_FACING, action=Marker.ADD,
                      lifetime=lifetime, color=color, text=f'{class_name(names, int(label))} {float(score):.2f}')
        text.pose.position.x, text.pose.position.y = float(box[0]), float(box[1])
        text.pose.position.z = float(box[2] + box[5] / 2.0 + mp.text_size * 0.6)
        text.pose.orientation.w = 1.0
        text.scale.z = float(mp.text_size)
        out.markers.extend([wire, text])
    return out


def make_detection3d_array(header, boxes: np.ndarray, scores: np.ndarray, labels: np.ndarray, names):
    """-> vision_msgs/Detection3DArray (ImportError when vision_msgs is not installed)."""
    from vision_msgs.msg import BoundingBox3D, Detection3D, Detection3DArray, ObjectHypothesisWithPose
    out = Detection3DArray(header=header)
    for i, (box, score, label) in enumerate(zip(boxes, scores, labels)):
        bbox = BoundingBox3D()
        bbox.center.position.x, bbox.center.position.y, bbox.center.position.z = (float(v) for v in box[:3])
        q = yaw_quaternion(float(box[6]))
        bbox.center.orientation.x, bbox.center.orientation.y, bbox.center.orientation.z, \
            bbox.center.orientation.w = q
        bbox.size.x, bbox.size.y, bbox.size.z = (float(v) for v in box[3:6])
        hyp = ObjectHypothesisWithPose()
        hyp.hypothesis.class_id = class_name(names, int(label))
        hyp.hypothesis.score = float(score)
        hyp.pose.pose = bbox.center
        out.detections.append(Detection3D(header=header, results=[hyp], bbox=bbox, id=str(i)))
    return out


class DetectorNode(DownstreamNode):
    """3D object detection of each cloud (see module docstring)."""

    NODE_NAME = 'detector'
    CONFIG = DetectorConfig
    TASKS = ('det',)
    DEFAULT_CHECKPOINT = DET

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        from visualization_msgs.msg import MarkerArray
        self._pub_markers = self.create_publisher(MarkerArray, '~/detections', self.out_qos)
        self._pub_det3d = None
        if self.cfg.publish_vision_msgs:
            try:
                from vision_msgs.msg import Detection3DArray
                self._pub_det3d = self.create_publisher(Detection3DArray, '~/detections3d', self.out_qos)
            except ImportError:
                self.get_logger().info('vision_msgs not importable: publishing ~/detections (MarkerArray) only')
        self.last_detections = 0

    def publish_result(self, frame: CloudFrame, pred) -> None:
        from ros_ncal.ros.conversions import make_header
        keep = np.asarray(pred.scores) >= self.cfg.min_score
        boxes = np.asarray(pred.boxes, np.float64)[keep]
        scores, labels = np.asarray(pred.scores)[keep], np.asarray(pred.box_labels)[keep]
        header = make_header(frame.frame_id, frame.stamp_ns)
        names = self.predictor.class_names
        self._pub_markers.publish(make_marker_array(header, boxes, scores, labels, names, self.cfg.markers))
        if self._pub_det3d is not None:
            self._pub_det3d.publish(make_detection3d_array(header, boxes, scores, labels, names))
        with self._lock:
            self.last_detections = int(len(boxes))

    def extra_status(self) -> dict:
        with self._lock:
            return {'last_detections': self.last_detections, 'vision_msgs': self._pub_det3d is not None}


def main(args=None) -> int:
    return spin_node_main(DetectorNode, args)


if __name__ == '__main__':
    raise SystemExit(main())
