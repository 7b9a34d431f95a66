#!/usr/bin/env bash
# Label-efficiency experiment: pretrained vs from-scratch fine-tuning, several seeds.
# Usage: scripts/label_efficiency.sh PRETRAINED.pt [OUT_DIR] [extra args for ros_ncal.train.label_efficiency]
# Environment: STEPS (default 100), SEEDS (default "0 1 2"), TASKS (default "seg det panoptic"; "seg det" with REAL=1),
#   REAL=1: the real-data protocol (real labelled KITTI / SemanticKITTI frames only, held-out real frames;
#   FRACTIONS of the real training frames, default "1.0"). Otherwise synthetic scenes at 1 % and 10 %.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PY="${NCAL_VENV:-$ROOT/.venv}/bin/python"
if [ $# -lt 1 ]; then
  echo "usage: $0 PRETRAINED.pt [OUT_DIR] [extra args]" >&2
  exit 2
fi
PRETRAINED="$1"; shift
OUT="${1:-$ROOT/runs/label_efficiency}"; [ $# -gt 0 ] && shift
cd "$ROOT"
if [ "${REAL:-0}" = "1" ]; then
  # shellcheck disable=SC2086
  exec "$PY" -m ros_ncal.train.label_efficiency --real --pretrained "$PRETRAINED" --out "$OUT" \
    --steps "${STEPS:-100}" --seeds ${SEEDS:-0 1 2} --tasks ${TASKS:-seg det} --fractions ${FRACTIONS:-1.0} "$@"
fi
# shellcheck disable=SC2086
exec "$PY" -m ros_ncal.train.label_efficiency --pretrained "$PRETRAINED" --out "$OUT" \
  --steps "${STEPS:-100}" --seeds ${SEEDS:-0 1 2} --tasks ${TASKS:-seg det panoptic} --fractions 0.01 0.1 "$@"
