"""Small C++ kernels compiled at first use and called through ctypes (no PyTorch headers, ~1 s with g++).

One home for the build / cache / load logic used by the sparse engine's kernels
(``ros_ncal.models.sparse.engines.native``) and the message codecs' kernels (``ros_ncal.msgcodec._native``).
Libraries are built with ``g++ -O3 -march=native`` into ``$NCAL_NATIVE_BUILD_DIR`` (default
``~/.cache/ros_ncal/native``), one file per (source, flags, compiler, CPU) hash, renamed into place
atomically (safe with concurrent processes). ``python -m ros_ncal.nativelib`` builds every registered
library ahead of time (what a set-up script should run, so that no process compiles at first use).
When no compiler is found, the build fails, or ``NCAL_NATIVE=0`` is set, ``load()`` returns None and each
user keeps its pure numpy / PyTorch path.
"""
from __future__ import annotations

import ctypes
import hashlib
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import threading
from pathlib import Path
from typing import Callable, Dict, List, Optional

REGISTRY: Dict[str, 'NativeLibrary'] = {}


def compiler() -> Optional[str]:
    return os.environ.get('CXX') or shutil.which('g++') or shutil.which('c++')


def build_dir() -> Path:
    env = os.environ.get('NCAL_NATIVE_BUILD_DIR')
    return Path(env) if env else Path.home() / '.cache' / 'ros_ncal' / 'native'


def _cpu_tag() -> str:
    """Host CPU identity (libraries are built with -march=native)."""
    info = platform.machine()
    try:
        with open('/proc/cpuinfo') as fh:
            for line in fh:
                if line.startswith(('model name', 'flags')):
                    info += line
                if line.startswith('flags'):
                    break
    except OSError:
        pass
    return info


class NativeLibrary:
    """source: C++ with extern "C" functions and ``int <name>_abi_version()``; setup(lib) sets argtypes."""

    def __init__(self, name: str, source: str, abi: int, setup: Callable[[ctypes.CDLL], None],
                 flags: Optional[List[str]] = None, disable_env: Optional[str] = None):
        self.name, self.source, self.abi, self.setup = name, source, abi, setup
        self.flags = flags or ['-O3', '-march=native', '-fPIC', '-shared', '-std=c++14']
        self.disable_env = disable_env
        self._lock = threading.Lock()
        self._lib: Optional[ctypes.CDLL] = None
        self._tried = False
        self.error: Optional[str] = None
        REGISTRY[name] = self

    def path(self, cxx: str) -> Path:
        key = hashlib.sha256('\0'.join([self.source, ' '.join(self.flags), cxx, _cpu_tag()]).encode()).hexdigest()
        return build_dir() / f'lib{self.name}_{key[:16]}.so'

    def build(self, verbose: bool = False) -> Path:
        """Compile into the cache unless already there; return the library path."""
        cxx = compiler()
        if cxx is None:
            raise RuntimeError('no C++ compiler (g++ / c++ / $CXX) found')
        path = self.path(cxx)
        if path.exists():
            return path
        path.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=path.parent) as tmp:
            src = Path(tmp) / f'{self.name}.cpp'
            src.write_text(self.source)
            out = Path(tmp) / path.name
            cmd = [cxx, *self.flags, str(src), '-o', str(out)]
            if verbose:
                print(' '.join(cmd), file=sys.stderr)
            res = subprocess.run(cmd, capture_output=True, text=True)
            if res.returncode != 0:
                raise RuntimeError(f'{self.name} failed to compile: {res.stderr.strip()[-2000:]}')
            os.replace(out, path)
        return path

    def load(self) -> Optional[ctypes.CDLL]:
        """The loaded library (built now if needed), or None with the reason in ``error``."""
        if self._tried:
            return self._lib
        with self._lock:
            if self._tried:
                return self._lib
            try:
                for env in ('NCAL_NATIVE', self.disable_env):
                    if env and os.environ.get(env, '1') == '0':
                        raise RuntimeError(f'disabled by {env}=0')
                lib = ctypes.CDLL(str(self.build()))
                if getattr(lib, f'{self.name}_abi_version')() != self.abi:
                    raise RuntimeError(f'{self.name}: stale library (ABI version mismatch)')
                self.setup(lib)
                self._lib = lib
            except (OSError, RuntimeError, AttributeError) as exc:
                self.error = str(exc)
                self._lib = None
            self._tried = True
            return self._lib


def build_all(verbose: bool = True) -> List[Path]:
    """Build every library the package registers (imports the modules that define them)."""
    import ros_ncal.models.sparse.engines.native  # noqa: F401
    import ros_ncal.msgcodec._native  # noqa: F401
    return [lib.build(verbose=verbose) for lib in REGISTRY.values()]


if __name__ == '__main__':
    for p in build_all():
        print(p)
