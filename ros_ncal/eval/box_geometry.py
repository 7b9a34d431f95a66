"""Compatibility name: the box geometry lives in :mod:`ros_ncal.geometry.boxes` (below ``models`` and ``eval``)."""
from ros_ncal.geometry.boxes import (bev_corners, bev_intersection_areas, bev_iou, check_boxes, clip_polygon,  # noqa: F401
                                     iou_3d, points_in_boxes, polygon_area, rotated_nms)
