"""The calibrator contract: ``estimate(sample, T_init) -> CalibResult``.

A calibrator is any object with a method ``estimate(sample: Sample, T_init: (4, 4)) -> CalibResult``
(the Autoware calibration-service contract: transform, success, score, message). ``T_init`` is the
initial guess of ``T_cam_lidar`` (LiDAR -> camera optical frame); ``sample.T_cam_lidar`` must not be
trusted by a calibrator (the evaluator sets it to ``T_init`` so no ground truth leaks).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

import numpy as np

from ros_ncal.data.sample import Sample

# which components of T_cam_lidar a result estimated, order [rx ry rz tx ty tz] (the fusion's tangent order)
ESTIMATED_ALL = (True,) * 6
ESTIMATED_ROTATION = (True,) * 3 + (False,) * 3
ESTIMATED_NONE = (False,) * 6


def estimated_union(*masks) -> tuple[bool, ...]:
    """Components estimated by any of the masks."""
    out = [False] * 6
    for m in masks:
        out = [a or bool(b) for a, b in zip(out, m)]
    return tuple(out)


@dataclass
class CalibResult:
    """One extrinsic estimate.

    T_cam_lidar: (4, 4) float64 estimate (equal to T_init when the calibrator failed).
    confidence: in [0, 1]; 0 = no information (a failure or the no-correction baseline).
    success: the calibrator trusts its estimate (enough data, objective well peaked).
    message: human-readable status, names the reason of a failure.
    extras: calibrator-specific diagnostics (JSON-serialisable numbers/strings preferred).
    estimated: 6 bools [rx ry rz tx ty tz]: the components this estimate measured. A calibrator that keeps a
    component at T_init (e.g. rotation-only: the translation stays the nominal) must say so
    (``ESTIMATED_ROTATION``), so the fusion gives that component the configured prior variance instead of
    the zero spread of a constant. Default all; failures estimate nothing.
    """

    T_cam_lidar: np.ndarray
    confidence: float
    success: bool
    message: str = ''
    extras: dict[str, Any] = field(default_factory=dict)
    estimated: tuple[bool, ...] = ESTIMATED_ALL

    def __post_init__(self) -> None:
        self.T_cam_lidar = np.asarray(self.T_cam_lidar, dtype=np.float64).reshape(4, 4)
        c = float(self.confidence)
        self.confidence = 0.0 if not np.isfinite(c) else float(np.clip(c, 0.0, 1.0))
        self.success = bool(self.success)
        self.message = str(self.message)
        self.estimated = tuple(bool(x) for x in self.estimated)
        if len(self.estimated) != 6:
            raise ValueError(f'CalibResult.estimated: expected 6 flags [rx ry rz tx ty tz], got {len(self.estimated)}')

    def stage_extras(self) -> dict[str, Any]:
        """This result as one stage of a combined calibrator's extras: success, confidence and its own extras."""
        return {'success': self.success, 'confidence': self.confidence, **self.extras}

    @classmethod
    def failure(cls, T_init: np.ndarray, message: str, **extras: Any) -> 'CalibResult':
        """T_init unchanged, confidence 0, success False, nothing estimated."""
        return cls(np.array(T_init, dtype=np.float64, copy=True), 0.0, False, message, dict(extras), ESTIMATED_NONE)


@runtime_checkable
class Calibrator(Protocol):
    """Anything with ``estimate(sample, T_init) -> CalibResult``."""

    def estimate(self, sample: Sample, T_init: np.ndarray) -> CalibResult:  # pragma: no cover - protocol
        ...


class NoCorrection:
    """Baseline: returns T_init unchanged with confidence 0 (always included in evaluations)."""

    name = 'none'

    def estimate(self, sample: Sample, T_init: np.ndarray) -> CalibResult:
        return CalibResult(np.array(T_init, dtype=np.float64, copy=True), 0.0, True, 'no correction applied',
                           estimated=ESTIMATED_NONE)


