"""Node suites: one description (suite.py) for ros2 launch and the plain-venv runner."""
from .suite import LAUNCH_ARGS, NODES, SUITES, LaunchArg, NodeInvocation, NodeSpec, resolve_invocations, suite_specs  # noqa: F401,E501
