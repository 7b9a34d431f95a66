#!/usr/bin/env bash
# One-command, idempotent set-up of the project venv (no ROS distro needed).
#   bash scripts/setup.sh            # CPU (default): torch==2.13.0 CPU build
#   NCAL_TORCH_CUDA=1 bash scripts/setup.sh   # CUDA machines: keep/installs a CUDA torch (see README)
# Env: NCAL_VENV (default <repo>/.venv), NCAL_PYTHON (default python3), NCAL_VENDOR_DIR (default ../shared/vendor),
#      NCAL_CV_BRIDGE=1 (also build cv_bridge; see scripts/install_ros_vendor.sh).
# A second run on a set-up machine only checks a stamp and returns in about a second.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${NCAL_VENV:-$ROOT/.venv}"
PY="${NCAL_PYTHON:-python3}"
STAMP="$VENV/.ros_ncal_setup_stamp"
VENDOR="${NCAL_VENDOR_DIR:-$ROOT/../shared/vendor}"
log() { printf '[setup] %s\n' "$*" >&2; }

digest() {
  cat "$ROOT/requirements.txt" "$ROOT/requirements-build-msgs.txt" "$ROOT/requirements-optional.txt" \
      "$ROOT/requirements-ros-tooling.txt" "$ROOT/scripts/setup.sh" "$ROOT/scripts/install_ros_vendor.sh" \
      "$ROOT/setup.py" "$ROOT/setup.cfg" "$ROOT/package.xml" 2>/dev/null | sha256sum | cut -d' ' -f1
  # the vendored upstream archives by name (commit in the name) and the ROS distro in force, if any
  (cd "$VENDOR" 2>/dev/null && ls -1 -- *.tar.gz) | tr '\n' ' '
  echo "cuda=${NCAL_TORCH_CUDA:-0} optional=${NCAL_SKIP_OPTIONAL:-0} distro=${ROS_DISTRO:-none} apt=${NCAL_APT:-1} cv_bridge=${NCAL_CV_BRIDGE:-0}"
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

# ROS 2 tooling that no registry ships, built from the upstream sources in ../shared/vendor
# (SOURCES.md there): interface and C++ packages with the pip ament/rosidl toolchain, pure-Python
# packages with pip. On a machine with a ROS distro sourced, whatever already imports is skipped.
bash "$ROOT/scripts/install_ros_vendor.sh" "$VENV" "$VENDOR"
digest > "$STAMP"
log "ready: $VENV"
