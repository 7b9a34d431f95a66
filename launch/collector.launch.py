"""ros2 launch ros_ncal collector.launch.py: the collector node alone (parameters and remaps from ros_ncal/runner/suite.py)."""
from ros_ncal.runner.launch_builder import generate_suite_launch_description


def generate_launch_description():
    return generate_suite_launch_description(only=['collector'])
