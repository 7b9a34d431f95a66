"""Node suites: one description (suite.py) for ros2 launch (launch_builder.py) and the plain-venv runner
(suite_runner.py: rclpy is imported inside its functions)."""
from .suite import LAUNCH_ARGS, NODES, SUITES, LaunchArg, NodeInvocation, NodeSpec, resolve_invocations, suite_specs  # noqa: F401,E501
