"""Segmenter node: PointCloud2 in, the same points with a semantic ``label`` and an ``rgb`` colour out.

Subscribes ``points`` (sensor_msgs/PointCloud2, sensor-data QoS); runs a fine-tuned segmentation (or
panoptic) model (:class:`ros_ncal.models.inference.DownstreamPredictor`, ``checkpoint`` parameter, default
the packaged ``ros_ncal/assets/seg.pt``) in a worker thread; publishes ``~/labeled_points``: the input's
finite points (NaN/inf rows removed) with fields x, y, z, intensity (float32), ``label`` (uint16,
SemanticKITTI training id 0..19, 0 = unlabeled / not processed), ``rgb`` (float32 packed 0x00RRGGBB from
the SemanticKITTI palette, for RViz / Foxglove) and, for a panoptic model, ``instance`` (uint16), with
the input's header (frame and stamp). Reporting: ``~/debug/processing_time_ms``, ``~/status``,
``/diagnostics`` (see :mod:`._downstream`).
"""
from __future__ import annotations

if __name__ == '__main__':   # a process of its own: one OpenBLAS thread, quiet Ctrl-C while torch / rclpy load
    from ros_ncal.ros.lifecycle import prepare_node_process
    prepare_node_process()

from dataclasses import dataclass

import numpy as np

from ros_ncal.assets import SEG
from ros_ncal.config_io import param
from ros_ncal.data.labels import SEMANTICKITTI_PALETTE, class_colors
from ros_ncal.msgcodec.pointcloud import pack_rgb_float

from ._common import spin_node_main
from ._downstream import CloudFrame, DownstreamConfig, DownstreamNode


@dataclass
class SegmenterConfig(DownstreamConfig):
    """Segmenter parameters (``config/segmenter.yaml``)."""
    checkpoint: str = param('', f"fine-tuned seg / panoptic checkpoint ('' = the packaged {SEG.name})")


def labeled_cloud_extras(labels: np.ndarray, instances: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """labels: (N,) int class ids -> PointCloud2 extra fields: ``label`` (N,) uint16, ``rgb`` (N,) float32 packed
    from the SemanticKITTI palette (ids outside it wrap around); ``instance`` (N,) uint16 when given."""
    labels = np.asarray(labels, dtype=np.int64)
    if labels.size and (labels.min() < 0 or labels.max() > np.iinfo(np.uint16).max):
        raise ValueError(f'labels must fit uint16, got range [{labels.min()}, {labels.max()}]')
    extras = {'label': labels.astype(np.uint16), 'rgb': pack_rgb_float(class_colors(labels, SEMANTICKITTI_PALETTE))}
    if instances is not None:
        extras['instance'] = np.clip(np.asarray(instances, np.int64), 0, np.iinfo(np.uint16).max).astype(np.uint16)
    return extras


class SegmenterNode(DownstreamNode):
    """Semantic segmentation of each cloud (see module docstring)."""

    NODE_NAME = 'segmenter'
    CONFIG = SegmenterConfig
    TASKS = ('seg', 'panoptic')
    DEFAULT_CHECKPOINT = SEG

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        from sensor_msgs.msg import PointCloud2
        self._pub_points = self.create_publisher(PointCloud2, '~/labeled_points', self.out_qos)
        self.last_class_counts: dict[str, int] = {}

    def publish_result(self, frame: CloudFrame, pred) -> None:
        from ros_ncal.ros.conversions import points_to_cloud_msg
        extras = labeled_cloud_extras(pred.labels, pred.instances)
        self._pub_points.publish(points_to_cloud_msg(frame.points, frame.frame_id, frame.stamp_ns, extras))
        names = self.predictor.class_names or []
        ids, counts = np.unique(pred.labels, return_counts=True)
        with self._lock:
            self.last_class_counts = {(names[i] if i < len(names) else str(i)): int(c) for i, c in zip(ids, counts)}

    def extra_status(self) -> dict:
        with self._lock:
            return {'last_class_counts': dict(self.last_class_counts)}


def main(args=None) -> int:
    return spin_node_main(SegmenterNode, args)


if __name__ == '__main__':
    raise SystemExit(main())
