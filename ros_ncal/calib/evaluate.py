"""Calibration evaluation: every calibrator on the same perturbed initial guesses.

Protocol (fixed by seed): for each sample with true extrinsic ``T_true`` and each trial, draw a
rigid perturbation ``D`` (rotation about a uniform random axis, angle uniform in [min_deg, max_deg];
translation along a uniform random direction, norm uniform in [min_m, max_m]) and set

    T_init = T_true @ D        (D acts in the LiDAR frame, on the right)

Projecting the cloud with ``T_init`` is projecting the cloud moved by ``D`` with the true extrinsic:
the calibrator sees the cloud in a perturbed frame and must undo ``D``. With ``D`` on the right the
initial errors are exactly the perturbation sizes: RRE(T_init, T_true) = angle(D) and
RTE(T_init, T_true) = |t_D| (rotating a vector keeps its norm). The no-correction baseline is always
evaluated. Each calibrator receives ``sample.replace(T_cam_lidar=T_init)`` with the true extrinsic
removed from ``meta``, so no ground truth leaks.

Errors: RRE in degrees (angle of R_est^T R_true), RTE in centimetres (|t_est - t_true|); success when
RRE < success_rre_deg and RTE < success_rte_m (defaults 2 deg, 20 cm).

Online sequence protocol (:func:`run_sequences`, ``ncal eval-calib --sequence PASSES``): what the
calibrator node does on a robot. One perturbation ``D`` is the rig's miscalibration for a whole
sequence (every frame's nominal is ``T_true_i @ D``); the frames are visited in order ``PASSES``
times; each frame's calibrator starts from the current fused estimate (the node's
``init_from: fused``), and each accepted per-frame estimate enters the same robust SE(3) fusion as
the node (:class:`ros_ncal.calib.fusion.OnlineExtrinsicFilter`). Estimates are fused as corrections
``C_i = inv(T_nominal_i) @ T_est_i`` in the LiDAR frame (the ideal correction is ``inv(D)`` for every
frame), so frames with different true extrinsics (KITTI calibration days) share one sequence. The
errors reported are those of the fused estimate after the last frame.
"""
from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Iterable

import numpy as np

from ros_ncal.config_io import SectionConfig, dataclass_from_dict, to_jsonable
from ros_ncal.data.sample import TRUE_EXTRINSIC_KEY, Sample, true_extrinsic
from ros_ncal.geometry import pose_error, random_perturbation, validate_rigid

from .fusion import FusionConfig
from .result import CalibResult, NoCorrection


@dataclass
class PerturbationPreset:
    """Bounds of the random decalibration (see the module docstring)."""

    max_deg: float
    max_m: float
    min_deg: float = 0.0
    min_m: float = 0.0

    def draw(self, rng: np.random.Generator) -> np.ndarray:
        return random_perturbation(rng, self.max_deg, self.max_m, self.min_deg, self.min_m)


def _default_presets() -> dict[str, PerturbationPreset]:
    return {'small': PerturbationPreset(2.0, 0.1),     # refinement of a nearly right extrinsic
            'calib': PerturbationPreset(10.0, 0.5),    # default
            'wide': PerturbationPreset(20.0, 1.5),     # the range of learned calibrators (RegNet, LCCNet)
            'gross_rotation': PerturbationPreset(20.0, 0.1)}   # rotation gross, translation small (nclr_wide)


def _default_sweep() -> list[list[float]]:
    return [[0.5, 0.025], [1.0, 0.05], [2.0, 0.1], [5.0, 0.25], [10.0, 0.5], [20.0, 1.5]]


