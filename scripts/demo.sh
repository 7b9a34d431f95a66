#!/usr/bin/env bash
# End-to-end ROS demo: set up the venv (idempotent), then `ncal demo` (it applies the ROS
# network-safety environment itself before importing rclpy). Extra args go to `ncal demo`.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
bash scripts/setup.sh
exec "${NCAL_VENV:-$ROOT/.venv}/bin/ncal" demo "$@"
