"""ROS domain ids for the tools that start their own graph (``ncal demo``, the benchmarks, the tests).

It lives with the command line on purpose: nothing below it (library, runner, nodes) may pick a domain. A
node never picks one: unset means ROS's default, as for the drivers it listens to
(:func:`ros_ncal.rosenv.apply_safe_ros_env`). A tool that starts its own publishers and nodes and must not
meet a parallel run asks for an isolated id here and passes it on explicitly.
"""
from __future__ import annotations

import os


def isolated_domain_id(environ: dict | None = None) -> int:
    """An exported ROS_DOMAIN_ID when there is one, else an id in 1..100 derived from this process id."""
    env = os.environ if environ is None else environ
    if env.get('ROS_DOMAIN_ID'):
        return int(env['ROS_DOMAIN_ID'])
    return 1 + (os.getpid() % 100)
