"""diagnostic_msgs/DiagnosticArray on /diagnostics for a node (rate, latency, drops)."""
from __future__ import annotations

from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue

from .time import ns_to_stamp

LEVELS = {'OK': DiagnosticStatus.OK, 'WARN': DiagnosticStatus.WARN, 'ERROR': DiagnosticStatus.ERROR,
          'STALE': DiagnosticStatus.STALE}


class DiagnosticsHelper:
    """Publishes one DiagnosticStatus named ``<node>: <name>`` per :meth:`publish` call."""

    def __init__(self, node, name: str, hardware_id: str = '', topic: str = '/diagnostics'):
        self._node = node
        self.name = f'{node.get_name()}: {name}'
        self.hardware_id = hardware_id
        self._pub = node.create_publisher(DiagnosticArray, topic, 10)

    def publish(self, level: str, message: str, values: dict | None = None) -> DiagnosticArray:
        """level: OK | WARN | ERROR | STALE; values: key -> value (stringified)."""
        if level not in LEVELS:
            raise ValueError(f'diagnostic level must be one of {sorted(LEVELS)}, got {level!r}')
        status = DiagnosticStatus(level=LEVELS[level], name=self.name, message=str(message),
                                  hardware_id=self.hardware_id,
                                  values=[KeyValue(key=str(k), value=_fmt(v)) for k, v in (values or {}).items()])
        msg = DiagnosticArray(status=[status])
        msg.header.stamp = ns_to_stamp(self._node.get_clock().now().nanoseconds)
        self._pub.publish(msg)
        return msg


def _fmt(v) -> str:
    return f'{v:.3f}' if isinstance(v, float) else str(v)
