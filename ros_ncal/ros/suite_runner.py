"""Plain-venv runner: start a suite's nodes in one process on a MultiThreadedExecutor.

Each node gets exactly the ``--ros-args`` that ``ros2 launch`` would give it (node name,
the same YAML params files, remaps, launch-argument parameters), built by
:func:`ros_ncal.runner.suite.resolve_invocations`. Node classes are imported lazily; a
missing one raises :class:`NodeMissingError` naming the node and module (or is skipped and
reported with ``skip_missing``).
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