@dataclass
class EvalConfig(SectionConfig):
    """Evaluation protocol (YAML section ``evaluation`` of config/calib_eval.yaml)."""

    SECTION: ClassVar[str] = 'evaluation'
    CONFIG_NAME: ClassVar[str] = 'evaluation config'

    preset: str = 'calib'
    presets: dict[str, PerturbationPreset] = field(default_factory=_default_presets)
    trials: int = 5                   # perturbations per sample
    seed: int = 0
    success_rre_deg: float = 2.0
    success_rte_m: float = 0.2
    sequence_success_rre_deg: float = 1.0   # online sequences: the final estimate within these counts as success
    sequence_success_rte_m: float = 0.1
    sweep: list[list[float]] = field(default_factory=_default_sweep)  # [deg, m] sizes, exact magnitudes
    sweep_trials: int = 2             # per sample and size

    @classmethod
    def _prepare(cls, d: dict) -> dict:
        if 'presets' in d:
            presets = _default_presets()
            presets.update({k: v if isinstance(v, PerturbationPreset) else
                            dataclass_from_dict(PerturbationPreset, v, f'{cls.CONFIG_NAME}: presets.{k}')
                            for k, v in (d['presets'] or {}).items()})
            d['presets'] = presets
        return d

    def validate(self) -> None:
        if self.preset not in self.presets:
            raise ValueError(f'evaluation config: unknown preset {self.preset!r}; have {sorted(self.presets)}')
        if self.trials < 1 or self.sweep_trials < 1:
            raise ValueError('evaluation config: trials and sweep_trials must be >= 1')
        for s in self.sweep:
            if len(s) != 2 or s[0] < 0 or s[1] < 0:
                raise ValueError(f'evaluation config: sweep entries are [deg, m] >= 0, got {s}')


def calibrator_input(sample: Sample, T_init: np.ndarray) -> Sample:
    """The sample as a calibrator may see it: nominal extrinsic = T_init, no ground truth in meta."""
    meta = {k: v for k, v in sample.meta.items() if k != TRUE_EXTRINSIC_KEY}
    return sample.replace(T_cam_lidar=np.asarray(T_init, dtype=np.float64), meta=meta)


@dataclass
class Trial:
    """One initial guess: sample index, the perturbation D and T_init = T_true @ D."""

    sample_index: int
    trial: int
    T_true: np.ndarray
    perturbation: np.ndarray
    T_init: np.ndarray

    @property
    def size(self) -> tuple[float, float]:
        """(deg, m) of the perturbation (= the no-correction errors)."""
        return pose_error(self.T_init, self.T_true)


def make_trials(samples: list[Sample], preset: PerturbationPreset, trials: int, seed: int | list[int]) -> list[Trial]:
    """Deterministic initial guesses: one generator seeded by ``seed``, drawn sample-major."""
    rng = np.random.default_rng(seed)
    out = []
    for i, s in enumerate(samples):
        T_true = true_extrinsic(s)
        for k in range(trials):
            D = preset.draw(rng)
            out.append(Trial(i, k, T_true, D, T_true @ D))
    return out


def run_trials(samples: list[Sample], trials: list[Trial], calibrators: dict[str, Any],
               progress: bool = False) -> list[dict[str, Any]]:
    """Run every calibrator on every trial -> one record per (trial, calibrator).

    Record keys: sample, trial, calibrator, init_rre_deg, init_rte_cm, rre_deg, rte_cm, confidence,
    success_flag (the calibrator's own), runtime_s, message, extras (the scalar entries of
    CalibResult.extras). A calibrator that raises is recorded as a
    failure returning T_init (message 'raised ...'); the evaluation goes on.
    """
    records = []
    for n, tr in enumerate(trials):
        s_in = calibrator_input(samples[tr.sample_index], tr.T_init)
        init_rre, init_rte = tr.size
        for name, cal in calibrators.items():
            t0 = time.perf_counter()
            try:
                res = cal.estimate(s_in, tr.T_init.copy())
                if not isinstance(res, CalibResult):
                    raise TypeError(f'estimate returned {type(res).__name__}, expected CalibResult')
            except Exception as exc:  # noqa: BLE001 - one bad calibrator must not stop the evaluation
                res = CalibResult.failure(tr.T_init, f'raised {type(exc).__name__}: {exc}')
            dt = time.perf_counter() - t0
            rre, rte = pose_error(res.T_cam_lidar, tr.T_true)
            records.append({'sample': tr.sample_index, 'trial': tr.trial, 'calibrator': name,
                            'init_rre_deg': init_rre, 'init_rte_cm': 100.0 * init_rte,
                            'rre_deg': rre, 'rte_cm': 100.0 * rte, 'confidence': res.confidence,
                            'success_flag': res.success, 'runtime_s': dt, 'message': res.message,
                            'extras': {k: v for k, v in res.extras.items()
                                       if isinstance(v, (bool, int, float, str, np.floating, np.integer))}})
        if progress:
            print(f'  trial {n + 1}/{len(trials)} done', flush=True)
    return records


