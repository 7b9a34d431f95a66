"""Generic conversion of deserialized ``rosbags`` messages into rclpy message objects.

Walks the rclpy class's ``get_fields_and_field_types()`` and copies values by field name,
recursing into nested messages and sequences; byte sequences are copied as one buffer.
"""
from __future__ import annotations

import importlib
from functools import lru_cache

import numpy as np


@lru_cache(maxsize=None)
def rclpy_message_class(msgtype: str):
    """'sensor_msgs/msg/PointCloud2' -> the rclpy class; ImportError names the missing package."""
    parts = msgtype.split('/')
    if len(parts) == 2:
        parts = [parts[0], 'msg', parts[1]]
    if len(parts) != 3:
        raise ValueError(f'not a ROS 2 message type name: {msgtype!r}')
    pkg, kind, name = parts
    try:
        module = importlib.import_module(f'{pkg}.{kind}')
    except ImportError as exc:
        raise ImportError(f'message package {pkg!r} for {msgtype} is not importable: {exc}') from exc
    try:
        return getattr(module, name)
    except AttributeError:
        raise ImportError(f'{pkg}.{kind} has no message {name!r} ({msgtype})') from None


_BYTE_TYPES = ('uint8', 'octet', 'byte', 'char')


def _convert_value(value, type_str: str):
    if type_str.startswith('sequence<') or type_str.endswith(']'):
        inner = type_str[len('sequence<'):-1] if type_str.startswith('sequence<') else type_str[:type_str.index('[')]
        inner = inner.split(',')[0].strip()
        if '/' in inner:
            return [to_rclpy(v, inner) for v in value]
        if inner in _BYTE_TYPES and type_str.startswith('sequence<'):
            # One buffer copy for image / cloud payloads.
            return np.asarray(value, dtype=np.uint8).tobytes()
        if isinstance(value, np.ndarray):
            return value if type_str.endswith(']') else value.tolist()
        return list(value)
    if '/' in type_str:
        return to_rclpy(value, type_str)
    return value


def to_rclpy(obj, msgtype: str):
    """A rosbags message object of ``msgtype`` -> the equivalent rclpy message object."""
    cls = rclpy_message_class(msgtype)
    out = cls()
    for name, type_str in cls.get_fields_and_field_types().items():
        setattr(out, name, _convert_value(getattr(obj, name), type_str))
    return out
