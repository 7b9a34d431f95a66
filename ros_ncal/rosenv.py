"""Network safety for every rclpy process this project starts (ROS_ENV.md).

Call :func:`apply_safe_ros_env` before ``import rclpy``. It keeps DDS discovery on this
machine (localhost range, shared-memory transport only) and picks a ROS domain id.
Values the user already exported are kept, except that the discovery range and the
transport are forced unless ``NCAL_ALLOW_NETWORK=1`` is set (for real robots).
No rclpy import here: the library layer may call it.
"""
from __future__ import annotations

import os

SAFE_DEFAULTS = {
    'RMW_IMPLEMENTATION': 'rmw_fastrtps_cpp',
    'ROS_AUTOMATIC_DISCOVERY_RANGE': 'LOCALHOST',
    'FASTDDS_BUILTIN_TRANSPORTS': 'SHM',
}


def default_domain_id() -> int:
    """A domain id in 1..100 derived from the process id, so parallel runs do not meet."""
    return 1 + (os.getpid() % 100)


def apply_safe_ros_env(domain_id: int | None = None, environ: dict | None = None) -> dict:
    """Set the ROS network-safety variables in ``environ`` (default ``os.environ``).

    domain_id: explicit ROS_DOMAIN_ID; when None, an exported one is kept, else one is derived.
    Returns the dict of variables now in force.
    """
    env = os.environ if environ is None else environ
    allow_network = env.get('NCAL_ALLOW_NETWORK') == '1'
    for key, value in SAFE_DEFAULTS.items():
        if key == 'RMW_IMPLEMENTATION' or not allow_network:
            if key == 'RMW_IMPLEMENTATION':
                env.setdefault(key, value)
            else:
                env[key] = value
    if domain_id is not None:
        env['ROS_DOMAIN_ID'] = str(int(domain_id))
    elif 'ROS_DOMAIN_ID' not in env:
        env['ROS_DOMAIN_ID'] = str(default_domain_id())
    return {k: env[k] for k in (*SAFE_DEFAULTS, 'ROS_DOMAIN_ID') if k in env}
