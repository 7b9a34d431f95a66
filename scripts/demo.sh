#!/usr/bin/env bash
# The README's run command: set up the venv (idempotent), then `ncal demo` (docs/demo.md).
# It replays the shipped scenarios (real KITTI frames from ../shared/data, recorded and perturbed
# extrinsic; a synthetic drive with a 5 deg / 30 cm wrong nominal, rendered once and cached in
# out/demo/bags) through the calibrator + collector suite and prints / saves the summary and overlays.
# `ncal demo` applies the ROS network-safety environment itself before importing rclpy.
# Extra args go to `ncal demo` (e.g. --scenario synthetic, --backend classical, --out DIR).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
bash scripts/setup.sh
# One BLAS thread: the nodes' small matrix products are several times slower with OpenBLAS threads
# on a busy machine (docs/nodes.md); an exported value wins.
export OPENBLAS_NUM_THREADS="${OPENBLAS_NUM_THREADS:-1}"
exec "${NCAL_VENV:-$ROOT/.venv}/bin/ncal" demo "$@"
