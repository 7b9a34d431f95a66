"""ros2 launch ros_ncal ncal.launch.py [calibrator:=true] [points_topic:=...] [checkpoint:=...] [rviz:=true]

The node list, parameter files and remaps come from ros_ncal/runner/suite.py, the same
description the plain-venv runner (``ncal run``) uses.
"""
from ros_ncal.runner.launch_builder import generate_suite_launch_description


def generate_launch_description():
    return generate_suite_launch_description('default')
