"""Model registry: ``@register('name')`` on a class or factory, ``build_model({'type': 'name', **kwargs})``."""
from __future__ import annotations

import copy
from typing import Any, Callable, Dict, Mapping

_REGISTRY: Dict[str, Callable[..., Any]] = {}


def register(name: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Decorator registering a model class / factory under ``name`` (unique)."""
    def deco(obj: Callable[..., Any]) -> Callable[..., Any]:
        if name in _REGISTRY and _REGISTRY[name] is not obj:
            raise ValueError(f'model type {name!r} is already registered to {_REGISTRY[name]!r}')
        _REGISTRY[name] = obj
        return obj
    return deco


def registered_models() -> Dict[str, Callable[..., Any]]:
    _ensure_builtin()
    return dict(_REGISTRY)


def build_model(cfg: Mapping[str, Any]):
    """cfg: {'type': registered name, **constructor kwargs} (e.g. a config/models/*.yaml) -> model."""
    _ensure_builtin()
    if not isinstance(cfg, Mapping) or 'type' not in cfg:
        raise ValueError(f"model config must be a mapping with a 'type' key, got {cfg!r}")
    kwargs = copy.deepcopy(dict(cfg))
    name = kwargs.pop('type')
    if name not in _REGISTRY:
        raise ValueError(f'unknown model type {name!r}; registered: {sorted(_REGISTRY)}')
    try:
        return _REGISTRY[name](**kwargs)
    except TypeError as exc:
        raise ValueError(f'bad arguments for model type {name!r}: {exc}') from exc


def load_model_config(path) -> Dict[str, Any]:
    """Read a model YAML (config/models/*.yaml): a mapping with 'type' (optionally under a 'model' key)."""
    import yaml
    with open(path) as f:
        cfg = yaml.safe_load(f)
    if isinstance(cfg, dict) and 'model' in cfg and isinstance(cfg['model'], dict):
        cfg = cfg['model']
    if not isinstance(cfg, dict) or 'type' not in cfg:
        raise ValueError(f"{path}: model config must be a mapping with a 'type' key")
    return cfg


def _ensure_builtin() -> None:
    """Import the project's model modules so their @register decorators run."""
    from . import minkunet, resnet  # noqa: F401
