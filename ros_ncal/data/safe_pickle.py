"""Read pickles that hold plain data only: a pickle never gets to run code here.

``pickle.load`` imports and calls whatever a file names (``os.system``, ``builtins.exec``, ...), so a
crafted info file would run code before any check on its content. :func:`safe_load` uses an unpickler
whose ``find_class`` admits only what plain data needs:

* numpy arrays and scalars (the reconstruction helpers of ``numpy.core`` / ``numpy._core``,
  ``numpy.ndarray``, ``numpy.dtype`` and the dtype classes of numpy >= 1.25);
* ``collections.OrderedDict``, ``builtins.set / frozenset / bytearray / complex`` and ``_codecs.encode``
  (how protocols 0-2 spell sets and bytes); dicts, lists, tuples, str, bytes, int, float, bool, None are
  pickle opcodes and need no lookup.

Anything else (functions, classes of other libraries, ``copyreg._reconstructor`` for arbitrary objects)
raises :class:`UnsafePickleError` naming the file and the refused global, before it is imported or called.
No torch, no ROS.
"""
from __future__ import annotations

import _compat_pickle
import io
import pickle
from pathlib import Path
from typing import Any, BinaryIO

# (module, name) pairs a plain-data pickle may reference; numpy moved its core to numpy._core in 2.0.
_NUMPY_CORE = ('numpy.core.multiarray', 'numpy._core.multiarray', 'numpy.core.numeric', 'numpy._core.numeric')
ALLOWED_GLOBALS: frozenset[tuple[str, str]] = frozenset(
    [(m, n) for m in _NUMPY_CORE for n in ('_reconstruct', 'scalar', '_frombuffer')]
    + [('numpy', 'ndarray'), ('numpy', 'dtype'), ('collections', 'OrderedDict')]
    # protocol 0-2 spell bytes as _codecs.encode(str, 'latin1') and sets as builtins.set(list)
    + [('_codecs', 'encode')] + [('builtins', n) for n in ('set', 'frozenset', 'bytes', 'bytearray', 'complex')]
)
# numpy >= 1.25 pickles dtypes as numpy.dtypes.Float32DType etc. (classes with no behaviour on unpickling)
_NUMPY_DTYPE_MODULE = 'numpy.dtypes'


class UnsafePickleError(ValueError):
    """A pickle references something other than plain data (numpy arrays, dicts, lists, tuples, scalars,
    strings); it was refused before anything it names was imported or called."""


class _PlainDataUnpickler(pickle.Unpickler):
    def __init__(self, f: BinaryIO, source: str):
        super().__init__(f)
        self._source = source

    def find_class(self, module: str, name: str) -> Any:
        # protocol < 3 names Python 2 modules (__builtin__.set): judge the Python 3 name they map to
        if (module, name) in _compat_pickle.NAME_MAPPING:
            module, name = _compat_pickle.NAME_MAPPING[(module, name)]
        elif module in _compat_pickle.IMPORT_MAPPING:
            module = _compat_pickle.IMPORT_MAPPING[module]
        if (module, name) in ALLOWED_GLOBALS or (module == _NUMPY_DTYPE_MODULE and name.endswith('DType')
                                                  and name.isidentifier()):
            return super().find_class(module, name)
        raise UnsafePickleError(
            f'{self._source}: refused to load: the pickle references {module}.{name}, which is not plain data '
            '(only numpy arrays, dicts, lists, tuples, scalars and strings are accepted); a pickle that names '
            'code can run it')


def safe_loads(data: bytes, source: str = '<bytes>') -> Any:
    """Unpickle ``data`` with the plain-data rules; ``source`` names it in errors."""
    return _load(io.BytesIO(data), source)


def safe_load(path: str | Path) -> Any:
    """Unpickle the file at ``path`` with the plain-data rules.

    Raises UnsafePickleError (a ValueError) for a disallowed global, ValueError for a truncated or corrupt
    pickle (both name the file), OSError when the file cannot be read.
    """
    path = Path(path)
    with open(path, 'rb') as f:
        return _load(f, str(path))


def _load(f: BinaryIO, source: str) -> Any:
    try:
        return _PlainDataUnpickler(f, source).load()
    except UnsafePickleError:
        raise
    except (pickle.UnpicklingError, EOFError, AttributeError, ImportError, IndexError, KeyError, TypeError,
            ValueError, UnicodeDecodeError, MemoryError) as exc:
        raise ValueError(f'{source}: not a readable pickle ({type(exc).__name__}: {exc})') from exc
