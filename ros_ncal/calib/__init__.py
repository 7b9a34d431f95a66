"""Extrinsic calibration: the calibrator contract, a classical targetless method, multi-frame fusion,
the online calibration core (the calibrator node's state machine, ``online.py``) and the evaluation
harness (no ROS, no torch at import).

    from ros_ncal.calib import make_calibrator, evaluate_calibrators
    cal = make_calibrator('classical')            # or 'nclr' (checkpoint=...), 'nclr+classical'
    res = cal.estimate(sample, T_init)            # CalibResult(T_cam_lidar, confidence, success, message, extras)

See docs/calibration_eval.md.
"""
from .classical import ClassicalCalibConfig, EdgeAlignmentCalibrator, SearchLevel  # noqa: F401
from .evaluate import (EvalConfig, EvalReport, PerturbationPreset, Trial, calibrator_input,  # noqa: F401
                       evaluate_calibrators, make_trials, run_trials, summarize, true_extrinsic)
from .fusion import FusionConfig, FusionResult, OnlineExtrinsicFilter, fuse_extrinsics  # noqa: F401
from .online import (DriftConfig, DriftStatus, FrameOutcome, JointScheduleConfig, OnlineCalibration,  # noqa: F401
                     OnlineConfig, OnlineFusionConfig, TfDecision, TfGateConfig)
from .registry import CALIBRATORS, CalibratorUnavailableError, make_calibrator, register_calibrator  # noqa: F401
from .result import CalibResult, Calibrator, ChainCalibrator, HandoverCalibrator, NoCorrection  # noqa: F401
