"""Small numpy visualizations (no ROS, no matplotlib needed)."""
from .projection_overlay import depth_colors, draw_projection_overlay  # noqa: F401
