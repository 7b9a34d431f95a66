"""Typed configuration from YAML: dataclasses built from nested mappings, deep merge, base-file inheritance.

One set of rules for every library config (NCLR, synthetic world, fine-tuning, calibration, fusion, demo):

* a missing key keeps the dataclass default; an unknown key raises ``ValueError`` naming the path and the
  known keys (a typo must not pass silently);
* a field whose default is a dataclass is built recursively from a mapping;
* numbers: an ``int`` field takes an integer (or an integral float), a ``float`` field any number; a
  ``bool`` field takes only ``true``/``false``; anything else for a numeric or boolean field raises;
* a tuple field takes a list (``exact_tuple_length``: of the default's length, elements converted to the
  default's element types);
* a dict field is replaced, or (``merge_dict_defaults``) laid over its default;
* other fields (str, list, optional ``None`` defaults) take the value as given.

Node parameters (``param``, ``param_kind``, ``coerce_param``, at the end) follow ROS's parameter types instead:
see the section there.

No ROS, no torch: importable everywhere.
"""
from __future__ import annotations

import math
import typing
from dataclasses import MISSING, Field, asdict, field, fields, is_dataclass
from pathlib import Path
from typing import Any, ClassVar, TypeVar

T = TypeVar('T')

MAX_BASE_DEPTH = 8


def deep_merge(base: dict, update: dict) -> dict:
    """A copy of ``base`` with ``update`` laid over it; nested mappings merge, everything else is replaced."""
    out = dict(base)
    for k, v in update.items():
        out[k] = deep_merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def _number(default: Any, value: Any, where: str) -> Any:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f'{where}: expected a number, got {value!r}')
    if isinstance(default, int):
        if isinstance(value, float) and not value.is_integer():
            raise ValueError(f'{where}: expected an integer, got {value!r}')
        return int(value)
    return float(value)


def _field_value(default: Any, value: Any, where: str, exact_tuple_length: bool, merge_dict_defaults: bool) -> Any:
    if is_dataclass(default) and not isinstance(default, type):
        return dataclass_from_dict(type(default), value, where, exact_tuple_length=exact_tuple_length,
                                   merge_dict_defaults=merge_dict_defaults)
    if isinstance(default, bool):
        if not isinstance(value, bool):
            raise ValueError(f'{where}: expected true/false, got {value!r}')
        return value
    if isinstance(default, (int, float)):
        return _number(default, value, where)
    if isinstance(default, tuple) and value is not None:
        if not isinstance(value, (list, tuple)):
            raise ValueError(f'{where}: expected a list, got {value!r}')
        if exact_tuple_length:
            if len(value) != len(default):
                raise ValueError(f'{where}: expected a list of {len(default)} values, got {value!r}')
            return tuple(_number(d, v, where) if isinstance(d, (int, float)) and not isinstance(d, bool) else v
                         for d, v in zip(default, value))
        return tuple(value)
    if isinstance(default, dict) and isinstance(value, dict) and merge_dict_defaults:
        return {**default, **value}
    return value


def dataclass_from_dict(cls: type[T], data: dict | None, where: str, *, exact_tuple_length: bool = False,
                        merge_dict_defaults: bool = False) -> T:
    """``cls`` (a dataclass whose fields all have defaults) from a mapping, by the module's rules.

    where: the config path used in error messages (e.g. 'config/synthetic.yaml: lidar').
    """
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ValueError(f'{where}: expected a mapping, got {type(data).__name__}')
    spec = {f.name: f for f in fields(cls)}
    unknown = sorted(set(data) - set(spec))
    if unknown:
        raise ValueError(f'{where}: unknown key(s) {unknown}; known: {sorted(spec)}')
    missing = sorted(n for n, f in spec.items() if n not in data and f.default is MISSING
                     and f.default_factory is MISSING)
    if missing:
        raise ValueError(f'{where}: missing required key(s) {missing}')
    kwargs = {k: _field_value(_default_of(spec[k]), v, f'{where}.{k}', exact_tuple_length, merge_dict_defaults)
              for k, v in data.items()}
    return cls(**kwargs)