def summarize(records: list[dict[str, Any]], success_rre_deg: float, success_rte_m: float) -> dict[str, dict]:
    """Per calibrator: n, median/mean RRE (deg) and RTE (cm), success rate (both thresholds), rotation-only
    success rate, the calibrator's self-reported success rate, mean confidence, mean runtime."""
    out: dict[str, dict] = {}
    names = list(dict.fromkeys(r['calibrator'] for r in records))
    for name in names:
        rs = [r for r in records if r['calibrator'] == name]
        rre = np.array([r['rre_deg'] for r in rs])
        rte = np.array([r['rte_cm'] for r in rs])
        ok = (rre < success_rre_deg) & (rte < 100.0 * success_rte_m)
        out[name] = {'n': len(rs), 'rre_median_deg': float(np.median(rre)), 'rre_mean_deg': float(np.mean(rre)),
                     'rte_median_cm': float(np.median(rte)), 'rte_mean_cm': float(np.mean(rte)),
                     'success_rate': float(np.mean(ok)),
                     'rot_success_rate': float(np.mean(rre < success_rre_deg)),
                     'self_reported_success_rate': float(np.mean([r['success_flag'] for r in rs])),
                     'confidence_mean': float(np.mean([r['confidence'] for r in rs])),
                     'runtime_mean_s': float(np.mean([r['runtime_s'] for r in rs]))}
    return out


