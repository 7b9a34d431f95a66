"""Sparse convolution engines behind one interface: ``get_engine(name)``.

'torch' (default, always available): CPU and CUDA; on CPU (float32 / float64) through native C++ kernels
built at first use (``native.py``: one OpenMP region per pass, no atomics, same result at any thread count),
elsewhere or without a compiler pure PyTorch.
'spconv' (optional, ``pip install spconv==2.3.8``; not a requirement): submanifold conv through spconv,
strided and transposed convs fall back to the torch engine. Imported lazily.
'torchsparse' (optional): not installable here; reported absent.
"""
from __future__ import annotations

from typing import Dict, List

ENGINE_NAMES = ('torch', 'spconv', 'torchsparse')
_INSTANCES: Dict[str, object] = {}


class EngineUnavailableError(ImportError):
    """The requested optional sparse-conv engine cannot be imported here."""


def get_engine(name: str = 'torch'):
    """Return the engine object for ``name`` (cached); raise EngineUnavailableError when absent."""
    if name not in ENGINE_NAMES:
        raise ValueError(f'unknown sparse engine {name!r}; choose one of {ENGINE_NAMES}')
    if name in _INSTANCES:
        return _INSTANCES[name]
    if name == 'torch':
        from .torch_engine import TorchEngine
        engine = TorchEngine()
    elif name == 'spconv':
        try:
            from .spconv_engine import SpconvEngine
        except ImportError as exc:
            raise EngineUnavailableError(f'sparse engine "spconv" is not installed ({exc}); '
                                         'pip install spconv==2.3.8 or use engine "torch"') from exc
        engine = SpconvEngine()
    else:
        try:
            import torchsparse  # noqa: F401
        except ImportError as exc:
            raise EngineUnavailableError(f'sparse engine "torchsparse" is not installed ({exc}); use engine "torch"') \
                from exc
        raise EngineUnavailableError('torchsparse is importable but no adapter is implemented; use engine "torch"')
    _INSTANCES[name] = engine
    return engine


def available_engines() -> List[str]:
    """Names of the engines that import on this machine."""
    names = []
    for name in ENGINE_NAMES:
        try:
            get_engine(name)
            names.append(name)
        except ImportError:
            pass
    return names
