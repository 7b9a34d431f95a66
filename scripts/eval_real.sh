#!/usr/bin/env bash
# The real-data calibration evaluation of README / docs/results.md: held-out real frames only.
#   scripts/eval_real.sh CHECKPOINT OUT_DIR [CALIBRATORS]
# Held out from the shipped calibrator's training (config/nclr/calib_real.yaml): the KITTI raw drive's frames
# 57-76, the KITTI object testing frames, the DGP rig bag. Prints no-correction and classical beside the
# learned stages in every table. About 80 minutes on 2 cores (OMP_NUM_THREADS=2). Tables for docs/results.md:
# scripts/results_tables.py collect OUT/<step>/report.json NAME --command ..., then render.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
CK="${1:?checkpoint}"; OUT="${2:?output folder}"; CALS="${3:-classical,nclr,nclr/classical}"
NCAL="${NCAL_VENV:-$ROOT/.venv}/bin/ncal"
SHARED="${NCAL_SHARED_DATA:-$ROOT/../shared/data}"
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
# 4. gross rotation errors (up to 20 deg, translation up to 10 cm), single frame: one start vs the multi-start
#    stage; then the full gross preset (20 deg / 1.5 m)
"$NCAL" eval-calib --data kitti-raw --frame-range 57:77 --calibrators "none,nclr,nclr_wide" --checkpoint "$CK" \
  --preset gross_rotation --trials 2 --out "$OUT/drive_tail_gross_rotation" \
  | tee "$OUT/drive_tail_gross_rotation.txt"
"$NCAL" eval-calib --data kitti-raw --frame-range 57:77 --frame-step 2 --calibrators "none,nclr,nclr_wide" \
  --checkpoint "$CK" --config "$ROOT/config/calib_eval_gross.yaml" --preset wide --trials 2 \
  --out "$OUT/drive_tail_wide" | tee "$OUT/drive_tail_wide.txt"
# 5. other vehicles: 3 deg / 15 cm off the recorded extrinsic, three seeds per bag (errors against <bag>.truth.json
#    are not used here: --perturb makes the recorded extrinsic the truth)
for bag in dgp_scene_01_cam01 opencalib_ours_1 opencalib_manual_0; do
  for seed in 0 1 2; do
    "$NCAL" calibrate "$SHARED/rig_bags/$bag" --perturb 3,0.15 --seed "$seed" --passes 2 --checkpoint "$CK" \
      --out "$OUT/rig_${bag}_s$seed" > "$OUT/rig_${bag}_s$seed.txt" 2>&1 || true
    printf '%s seed %s: ' "$bag" "$seed"; grep -E "error|->" "$OUT/rig_${bag}_s$seed.txt" | tail -2 | tr '\n' ' '; echo
  done
done | tee "$OUT/rigs.txt"
# 6. online sequences from gross errors (+-20 deg / 1.5 m), one start vs the multi-start stage, + joint with its
#    coarse multi-start stage and its hops (joint.coarse in config/calib_eval_gross.yaml; 40-90 s per joint run:
#    about 25 min). scripts/replay_joint.py re-runs only the joint stage of these reports from their fused estimates
"$NCAL" eval-calib --data kitti-raw --frame-range 57:77 --frame-step 2 --calibrators "nclr/classical,nclr_wide/classical" \
  --checkpoint "$CK" --config "$ROOT/config/calib_eval_gross.yaml" --preset wide --trials 1 --sequence 2 --sequences 6 \
  --joint --out "$OUT/drive_tail_gross_sequences" | tee "$OUT/drive_tail_gross_sequences.txt"
#    and 8 more perturbations (--seed 1) with the multi-start stage only (about 20 min)
"$NCAL" eval-calib --data kitti-raw --frame-range 57:77 --frame-step 2 --calibrators "nclr_wide/classical" \
  --checkpoint "$CK" --config "$ROOT/config/calib_eval_gross.yaml" --preset wide --trials 1 --sequence 2 --sequences 8 \
  --seed 1 --joint --out "$OUT/drive_tail_gross_seed1" | tee "$OUT/drive_tail_gross_seed1.txt"