def _default_of(f: Field) -> Any:
    """A field's default; for a required field, a stand-in of its annotated scalar type (so numbers and
    booleans are still checked), else the MISSING marker (value taken as given)."""
    if f.default is not MISSING:
        return f.default
    if f.default_factory is not MISSING:
        return f.default_factory()
    return {'float': 0.0, float: 0.0, 'int': 0, int: 0, 'bool': False, bool: False}.get(f.type, MISSING)


def dataclass_list(cls: type[T], items: list | None, where: str) -> list[T]:
    """A list field of dataclasses (e.g. search levels): each item a ``cls`` already or a mapping for it."""
    if items is not None and not isinstance(items, (list, tuple)):
        raise ValueError(f'{where}: expected a list, got {type(items).__name__}')
    return [x if isinstance(x, cls) else dataclass_from_dict(cls, x, f'{where}[{i}]')
            for i, x in enumerate(items or [])]


def yaml_error_text(exc: Exception) -> str:
    """One line for a PyYAML error: the problem and where (line, column; 1-based)."""
    problem = getattr(exc, 'problem', None)
    mark = getattr(exc, 'problem_mark', None)
    if problem and mark is not None:
        return f'{problem} at line {mark.line + 1}, column {mark.column + 1}'
    return ' '.join(str(exc).split())


def read_yaml_mapping(path: str | Path) -> dict:
    """The top-level mapping of a YAML file ({} for an empty file); ValueError when it is not a mapping."""
    import yaml
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:     # its message says '<unicode string>': name the file
        raise ValueError(f'{path}: not valid YAML: {yaml_error_text(exc)}') from exc
    if not isinstance(data, dict):
        raise ValueError(f'{path}: expected a mapping at the top level, got {type(data).__name__}')
    return data


def read_yaml_section(path: str | Path, section: str | None) -> dict:
    """``section`` of a YAML file ({} when absent), or the whole mapping when ``section`` is falsy."""
    data = read_yaml_mapping(path)
    if not section:
        return data
    value = data.get(section) or {}
    if not isinstance(value, dict):
        raise ValueError(f'{path}: section {section!r} must be a mapping, got {type(value).__name__}')
    return value


def load_yaml_with_base(path: str | Path, base_key: str = '_base_', _depth: int = 0) -> dict:
    """A YAML mapping with inheritance: ``base_key: other.yaml`` (relative to the file, or absolute) is read
    first (recursively) and this file is deep-merged over it."""
    path = Path(path)
    if _depth > MAX_BASE_DEPTH:
        raise ValueError(f'{path}: {base_key} chain too deep (a cycle?)')
    if not path.is_file():
        raise FileNotFoundError(f'config not found: {path}')
    data = read_yaml_mapping(path)
    base = data.pop(base_key, None)
    if base:
        data = deep_merge(load_yaml_with_base(path.parent / base, base_key, _depth + 1), data)
    return data


class SectionConfig:
    """Mixin for a dataclass config that lives in one section of a YAML file (``calib_eval.yaml``'s
    ``evaluation``, ``classical``, ``nclr``, ``fusion``): ``from_dict`` / ``from_yaml`` by the module's rules.

    Subclasses set ``SECTION`` (default YAML section) and ``CONFIG_NAME`` (for error messages), may
    override :meth:`_prepare` (build list/dict-of-dataclass fields first) and :meth:`validate`.
    """

    SECTION: ClassVar[str] = ''
    CONFIG_NAME: ClassVar[str] = 'config'

    @classmethod
    def _prepare(cls, d: dict) -> dict:
        return d

    @classmethod
    def from_dict(cls, d: dict | None):
        """Missing keys keep the defaults; unknown keys or wrong types raise ValueError; then validate()."""
        cfg = dataclass_from_dict(cls, cls._prepare(dict(d or {})), cls.CONFIG_NAME)
        cfg.validate()
        return cfg

    @classmethod
    def from_yaml(cls, path: str | Path, section: str | None = None):
        """The ``section`` (default ``SECTION``) of a YAML file; a missing section gives the defaults.
        Errors (unknown key, wrong type, invalid value) name the file."""
        try:
            return cls.from_dict(read_yaml_section(path, section or cls.SECTION))
        except ValueError as exc:
            if str(path) in str(exc):
                raise
            raise ValueError(f'{path}: {exc}') from exc

    def validate(self) -> None:
        """Raise ValueError for inconsistent settings (override)."""

    def to_dict(self) -> dict[str, Any]:
        """Plain nested dict (what from_dict reads back)."""
        return asdict(self)


