"""ros_ncal: self-supervised LiDAR learning and camera-LiDAR calibration by 2D-3D neural calibration."""
__version__ = "0.1.0"
