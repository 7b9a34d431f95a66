#!/usr/bin/env bash
# One-command, idempotent set-up of the project venv (no ROS distro needed).
#   bash scripts/setup.sh            # CPU (default): torch==2.13.0 CPU build
#   NCAL_TORCH_CUDA=1 bash scripts/setup.sh   # CUDA machines: keep/installs a CUDA torch (see README)
# Env: NCAL_VENV (default <repo>/.venv), NCAL_PYTHON (default python3).
# A second run on a set-up machine only checks a stamp and returns in about a second.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${NCAL_VENV:-$ROOT/.venv}"
PY="${NCAL_PYTHON:-python3}"
STAMP="$VENV/.ros_ncal_setup_stamp"
log() { printf '[setup] %s\n' "$*" >&2; }

digest() {
  cat "$ROOT/requirements.txt" "$ROOT/requirements-build-msgs.txt" "$ROOT/requirements-optional.txt" "$ROOT/scripts/setup.sh" \
      "$ROOT/setup.py" "$ROOT/setup.cfg" "$ROOT/package.xml" \
      $(find "$ROOT/interfaces" -type f | sort) 2>/dev/null | sha256sum | cut -d' ' -f1
  echo "cuda=${NCAL_TORCH_CUDA:-0} optional=${NCAL_SKIP_OPTIONAL:-0}"
}
WANT="$(digest)"
if [[ -f "$STAMP" && "$(cat "$STAMP")" == "$WANT" && -x "$VENV/bin/python" ]]; then
  exit 0
fi

if [[ ! -x "$VENV/bin/python" ]]; then
  log "creating venv at $VENV"
  "$PY" -m venv "$VENV"
fi
PIP=("$VENV/bin/python" -m pip install --disable-pip-version-check -q)
REQ="$ROOT/requirements.txt"
if [[ "${NCAL_TORCH_CUDA:-0}" == "1" ]]; then
  # On a CUDA machine keep whatever CUDA torch the user installed (or let pip pick one).
  REQ="$(mktemp)"; sed -E 's/^torch==.*/torch/' "$ROOT/requirements.txt" > "$REQ"
fi
log "installing pinned dependencies (torch, ROS 2 Kilted wheels, rosbags, ...)"
"${PIP[@]}" -r "$REQ" 2> >(grep -v "is ignored: it is neither" >&2)
if [[ "${NCAL_SKIP_OPTIONAL:-0}" != "1" ]]; then
  log "installing optional engines (spconv; NCAL_SKIP_OPTIONAL=1 skips)"
  "${PIP[@]}" -r "$ROOT/requirements-optional.txt" 2> >(grep -v "is ignored: it is neither" >&2) \
    || log "optional engines could not be installed; their parity tests will be skipped"
fi
log "installing ros_ncal (editable)"
"${PIP[@]}" --no-deps --no-build-isolation -e "$ROOT"

# Interface packages that no registry ships: build them from the .msg files in interfaces/.
need=()
for pkg in tf2_msgs vision_msgs; do
  if ! "$VENV/bin/python" -c "import $pkg.msg" >/dev/null 2>&1; then need+=("$pkg"); fi
done
if (( ${#need[@]} )); then
  log "building ${need[*]} with the pip rosidl toolchain"
  "${PIP[@]}" -r "$ROOT/requirements-build-msgs.txt" 2> >(grep -v "is ignored: it is neither" >&2)
  # The wheels' cmake exports point at the wheel builder's Python; point them at this venv.
  "$VENV/bin/python" - "$VENV" <<'PYEOF'
import pathlib, sys, sysconfig, numpy
venv = pathlib.Path(sys.argv[1])
inc, npinc = sysconfig.get_paths()["include"], numpy.get_include()
for f in (venv / "share").rglob("*.cmake"):
    t = f.read_text(errors="ignore")
    n = t.replace("/opt/python/cp311-cp311/include/python3.11", inc)
    for old in ("/opt/python/cp311-cp311/lib/python3.11/site-packages/numpy/_core/include",
                "/opt/python/cp311-cp311/lib/python3.11/site-packages/numpy/core/include"):
        n = n.replace(old, npinc)
    if n != t:
        f.write_text(n)
PYEOF
  BUILD="$VENV/.interfaces_build"; mkdir -p "$BUILD"
  for pkg in "${need[@]}"; do
    rm -rf "$BUILD/$pkg"
    # Installed into the venv prefix itself: its lib/ is on the ROS wheels' LD_LIBRARY_PATH
    # bootstrap and its site-packages on sys.path, so every entry point finds the types.
    env CMAKE_PREFIX_PATH="$VENV" AMENT_PREFIX_PATH="$VENV" PATH="$VENV/bin:$PATH" \
      cmake -S "$ROOT/interfaces/$pkg" -B "$BUILD/$pkg" -DCMAKE_INSTALL_PREFIX="$VENV" \
        -DPython3_EXECUTABLE="$VENV/bin/python" -DBUILD_TESTING=OFF -DCMAKE_BUILD_TYPE=Release >"$BUILD.$pkg.log" 2>&1 \
      && env CMAKE_PREFIX_PATH="$VENV" AMENT_PREFIX_PATH="$VENV" PATH="$VENV/bin:$PATH" \
        cmake --build "$BUILD/$pkg" -j "$(nproc)" >>"$BUILD.$pkg.log" 2>&1 \
      && cmake --install "$BUILD/$pkg" >>"$BUILD.$pkg.log" 2>&1 \
      || { log "building $pkg failed; see $BUILD.$pkg.log"; tail -30 "$BUILD.$pkg.log" >&2; exit 1; }
    "$VENV/bin/python" -c "import $pkg.msg" || { log "$pkg built but does not import"; exit 1; }
  done
fi
digest > "$STAMP"
log "ready: $VENV"