def parse_set_options(items) -> dict:
    """``--set`` overrides: ``['optim.steps=50', 'data.max_points=5000']`` -> nested dict with YAML-parsed
    values (``true`` -> bool, ``[1, 2]`` -> list, ``''`` -> None). Raises ValueError for an item without ``=``."""
    import yaml
    out: dict = {}
    for item in items or []:
        if '=' not in item:
            raise ValueError(f'--set expects key.path=value, got {item!r}')
        key, value = item.split('=', 1)
        node = out
        parts = key.strip().split('.')
        for p in parts[:-1]:
            node = node.setdefault(p, {})
        node[parts[-1]] = yaml.safe_load(value)
    return out


def to_jsonable(x: Any) -> Any:
    """Plain JSON types from nested dicts / lists / tuples / numpy scalars and arrays / torch tensors (anything
    with ``tolist``); non-finite floats become None (strict JSON has no NaN)."""
    import numpy as np
    if isinstance(x, dict):
        return {str(k): to_jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [to_jsonable(v) for v in x]
    if isinstance(x, (bool, np.bool_)):
        return bool(x)
    if isinstance(x, np.integer):
        return int(x)
    if isinstance(x, (float, np.floating)):
        v = float(x)
        return v if math.isfinite(v) else None
    if hasattr(x, 'tolist') and not isinstance(x, (str, bytes)):
        return to_jsonable(x.tolist())
    return x


# ----------------------------------------------------------------------------- node parameters
# A node declares one ROS parameter per field of a config dataclass (``ros_ncal.nodes._common.declare_config``,
# nested dataclasses give dotted names). What a field allows (``param``: description, choices, range), which
# parameter type it is (``param_kind``) and how a parameter value becomes the field's type (``coerce_param``)
# is decided here, without ROS. Library configs read by the nodes (``health.HealthConfig``) use ``param`` too.


def param(default: Any = MISSING, help: str = '', *, choices: tuple | None = None,  # noqa: A002
          min: float | None = None, max: float | None = None, default_factory=MISSING):  # noqa: A002
    """A dataclass field that is also a node parameter (description, choices, inclusive range)."""
    meta = {'help': help, 'choices': choices, 'min': min, 'max': max}
    if default_factory is not MISSING:
        return field(default_factory=default_factory, metadata=meta)
    return field(default=default, metadata=meta)


def param_kind(tp: Any) -> str:
    """'bool' | 'int' | 'float' | 'str' | 'float_list' | 'str_list' | 'config' for a field type."""
    if is_dataclass(tp):
        return 'config'
    origin = typing.get_origin(tp)
    if origin in (list, tuple):
        args = typing.get_args(tp)
        inner = args[0] if args else float
        return 'str_list' if inner is str else 'float_list'
    for kind, py in (('bool', bool), ('int', int), ('float', float), ('str', str)):
        if tp is py:
            return kind
    raise TypeError(f'unsupported parameter type {tp!r}')


def coerce_param(name: str, kind: str, value: Any) -> Any:
    """A parameter value as the field's Python type; ValueError naming the parameter otherwise."""
    try:
        if kind == 'bool':
            if isinstance(value, bool):
                return value
            raise TypeError
        if kind == 'int':
            if isinstance(value, bool) or not float(value).is_integer():
                raise TypeError
            return int(value)
        if kind == 'float':
            if isinstance(value, bool):
                raise TypeError
            v = float(value)
            if not math.isfinite(v):
                raise TypeError
            return v
        if kind == 'str':
            if not isinstance(value, str):
                raise TypeError
            return value
        if kind == 'float_list':
            if value is None:
                return []
            out = [float(v) for v in value]
            if not all(math.isfinite(v) for v in out):
                raise TypeError
            return out
        if kind == 'str_list':
            return [] if value is None else [str(v) for v in value]
    except (TypeError, ValueError):
        pass
    raise ValueError(f'parameter {name!r}: expected {kind.replace("_", " of ")}, got {value!r}')
