"""Plots of an evaluation report (matplotlib, Agg backend; no display needed)."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from .evaluate import EvalReport


def _pyplot():
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    return plt


def _save(plt, fig, path: str | Path, dpi: int) -> Path:
    """Lay out, write the PNG (parent folders created) and release the figure."""
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=dpi)
    plt.close(fig)
    return path


def plot_error_vs_perturbation(report: EvalReport, path: str | Path) -> Path:
    """PNG with final RRE (deg) and RTE (cm) against the initial perturbation size, one line per calibrator.

    With a sweep: median and inter-quartile band per exact size. Without: every trial of the main
    preset as a dot, plus medians in bins of the initial error. The no-correction baseline is the diagonal.
    """
    plt = _pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    if report.sweep_records:
        recs, xr, xt = report.sweep_records, 'size_deg', 'size_m'
        title = 'sweep (exact perturbation sizes)'
    else:
        recs, xr, xt = report.records, 'init_rre_deg', 'init_rte_cm'
        title = f'preset {report.preset_name}'
    names = list(dict.fromkeys(r['calibrator'] for r in recs))
    colors = plt.rcParams['axes.prop_cycle'].by_key()['color']
    for ax, key_x, key_y, scale_x, label in ((axes[0], xr, 'rre_deg', 1.0, 'rotation'),
                                             (axes[1], xt, 'rte_cm', 100.0 if xt == 'size_m' else 1.0, 'translation')):
        for c, name in enumerate(names):
            rs = [r for r in recs if r['calibrator'] == name]
            x = np.array([r[key_x] for r in rs]) * scale_x
            y = np.array([r[key_y] for r in rs])
            if report.sweep_records:
                x, y = np.maximum(x, 1e-3), np.maximum(y, 1e-3)   # log axes
            col = colors[c % len(colors)]
            if report.sweep_records:
                xs = np.unique(x)
                med = np.array([np.median(y[x == v]) for v in xs])
                q1 = np.array([np.percentile(y[x == v], 25) for v in xs])
                q3 = np.array([np.percentile(y[x == v], 75) for v in xs])
                ax.plot(xs, med, 'o-', color=col, label=name)
                ax.fill_between(xs, q1, q3, color=col, alpha=0.2)
            else:
                ax.plot(x, y, '.', color=col, alpha=0.5, label=name)
                if len(x) >= 4:
                    edges = np.unique(np.percentile(x, np.linspace(0, 100, 6)))
                    idx = np.clip(np.digitize(x, edges[1:-1]), 0, len(edges) - 2)
                    cx = [np.median(x[idx == b]) for b in range(len(edges) - 1) if np.any(idx == b)]
                    cy = [np.median(y[idx == b]) for b in range(len(edges) - 1) if np.any(idx == b)]
                    ax.plot(cx, cy, '-', color=col)
        thr = report.config['success_rre_deg'] if label == 'rotation' else 100.0 * report.config['success_rte_m']
        ax.axhline(thr, color='k', ls=':', lw=1, label='success threshold')
        unit = 'deg' if label == 'rotation' else 'cm'
        ax.set_xlabel(f'initial {label} error ({unit})')
        ax.set_ylabel(f'final {label} error ({unit})')
        if report.sweep_records:                  # sizes span decades: log axes
            ax.set_yscale('log')
            ax.set_xscale('log')
        else:
            ax.set_ylim(bottom=0)
            ax.set_xlim(left=0)
        ax.grid(True, alpha=0.3)
    axes[0].legend(fontsize=8)
    fig.suptitle(f'Calibration error vs initial perturbation, {title}, {report.n_samples} samples')
    return _save(plt, fig, path, dpi=100)


def plot_sequence_convergence(report: EvalReport, path: str | Path) -> Path:
    """PNG of the online sequence protocol: fused RRE (deg) and RTE (cm) after each frame, one thin line per
    sequence and a thick median per calibrator (log y), with the success thresholds."""
    if not report.sequence:
        raise ValueError('plot_sequence_convergence: the report has no sequence results')
    plt = _pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    recs = report.sequence['records']
    names = list(dict.fromkeys(r['calibrator'] for r in recs))
    colors = plt.rcParams['axes.prop_cycle'].by_key()['color']
    for j, (ax, label, unit) in enumerate(((axes[0], 'rotation', 'deg'), (axes[1], 'translation', 'cm'))):
        for c, name in enumerate(names):
            col = colors[c % len(colors)]
            init_key = 'init_rre_deg' if j == 0 else 'init_rte_cm'
            curves = np.array([[max(v, 1e-3) for v in [r[init_key]] + [step[j] for step in r['trajectory']]]
                               for r in recs if r['calibrator'] == name])      # frame 0 = the nominal
            frames = np.arange(curves.shape[1])
            ls = '--' if name.endswith('+joint') else '-'      # a joint row repeats its base row until the end
            for cur in curves:
                ax.plot(frames, cur, ls, color=col, alpha=0.25, lw=0.8)
            ax.plot(frames, np.median(curves, axis=0), ls, color=col, lw=2.2, label=name)
        thr = report.config['success_rre_deg'] if j == 0 else 100.0 * report.config['success_rte_m']
        ax.axhline(thr, color='k', ls=':', lw=1, label='success threshold')
        ax.set_yscale('log')
        ax.set_xlabel('frames seen (all passes; 0 = nominal)')
        ax.set_ylabel(f'fused {label} error ({unit})')
        ax.grid(True, which='both', alpha=0.3)
    axes[0].legend(fontsize=8)
    fig.suptitle(f'online sequences, preset {report.preset_name}: {report.sequence["n_sequences"]} perturbations x '
                 f'{report.n_samples} frames x {report.sequence["passes"]} passes (median thick)')
    return _save(plt, fig, path, dpi=110)