@dataclass
class EvalReport:
    """Everything one evaluation run produced (serialisable with :meth:`to_json`)."""

    config: dict[str, Any]
    preset_name: str
    preset: dict[str, float]
    n_samples: int
    sample_ids: list[str]
    records: list[dict[str, Any]]
    summary: dict[str, dict]
    sweep: list[dict[str, Any]] = field(default_factory=list)   # [{deg, m, summary}]
    sweep_records: list[dict[str, Any]] = field(default_factory=list)
    sequence: dict[str, Any] = field(default_factory=dict)   # {passes, records, summary} of run_sequences
    info: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def write_json(self, path: str | Path) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(to_jsonable(self.to_dict()), indent=1))
        return path

    def table_rows(self) -> list[list[str]]:
        rows = [['calibrator', 'n', 'RRE med (deg)', 'RRE mean (deg)', 'RTE med (cm)', 'RTE mean (cm)',
                 f'success (<{self.config["success_rre_deg"]:g} deg, <{100 * self.config["success_rte_m"]:g} cm)',
                 f'RRE <{self.config["success_rre_deg"]:g} deg', 'conf mean', 'runtime (s/frame)']]
        for name, s in self.summary.items():
            rows.append([name, str(s['n']), f'{s["rre_median_deg"]:.2f}', f'{s["rre_mean_deg"]:.2f}',
                         f'{s["rte_median_cm"]:.1f}', f'{s["rte_mean_cm"]:.1f}', f'{100 * s["success_rate"]:.0f} %',
                         f'{100 * s["rot_success_rate"]:.0f} %',
                         f'{s["confidence_mean"]:.2f}', f'{s["runtime_mean_s"]:.3f}'])
        return rows

    def to_markdown(self) -> str:
        p = self.preset
        lines = [f'Preset `{self.preset_name}`: rotation up to {p["max_deg"]:g} deg, translation up to '
                 f'{p["max_m"]:g} m; {self.n_samples} samples x {self.config["trials"]} trials, seed '
                 f'{self.config["seed"]}.', '']
        rows = self.table_rows()
        lines.append('| ' + ' | '.join(rows[0]) + ' |')
        lines.append('|' + '---|' * len(rows[0]))
        lines += ['| ' + ' | '.join(r) + ' |' for r in rows[1:]]
        if self.sweep:
            names = list(self.sweep[0]['summary'])
            lines += ['', 'Sweep (exact perturbation sizes), median RRE deg / RTE cm / success:', '',
                      '| size | ' + ' | '.join(names) + ' |', '|---|' + '---|' * len(names)]
            for row in self.sweep:
                cells = [f'{row["summary"][n]["rre_median_deg"]:.2f} / {row["summary"][n]["rte_median_cm"]:.1f} / '
                         f'{100 * row["summary"][n]["success_rate"]:.0f} %' for n in names]
                lines.append(f'| {row["deg"]:g} deg, {100 * row["m"]:g} cm | ' + ' | '.join(cells) + ' |')
        if self.sequence:
            lines += ['', self.sequence_title(), '']
            rows = self.sequence_rows()
            lines.append('| ' + ' | '.join(rows[0]) + ' |')
            lines.append('|' + '---|' * len(rows[0]))
            lines += ['| ' + ' | '.join(r) + ' |' for r in rows[1:]]
        return '\n'.join(lines) + '\n'

    def sequence_title(self) -> str:
        q = self.sequence
        return (f'Online sequences (fused, each frame starting from the fused estimate): {q["n_sequences"]} '
                f'perturbations x {self.n_samples} frames x {q["passes"]} passes:')

    def sequence_rows(self) -> list[list[str]]:
        q = self.sequence
        rows = [['calibrator', 'sequences', 'RRE med (deg)', 'RRE mean (deg)', 'RTE med (cm)', 'RTE mean (cm)',
                 f'success (<{q["success_rre_deg"]:g} deg, <{100 * q["success_rte_m"]:g} cm)',
                 'frames fused (mean)', 'runtime (s/frame)']]
        for name, s in self.sequence['summary'].items():
            rows.append([name, str(s['n']), f'{s["rre_median_deg"]:.2f}', f'{s["rre_mean_deg"]:.2f}',
                         f'{s["rte_median_cm"]:.1f}', f'{s["rte_mean_cm"]:.1f}', f'{100 * s["success_rate"]:.0f} %',
                         f'{s["fused_frames_mean"]:.1f}', f'{s["runtime_mean_s"]:.3f}'])
        return rows

    def format_table(self) -> str:
        text = _format_rows(self.table_rows())
        if self.sequence:
            text += '\n\n' + self.sequence_title() + '\n' + _format_rows(self.sequence_rows())
        return text


def _format_rows(rows: list[list[str]]) -> str:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return '\n'.join('  '.join(c.rjust(w) if i else c.ljust(w) for i, (c, w) in enumerate(zip(r, widths)))
                     for r in rows)


def sequence_frames(samples: list[Sample], D: np.ndarray) -> list[Sample]:
    """The frames of one online sequence as the calibrators see them: nominal = T_true @ D (D (4, 4) the
    sequence's miscalibration), no truth in meta."""
    return [calibrator_input(s, true_extrinsic(s) @ D) for s in samples]