class ChainCalibrator:
    """Runs calibrators in sequence, each starting from the previous estimate (e.g. NCLR then classical refinement).

    A stage that fails leaves the running estimate unchanged; the chain succeeds when any stage did,
    and reports the confidence of the last successful stage.
    """

    def __init__(self, stages: list, names: list[str] | None = None) -> None:
        if not stages:
            raise ValueError('ChainCalibrator: needs at least one stage')
        self.stages = list(stages)
        self.names = list(names) if names is not None else [type(s).__name__ for s in stages]

    def estimate(self, sample: Sample, T_init: np.ndarray) -> CalibResult:
        T = np.array(T_init, dtype=np.float64, copy=True)
        ok_any, conf, messages, extras, est = False, 0.0, [], {}, ESTIMATED_NONE
        for name, stage in zip(self.names, self.stages):
            res = stage.estimate(sample, T)
            messages.append(f'{name}: {res.message}')
            extras[name] = res.stage_extras()
            if res.success:
                T, ok_any, conf = res.T_cam_lidar, True, res.confidence
                est = estimated_union(est, res.estimated)
        return CalibResult(T, conf, ok_any, '; '.join(messages), extras, est)


class HandoverCalibrator:
    """``coarse/refiner`` (e.g. ``nclr/classical``): the refiner runs twice, from the initial guess and from
    the coarse calibrator's estimate, and the run with the better refiner objective wins.

    For a local refiner (the classical edge alignment converges from about 2-4 deg) and a coarse learned
    calibrator with a floor (NCLR on real frames: 2.5-3.5 deg), this keeps the refiner's accuracy when the
    guess is already in its basin and hands gross errors to the coarse stage. The choice uses only the
    refiner's own objective (``extras['objective']``, higher is better, computed on the same frame), never
    ground truth. A refiner that reports no objective gets the chain behaviour (refine the coarse estimate).
    """

    def __init__(self, coarse, refiner, names: list[str] | None = None) -> None:
        self.coarse, self.refiner = coarse, refiner
        self.names = list(names) if names is not None else [type(coarse).__name__, type(refiner).__name__]

    def estimate(self, sample: Sample, T_init: np.ndarray) -> CalibResult:
        T_init = np.array(T_init, dtype=np.float64, copy=True)
        c_name, r_name = self.names
        coarse = self.coarse.estimate(sample, T_init)
        from_start = self.refiner.estimate(sample, T_init)
        from_coarse = self.refiner.estimate(sample, coarse.T_cam_lidar) if coarse.success else None
        extras = {c_name: coarse.stage_extras(), f'{r_name}_from_start': from_start.stage_extras()}
        if from_coarse is not None:
            extras[f'{r_name}_from_{c_name}'] = from_coarse.stage_extras()

        def objective(res: CalibResult | None) -> float:
            v = None if res is None else res.extras.get('objective')
            return float(v) if isinstance(v, (int, float, np.floating)) and np.isfinite(v) else -np.inf
        if from_coarse is not None and ('objective' not in from_start.extras or 'objective' not in from_coarse.extras):
            picked = 'coarse'                          # no comparable objective: behave like the chain
        elif from_coarse is None or objective(from_start) >= objective(from_coarse):
            picked = 'start'
        else:
            picked = 'coarse'
        extras['picked'] = f'{r_name} from {"start" if picked == "start" else c_name}'
        msg = f'{extras["picked"]} (objective {objective(from_start):.4f} from start'
        msg += f', {objective(from_coarse):.4f} from {c_name})' if from_coarse is not None else ')'
        if picked == 'start':
            if from_start.success:
                return CalibResult(from_start.T_cam_lidar, from_start.confidence, True, msg, extras,
                                   from_start.estimated)
            return CalibResult.failure(T_init, f'{msg}; {r_name}: {from_start.message}', **extras)
        if from_coarse.success:
            return CalibResult(from_coarse.T_cam_lidar, from_coarse.confidence, True, msg, extras,
                               estimated_union(coarse.estimated, from_coarse.estimated))
        return CalibResult(coarse.T_cam_lidar, coarse.confidence, True,
                           f'{msg}; {r_name} not confident, kept {c_name}', extras, coarse.estimated)
