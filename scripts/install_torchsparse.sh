#!/usr/bin/env bash
# Optional: build torchsparse v2.0.0 (CPU) from ../shared/vendor into the venv, for bench/bench_sparse.py's
# comparison rows (the project's sparse engine does not need it; docs/performance.md, section 3).
#   bash scripts/install_torchsparse.sh            # about 2.5 min on 2 idle cores
# Needs: the venv of scripts/setup.sh; Debian's libsparsehash-dev headers (downloaded with apt-get download
# and unpacked locally when not installed: no root needed); backports.cached_property from PyPI.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${NCAL_VENV:-$ROOT/.venv}"
VENDOR="${NCAL_VENDOR_DIR:-$ROOT/../shared/vendor}"
WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT
TARBALL="$(ls "$VENDOR"/torchsparse-*.tar.gz | head -1)"
INCLUDE=""
if [ ! -f /usr/include/google/dense_hash_map ] && [ ! -f /usr/include/sparsehash/dense_hash_map ]; then
  (cd "$WORK" && apt-get download libsparsehash-dev >/dev/null)
  dpkg -x "$WORK"/libsparsehash-dev_*.deb "$WORK/sh"
  INCLUDE="$WORK/sh/usr/include"
fi
"$VENV/bin/pip" install -q --no-deps backports.cached_property==1.0.2
mkdir -p "$WORK/src" && tar xzf "$TARBALL" -C "$WORK/src"
cd "$WORK/src/torchsparse"
FORCE_CUDA="${FORCE_CUDA:-0}" MAX_JOBS="${MAX_JOBS:-2}" CPLUS_INCLUDE_PATH="${INCLUDE}${CPLUS_INCLUDE_PATH:+:$CPLUS_INCLUDE_PATH}" \
  "$VENV/bin/pip" install --no-build-isolation --no-deps .
"$VENV/bin/python" -c "import torchsparse; print('torchsparse', torchsparse.__version__, 'installed')"