def run_sequences(samples: list[Sample], perturbations: list[np.ndarray], calibrators: dict[str, Any],
                  passes: int, fusion: FusionConfig | None = None, progress: bool = False,
                  joint=None) -> list[dict[str, Any]]:
    """The online sequence protocol (module docstring): one record per (perturbation, calibrator).

    perturbations: (4, 4) D each, the miscalibration of one sequence. Record keys: sequence, calibrator,
    init_rre_deg, init_rte_cm, rre_deg, rte_cm (of the final fused estimate), frames, fused_frames,
    rot_std_deg / trans_std_cm (the fusion's standard errors, None below two frames), runtime_s (mean per
    frame), trajectory ([[rre_deg, rte_cm]] after each frame), perturbation (the (4, 4) D as nested lists) and
    fused_correction (the fusion's (4, 4) LiDAR-frame correction before any joint stage), so a later stage can
    be replayed from the same start without the network. With ``joint`` (a JointEdgeRefiner) every
    calibrator also gets a record named ``<name>+joint``: the same sequence, then the joint multi-frame
    refinement of the fused estimate (its trajectory ends with the refined error).
    """
    from ros_ncal.geometry import invert

    from .offline import calibrate_sequence
    if passes < 1:
        raise ValueError(f'run_sequences: passes must be >= 1, got {passes}')
    records = []
    for k, D in enumerate(perturbations):
        D = validate_rigid(np.asarray(D, dtype=np.float64), 1e-6, name='perturbation')
        ideal = invert(D)
        init_rre, init_rte = pose_error(np.eye(4), ideal)
        frames = sequence_frames(samples, D)
        for name, cal in calibrators.items():
            res = calibrate_sequence(frames, cal, passes=passes, fusion=fusion, joint=joint)
            trajectory = [[rot, 100.0 * trans] for rot, trans in
                          (pose_error(x.correction_after, ideal) for x in res.frames)]
            summary = res.summary()
            base = {'sequence': k, 'init_rre_deg': init_rre, 'init_rte_cm': 100.0 * init_rte,
                    'frames': len(res.frames), 'fused_frames': summary['fused_inliers'],
                    'rot_std_deg': summary['rot_std_deg'], 'trans_std_cm': summary['trans_std_cm'],
                    'runtime_s': float(np.mean([x.runtime_s for x in res.frames])),
                    'perturbation': D.tolist(),
                    'fused_correction': np.asarray(res.fused_correction, dtype=np.float64).tolist()}
            rre, rte = pose_error(res.fused_correction, ideal)
            records.append({**base, 'calibrator': name, 'rre_deg': rre, 'rte_cm': 100.0 * rte,
                            'trajectory': trajectory})
            lines = [f'{name}: {init_rre:.2f} deg / {100 * init_rte:.1f} cm -> {rre:.2f} deg / {100 * rte:.1f} cm']
            if res.joint is not None:
                jr, jt = pose_error(res.correction, ideal)
                records.append({**base, 'calibrator': f'{name}+joint', 'rre_deg': jr, 'rte_cm': 100.0 * jt,
                                'joint': res.joint.to_dict(), 'trajectory': trajectory[:-1] + [[jr, 100.0 * jt]]})
                lines.append(f'+joint {jr:.2f} deg / {100 * jt:.1f} cm')
            if progress:
                print(f'  sequence {k + 1}/{len(perturbations)} ' + ', '.join(lines), flush=True)
    return records


def summarize_sequences(records: list[dict[str, Any]], success_rre_deg: float,
                        success_rte_m: float) -> dict[str, dict]:
    """Per calibrator: n sequences, median/mean final RRE (deg) / RTE (cm), success rate, mean fused frames,
    mean runtime per frame."""
    out: dict[str, dict] = {}
    for name in dict.fromkeys(r['calibrator'] for r in records):
        rs = [r for r in records if r['calibrator'] == name]
        rre = np.array([r['rre_deg'] for r in rs])
        rte = np.array([r['rte_cm'] for r in rs])
        out[name] = {'n': len(rs), 'rre_median_deg': float(np.median(rre)), 'rre_mean_deg': float(np.mean(rre)),
                     'rte_median_cm': float(np.median(rte)), 'rte_mean_cm': float(np.mean(rte)),
                     'success_rate': float(np.mean((rre < success_rre_deg) & (rte < 100.0 * success_rte_m))),
                     'fused_frames_mean': float(np.mean([r['fused_frames'] for r in rs])),
                     'runtime_mean_s': float(np.mean([r['runtime_s'] for r in rs]))}
    return out


