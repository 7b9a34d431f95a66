"""What ``ncal demo`` shows a user: pose comparisons, before/after overlays, a convergence plot, a table.

No ROS here: inputs are numpy arrays and plain dicts produced by the demo's graph run.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ros_ncal.geometry import T_to_xyz_quat, invert, pose_error

from .projection_overlay import draw_projection_overlay


def pose_entry(T_cam_lidar: np.ndarray | None, T_true: np.ndarray) -> dict | None:
    """(4, 4) T_cam_lidar vs the truth -> {xyz, quat_xyzw (of T_lidar_cam, as on TF), rot_err_deg, trans_err_cm}."""
    if T_cam_lidar is None:
        return None
    T_cam_lidar = np.asarray(T_cam_lidar, dtype=np.float64)
    rot, trans = pose_error(T_cam_lidar, T_true)
    xyz, q = T_to_xyz_quat(invert(T_cam_lidar))
    return {'T_cam_lidar': np.round(T_cam_lidar, 9).tolist(), 'lidar_to_camera_xyz': np.round(xyz, 5).tolist(),
            'lidar_to_camera_quat_xyzw': np.round(q, 6).tolist(), 'rot_err_deg': round(float(rot), 4),
            'trans_err_cm': round(float(trans) * 100.0, 3)}


def _label(img: np.ndarray, text: str, color=(255, 255, 255)) -> np.ndarray:
    """Prepend a black banner with ``text`` above an (H, W, 3) image."""
    from PIL import Image, ImageDraw, ImageFont
    h = max(18, img.shape[0] // 14)
    try:
        font = ImageFont.load_default(size=int(h * 0.75))
    except TypeError:   # Pillow < 10.1: fixed-size bitmap font
        font = ImageFont.load_default()
    banner = Image.new('RGB', (img.shape[1], h), (0, 0, 0))
    ImageDraw.Draw(banner).text((6, 1), text, fill=color, font=font)
    return np.concatenate([np.asarray(banner), img], axis=0)


def save_before_after(image: np.ndarray, points: np.ndarray, K: np.ndarray, T_before: np.ndarray,
                      T_after: np.ndarray, T_true: np.ndarray, out_dir: str | Path, title: str = '',
                      radius: int | None = None) -> dict[str, str]:
    """Project ``points`` (N, 3+) LiDAR with the nominal (before), the final estimate (after) and the truth
    onto ``image`` (H, W, 3) uint8 -> before.png, after.png, truth.png and comparison.png (stacked, labelled).
    radius: drawn point half-size (None: 1 for images >= 800 px wide, else 0). Returns {name: path}."""
    if radius is None:
        radius = 1 if image.shape[1] >= 800 else 0
    from PIL import Image
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths, panels = {}, []
    for name, T in (('before', T_before), ('after', T_after), ('truth', T_true)):
        ov, n = draw_projection_overlay(image, points, T, K, radius=radius)
        p = out_dir / f'{name}.png'
        Image.fromarray(ov).save(p)
        paths[name] = str(p)
        rot, trans = pose_error(T, T_true)
        what = {'before': 'BEFORE: nominal extrinsic', 'after': 'AFTER: calibrator estimate',
                'truth': 'ground truth'}[name]
        panels.append(_label(ov, f'{what}  ({rot:.2f} deg, {trans * 100:.1f} cm from truth, {n} points)'))
    grid = np.concatenate(panels, axis=0)
    if title:
        grid = _label(grid, title, color=(255, 220, 0))
    p = out_dir / 'comparison.png'
    Image.fromarray(grid).save(p)
    paths['comparison'] = str(p)
    return paths


def save_convergence_plot(rot_err_deg: list[float], trans_err_cm: list[float], confidence: list[float],
                          path: str | Path, title: str = '', x: list[float] | None = None,
                          xlabel: str = 'calibrated frame', vlines: list[tuple[float, str]] = (),
                          published: list[tuple[float, float, float]] = (),
                          targets: tuple[float, float] | None = None) -> str:
    """PNG: the calibrator's ~/extrinsic error vs truth (deg, cm) and its confidence, per calibrated frame
    (or at times ``x``, e.g. seconds of the replay). vlines: (x, label) markers (pass starts); published:
    (x, rot_err_deg, trans_err_cm) of the calibrator's /tf_static publications (stars); targets: (deg, cm)
    drawn as dashed lines."""
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    fig, axes = plt.subplots(1, 3, figsize=(12, 3.2))
    x = np.arange(1, len(rot_err_deg) + 1) if x is None else np.asarray(x, np.float64)
    for k, (ax, y, lab) in enumerate(((axes[0], rot_err_deg, 'rotation error (deg)'),
                                      (axes[1], trans_err_cm, 'translation error (cm)'),
                                      (axes[2], confidence[:len(x)], 'fused confidence'))):
        ax.plot(x[:len(y)], y, marker='.', label='~/extrinsic')
        if k < 2 and published:
            ax.plot([p[0] for p in published], [p[1 + k] for p in published], '*', color='tab:red', ms=10,
                    label='/tf_static published')
            ax.legend(fontsize=7)
        if k < 2 and targets is not None:
            ax.axhline(targets[k], ls='--', color='gray', lw=0.8)
        for xv, vl in vlines:
            ax.axvline(xv, color='gray', lw=0.6, ls=':')
            ax.text(xv, ax.get_ylim()[1], f' {vl}', fontsize=7, va='top', color='gray')
        ax.set_xlabel(xlabel)
        ax.set_ylabel(lab)
        ax.grid(alpha=0.3)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return str(path)


def _fmt(entry: dict | None) -> str:
    return '-' if entry is None else f'{entry["rot_err_deg"]:6.2f} deg {entry["trans_err_cm"]:6.1f} cm'


def format_summary_table(runs: list[dict]) -> str:
    """One line per run: error vs truth of the nominal (before), the final ~/extrinsic (after) and the
    last /tf_static the calibrator published; confidence; frames; latency."""
    head = (f'{"run":<20} {"nominal (before)":>22} {"~/extrinsic (after)":>22} {"calibrator /tf_static":>22} '
            f'{"conf":>5} {"calib/recv/drop":>15} {"latency ms":>11}')
    lines = [head, '-' * len(head)]
    for r in runs:
        fr = r['frames']
        lat = r['latency_ms'].get('calibration_p50')
        if lat is None:   # realtime pace: the node's last pair -> outputs latency
            lat = r['latency_ms'].get('node_calibration_last')
        lines.append(f'{r["name"]:<20} {_fmt(r["nominal"]):>22} {_fmt(r["estimate"]):>22} '
                     f'{_fmt(r["tf_static_published"]):>22} {r["confidence"]:5.2f} '
                     f'{fr["calibrated"]:>5}/{fr["received"]}/{fr["dropped"]:<5} '
                     f'{"-" if lat is None else f"{lat:.0f}":>11}')
    return '\n'.join(lines)


def save_overlay_gif(frames: list[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, str]], path: str | Path,
                     scale: float = 0.5, frame_ms: int = 200, radius: int = 0) -> dict:
    """Animated GIF of projections: frames [(image (H, W, 3) uint8, points (N, 3+), K (3, 3), T_cam_lidar (4, 4),
    banner text)], each drawn by :func:`draw_projection_overlay` at ``scale`` under its banner.
    -> {'path', 'frames', 'bytes', 'size': [w, h]}."""
    from PIL import Image
    if not frames:
        raise ValueError('no frames for the GIF')
    imgs = []
    for image, points, K, T, text in frames:
        ov, _ = draw_projection_overlay(image, points, T, K, radius=radius, scale=scale)
        imgs.append(Image.fromarray(_label(ov, text)).quantize(colors=255, method=Image.Quantize.FASTOCTREE,
                                                                 dither=Image.Dither.NONE))
    path = Path(path)
    imgs[0].save(path, save_all=True, append_images=imgs[1:], duration=int(frame_ms), loop=0, optimize=True)
    return {'path': str(path), 'frames': len(imgs), 'bytes': path.stat().st_size, 'size': list(imgs[0].size)}
