"""Small numpy visualizations (no ROS, no matplotlib needed)."""
from .colors import depth_colors, draw_points, turbo_ramp  # noqa: F401
from .projection_overlay import draw_projection_overlay  # noqa: F401