def evaluate_calibrators(samples: list[Sample], calibrators: dict[str, Any], config: EvalConfig | None = None,
                         preset: str | None = None, trials: int | None = None, sweep: bool = False,
                         sample_ids: Iterable[str] | None = None, progress: bool = False,
                         sequence_passes: int = 0, sequences: int | None = None,
                         fusion: FusionConfig | None = None, joint=None) -> EvalReport:
    """Evaluate ``calibrators`` ({name: calibrator}) on ``samples``; 'none' (NoCorrection) is always added first.

    preset / trials override the config. With ``sweep`` also runs every size of ``config.sweep`` with
    exact magnitudes (min = max) and ``config.sweep_trials`` trials per sample, for the error-vs-size plot.
    With ``sequence_passes`` > 0 also runs the online sequence protocol (:func:`run_sequences`): ``sequences``
    (default: the trials) perturbations drawn from the preset (seed ``[config.seed, 7919]``), each one
    sequence over all samples; ``joint`` (a JointEdgeRefiner) adds the ``<name>+joint`` rows.
    """
    cfg = config or EvalConfig()
    preset_name = preset or cfg.preset
    if preset_name not in cfg.presets:
        raise ValueError(f'unknown perturbation preset {preset_name!r}; have {sorted(cfg.presets)}')
    if not samples:
        raise ValueError('evaluate_calibrators: no samples')
    n_trials = int(trials or cfg.trials)
    cals = {'none': NoCorrection()}
    cals.update({k: v for k, v in calibrators.items() if k != 'none'})
    pr = cfg.presets[preset_name]
    main = make_trials(samples, pr, n_trials, cfg.seed)
    records = run_trials(samples, main, cals, progress)
    ids = list(sample_ids) if sample_ids is not None else [str(i) for i in range(len(samples))]
    report = EvalReport(config={**cfg.to_dict(), 'trials': n_trials}, preset_name=preset_name, preset=asdict(pr),
                        n_samples=len(samples), sample_ids=ids,
                        records=records, summary=summarize(records, cfg.success_rre_deg, cfg.success_rte_m))
    if sweep:
        for j, (deg, m) in enumerate(cfg.sweep):
            tr = make_trials(samples, PerturbationPreset(deg, m, deg, m), cfg.sweep_trials, [cfg.seed, 1000 + j])
            recs = run_trials(samples, tr, cals, progress)
            for r in recs:
                r['size_deg'], r['size_m'] = float(deg), float(m)
            report.sweep_records += recs
            report.sweep.append({'deg': float(deg), 'm': float(m),
                                 'summary': summarize(recs, cfg.success_rre_deg, cfg.success_rte_m)})
    if sequence_passes > 0:
        rng = np.random.default_rng([cfg.seed, 7919])
        perts = [pr.draw(rng) for _ in range(int(sequences or n_trials))]
        recs = run_sequences(samples, perts, cals, sequence_passes, fusion, progress, joint=joint)
        report.sequence = {'passes': int(sequence_passes), 'n_sequences': len(perts), 'records': recs,
                           'fusion': (fusion or FusionConfig()).to_dict(),
                           'joint': joint.cfg.to_dict() if joint is not None else None,
                           'success_rre_deg': cfg.sequence_success_rre_deg,
                           'success_rte_m': cfg.sequence_success_rte_m,
                           'summary': summarize_sequences(recs, cfg.sequence_success_rre_deg,
                                                          cfg.sequence_success_rte_m)}
    return report
