#!/usr/bin/env bash
# The real-data calibration evaluation of README / docs/results.md: held-out real frames only.
#   scripts/eval_real.sh CHECKPOINT OUT_DIR [CALIBRATORS]
# Held out from the shipped calibrator's training (config/nclr/calib_real.yaml): the KITTI raw drive's frames
# 57-76, the KITTI object testing frames, the DGP rig bag. Prints no-correction and classical beside the
# learned stages in every table.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
CK="${1:?checkpoint}"; OUT="${2:?output folder}"; CALS="${3:-classical,nclr,nclr/classical}"
NCAL="${NCAL_VENV:-$ROOT/.venv}/bin/ncal"
mkdir -p "$OUT"
# 1. single frame, +-10 deg / 0.5 m, drive tail (20 frames x 2 trials)
"$NCAL" eval-calib --data kitti-raw --frame-range 57:77 --calibrators "$CALS" --checkpoint "$CK" \
  --preset calib --trials 2 --out "$OUT/drive_tail_single" | tee "$OUT/drive_tail_single.txt"
# 2. single frame, KITTI object testing (4 frames x 5 trials)
"$NCAL" eval-calib --data kitti --kitti-splits testing --calibrators "$CALS" --checkpoint "$CK" \
  --preset calib --trials 5 --out "$OUT/kitti_testing_single" | tee "$OUT/kitti_testing_single.txt"
# 3. online sequences on the drive tail (every 2nd frame: 10 frames, 2 passes), +-10 deg / 0.5 m, + joint
"$NCAL" eval-calib --data kitti-raw --frame-range 57:77 --frame-step 2 --calibrators "classical,nclr/classical" \
  --checkpoint "$CK" --preset calib --trials 1 --sequence 2 --sequences 6 --joint --out "$OUT/drive_tail_sequences" \
  | tee "$OUT/drive_tail_sequences.txt"
