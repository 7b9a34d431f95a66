"""Plain-venv runner: start a suite's nodes in one process on a MultiThreadedExecutor.

Each node gets exactly the ``--ros-args`` that ``ros2 launch`` would give it (node name,
the same YAML params files, remaps, launch-argument parameters), built by
:func:`ros_ncal.runner.suite.resolve_invocations`. Node classes are imported lazily; a
missing one raises :class:`NodeMissingError` naming the node and module (or is skipped and
reported with ``skip_missing``). rclpy is imported inside the functions that start nodes, as everywhere
in ``ros_ncal.runner``.
"""
from __future__ import annotations

import importlib
import threading
from dataclasses import dataclass, field

from ros_ncal.runner.suite import NodeInvocation, NodeSpec


class NodeMissingError(ImportError):
    """A suite references a node module or class that is not importable (not written yet?)."""

    def __init__(self, message: str, node_name: str = ''):
        super().__init__(message)
        self.node_name = node_name


def load_node_class(spec: NodeSpec):
    try:
        module = importlib.import_module(spec.module)
    except ModuleNotFoundError as exc:
        raise NodeMissingError(f'node {spec.name!r}: module {spec.module} is not available ({exc})',
                               spec.name) from exc
    try:
        return getattr(module, spec.class_name)
    except AttributeError:
        raise NodeMissingError(f'node {spec.name!r}: module {spec.module} has no class {spec.class_name}',
                               spec.name) from None


@dataclass
class RunnerReport:
    started: list[str] = field(default_factory=list)
    missing: dict[str, str] = field(default_factory=dict)


class SuiteRunner:
    """``with SuiteRunner(invocations) as r: ...`` starts the nodes and spins them in a thread.

    context: an rclpy Context already initialized (None: a new one is created and shut down here).
    """

    def __init__(self, invocations: list[NodeInvocation], context=None, skip_missing: bool = False,
                 num_threads: int = 4):
        self.invocations = invocations
        self.skip_missing = skip_missing
        self.num_threads = num_threads
        self._own_context = context is None
        self.context = context
        self.nodes: list = []
        self.executor = None
        self._thread: threading.Thread | None = None
        self.report = RunnerReport()

    def start(self) -> 'SuiteRunner':
        import rclpy
        from rclpy.executors import MultiThreadedExecutor
        classes = []
        for inv in self.invocations:
            try:
                cls = load_node_class(inv.spec)
                inv.check_files()
                classes.append((inv, cls))
            except NodeMissingError as exc:
                self.report.missing[inv.spec.name] = str(exc)
                if not self.skip_missing:
                    raise
        if self._own_context:
            from rclpy.signals import SignalHandlerOptions
            self.context = rclpy.Context()
            # signals are the owner's business (ncal run: ros_ncal.ros.lifecycle.InterruptWatcher)
            rclpy.init(args=["ncal"], context=self.context, signal_handler_options=SignalHandlerOptions.NO)
        self.executor = MultiThreadedExecutor(num_threads=self.num_threads, context=self.context)
        try:
            for inv, cls in classes:
                node = cls(context=self.context, cli_args=inv.ros_args())
                self.nodes.append(node)
                self.executor.add_node(node)
                self.report.started.append(node.get_fully_qualified_name())
        except Exception:
            self.stop()
            raise
        return self

    def add_node(self, node) -> None:
        """Spin an extra node (e.g. a listener) on the same executor."""
        self.executor.add_node(node)
        self.nodes.append(node)

    def spin_in_thread(self) -> None:
        self._thread = threading.Thread(target=self._spin, name='ncal-suite-executor', daemon=True)
        self._thread.start()

    def _spin(self) -> None:
        from rclpy.executors import ExternalShutdownException
        try:
            self.executor.spin()
        except ExternalShutdownException:
            pass

    def spin(self) -> None:
        """Spin in the calling thread until shutdown / Ctrl-C."""
        self._spin()

    def stop(self) -> None:
        """Executor down and its thread joined first, then each node's ``close()`` (workers, open datasets)
        and ``destroy_node()``, then the context."""
        import rclpy
        if self.executor is not None:
            self.executor.shutdown(timeout_sec=2.0)
        if self._thread is not None:
            self._thread.join(timeout=5.0)
            self._thread = None
        for node in self.nodes:
            close = getattr(node, 'close', None)
            try:
                if close is not None:
                    close()
            except Exception:  # noqa: BLE001 - best effort teardown
                pass
            try:
                node.destroy_node()
            except Exception:  # noqa: BLE001 - best effort teardown
                pass
        self.nodes = []
        if self._own_context and self.context is not None and self.context.ok():
            rclpy.shutdown(context=self.context)

    def __enter__(self) -> 'SuiteRunner':
        self.start()
        self.spin_in_thread()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


class ProcessSuite:
    """Start a suite's nodes the way ``ros2 launch`` does: one process per node (``python -m MODULE``
    with the invocation's ``--ros-args``), so the nodes do not share a GIL with each other or with the
    caller (a player publishing 10 Hz of 2 MB clouds in the same process starves a calibration worker).

    The environment is the caller's (the safe ROS settings and domain id it applied). :meth:`stop` sends
    SIGINT, as Ctrl-C under launch would, and kills whatever has not exited within ``stop_timeout_s``;
    ``returncodes`` keeps each node's exit status.
    """

    def __init__(self, invocations: list[NodeInvocation], log_dir=None, stop_timeout_s: float = 30.0):
        self.invocations = invocations
        self.log_dir = log_dir
        self.stop_timeout_s = stop_timeout_s
        self.procs: dict = {}
        self.returncodes: dict[str, int] = {}
        self.report = RunnerReport()

    def start(self) -> 'ProcessSuite':
        import os
        import subprocess
        import sys
        from pathlib import Path
        for inv in self.invocations:
            load_node_class(inv.spec)          # fail here, with the node's name, not in a child
            inv.check_files()
        for inv in self.invocations:
            out = None
            if self.log_dir is not None:
                Path(self.log_dir).mkdir(parents=True, exist_ok=True)
                out = open(Path(self.log_dir) / f'{inv.spec.name}.log', 'w')
            cmd = [sys.executable, '-m', inv.spec.module, *inv.ros_args()]
            self.procs[inv.spec.name] = (subprocess.Popen(cmd, env=dict(os.environ), stdout=out,
                                                          stderr=subprocess.STDOUT if out else None), out)
            self.report.started.append('/' + inv.spec.name)
        return self

    def alive(self) -> dict[str, bool]:
        return {name: p.poll() is None for name, (p, _) in self.procs.items()}

    def stop(self) -> dict[str, int]:
        import signal
        import subprocess
        for p, _ in self.procs.values():
            if p.poll() is None:
                p.send_signal(signal.SIGINT)
        for name, (p, out) in self.procs.items():
            try:
                self.returncodes[name] = p.wait(timeout=self.stop_timeout_s)
            except subprocess.TimeoutExpired:
                p.kill()
                self.returncodes[name] = p.wait()
            if out is not None:
                out.close()
        self.procs = {}
        return self.returncodes

    def __enter__(self) -> 'ProcessSuite':
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
