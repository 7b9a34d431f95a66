"""Calibrator registry: name -> factory, so the CLI and the nodes build calibrators by name.

A factory is called with keyword options (``checkpoint``, ``config_path``, ``device`` and whatever a
caller passes; factories ignore options they do not use) and returns an object with
``estimate(sample, T_init) -> CalibResult``. A spec ``'a+b'`` chains calibrators: ``b`` refines ``a``'s
estimate (e.g. ``nclr+classical``). Add one with :func:`register_calibrator`.
"""
from __future__ import annotations

from typing import Any, Callable

from .result import ChainCalibrator, HandoverCalibrator, NoCorrection


class CalibratorUnavailableError(RuntimeError):
    """A registered calibrator cannot be built here (missing module, checkpoint, ...)."""


def _make_none(**_: Any):
    return NoCorrection()


def _make_classical(config_path: str | None = None, **_: Any):
    from .classical import ClassicalCalibConfig, EdgeAlignmentCalibrator
    cfg = ClassicalCalibConfig.from_yaml(config_path) if config_path else ClassicalCalibConfig()
    return EdgeAlignmentCalibrator(cfg)


def _make_nclr(checkpoint: str | None = None, device: str | None = None, config_path: str | None = None,
               **_: Any):
    """The learned calibrator; its inference settings come from the ``nclr`` section of ``config_path``."""
    if not checkpoint:
        raise CalibratorUnavailableError('calibrator "nclr" needs a trained checkpoint (--checkpoint PATH)')
    try:
        from ros_ncal.nclr.calibrator import NCLRCalibrator, NCLRInferenceConfig
    except ImportError as exc:
        raise CalibratorUnavailableError(
            'calibrator "nclr" is not available: cannot import '
            f'ros_ncal.nclr.calibrator.NCLRCalibrator ({exc})') from exc
    infer = NCLRInferenceConfig.from_yaml(config_path) if config_path else NCLRInferenceConfig()
    try:
        return NCLRCalibrator.from_checkpoint(checkpoint, device=device, infer=infer) if device else \
            NCLRCalibrator.from_checkpoint(checkpoint, infer=infer)
    except FileNotFoundError as exc:
        raise CalibratorUnavailableError(f'calibrator "nclr": checkpoint not found: {exc}') from exc


def _make_nclr_wide(config_path: str | None = None, **options: Any):
    """Gross-error recovery: the learned calibrator from many rotated starts, by agreement
    (ros_ncal/nclr/multistart.py); settings in the ``nclr_multistart`` section of ``config_path``."""
    base = _make_nclr(config_path=config_path, **options)
    from ros_ncal.nclr.multistart import MultiStartConfig, MultiStartNCLR
    return MultiStartNCLR(base, MultiStartConfig.from_yaml(config_path) if config_path else MultiStartConfig())


CALIBRATORS: dict[str, Callable[..., Any]] = {
    'none': _make_none,
    'classical': _make_classical,
    'nclr': _make_nclr,
    'nclr_wide': _make_nclr_wide,
}


def register_calibrator(name: str, factory: Callable[..., Any], overwrite: bool = False) -> None:
    """Make ``name`` buildable by :func:`make_calibrator` (names may not contain '+', '/' or ',')."""
    if not name or any(c in name for c in '+/,'):
        raise ValueError(f'calibrator name {name!r}: must be non-empty without "+", "/" or ","')
    if name in CALIBRATORS and not overwrite:
        raise ValueError(f'calibrator {name!r} is already registered (pass overwrite=True to replace it)')
    CALIBRATORS[name] = factory


def with_refinement(spec: str, refine: str = 'none') -> str:
    """The spec with a refinement stage appended (the calibrator node's ``refine`` parameter): ``'none'`` keeps
    it; ``'classical'`` gives ``spec+classical`` unless the spec already ends with it or is a handover
    (``a/b`` refines by itself). ValueError for another refine value."""
    if refine not in ('none', 'classical'):
        raise ValueError(f"refine must be 'none' or 'classical', got {refine!r}")
    if refine == 'none' or spec.endswith('+classical') or '/' in spec:
        return spec
    return f'{spec}+classical'


def make_calibrator(spec: str, **options: Any):
    """'classical', 'nclr', 'nclr+classical', 'nclr/classical', ... -> calibrator. Raises ValueError for an
    unknown name, CalibratorUnavailableError when a known one cannot be built.

    ``a+b+...``: chain, each stage refines the previous estimate. ``a/b``: handover
    (:class:`HandoverCalibrator`): b refines from the guess and from a's estimate, b's objective picks.
    """
    if '/' in spec:
        parts = [p.strip() for p in spec.split('/')]
        if len(parts) != 2 or not all(parts) or any('+' in p for p in parts):
            raise ValueError(f"handover spec {spec!r}: expected 'coarse/refiner' with two plain names")
        return HandoverCalibrator(make_calibrator(parts[0], **options), make_calibrator(parts[1], **options), parts)
    names = [n.strip() for n in spec.split('+') if n.strip()]
    if not names:
        raise ValueError(f'empty calibrator spec {spec!r}')
    for n in names:
        if n not in CALIBRATORS:
            raise ValueError(f'unknown calibrator {n!r}; registered: {sorted(CALIBRATORS)}')
    stages = [CALIBRATORS[n](**options) for n in names]
    return stages[0] if len(stages) == 1 else ChainCalibrator(stages, names)
