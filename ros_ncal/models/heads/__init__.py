"""Downstream task heads on per-point backbone features: segmentation, BEV detection, panoptic."""
from .bev_det_head import BEVDetConfig, BEVDetHead  # noqa: F401
from .panoptic_head import PanopticHead, cluster_instances  # noqa: F401
from .seg_head import SegHead, inverse_sqrt_frequency_weights, seg_loss  # noqa: F401
