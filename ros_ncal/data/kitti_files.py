"""Low-level KITTI object-benchmark file parsing (calib, velodyne, image_2, label_2).

Only file formats here; building Samples / shards is done elsewhere on top of these.
Frames: ``T_cam_lidar`` maps Velodyne points into the *rectified* left colour camera's
optical frame (camera 2), with P2's small horizontal offset folded into the translation, so
that ``K @ (T_cam_lidar @ p)[:3]`` equals ``P2 @ R0_rect @ Tr_velo_to_cam @ p`` exactly.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

KITTI_LABEL_FIELDS = ('type', 'truncated', 'occluded', 'alpha', 'bbox', 'dimensions_hwl', 'location', 'rotation_y')


def _read_calib_values(path: Path) -> dict[str, np.ndarray]:
    values: dict[str, np.ndarray] = {}
    for lineno, line in enumerate(Path(path).read_text().splitlines(), 1):
        if not line.strip():
            continue
        if ':' not in line:
            raise ValueError(f'{path}:{lineno}: expected "KEY: values", got {line[:60]!r}')
        key, rest = line.split(':', 1)
        try:
            values[key.strip()] = np.array([float(x) for x in rest.split()], dtype=np.float64)
        except ValueError as exc:
            raise ValueError(f'{path}:{lineno}: non-numeric value for {key.strip()}: {exc}') from None
    return values


def _to_4x4(M34: np.ndarray) -> np.ndarray:
    T = np.eye(4)
    T[:3, :] = M34
    return T


def read_kitti_calib(path: str | Path) -> dict[str, np.ndarray]:
    """calib/XXXXXX.txt -> {'K' (3, 3), 'T_cam_lidar' (4, 4), 'P2' (3, 4), 'R0_rect' (3, 3), 'Tr_velo_to_cam' (3, 4)}.

    K = P2[:, :3]; T_cam_lidar = [I | K^-1 P2[:, 3]] @ R0_rect @ Tr_velo_to_cam (all float64).
    Raises ValueError naming a missing or malformed key.
    """
    path = Path(path)
    vals = _read_calib_values(path)
    sizes = {'P2': 12, 'R0_rect': 9, 'Tr_velo_to_cam': 12}
    for key, size in sizes.items():
        if key not in vals:
            raise ValueError(f'{path}: missing {key} (has {sorted(vals)})')
        if vals[key].size != size:
            raise ValueError(f'{path}: {key} has {vals[key].size} values, expected {size}')
    P2 = vals['P2'].reshape(3, 4)
    R0 = vals['R0_rect'].reshape(3, 3)
    Tr = vals['Tr_velo_to_cam'].reshape(3, 4)
    K = P2[:, :3].copy()
    t_extra = np.linalg.solve(K, P2[:, 3])
    T_offset = np.eye(4)
    T_offset[:3, 3] = t_extra
    R0_4 = np.eye(4)
    R0_4[:3, :3] = R0
    T_cam_lidar = T_offset @ R0_4 @ _to_4x4(Tr)
    # R0_rect and Tr are orthonormal to ~1e-6 in the files; re-orthonormalize the rotation block.
    U, _, Vt = np.linalg.svd(T_cam_lidar[:3, :3])
    T_cam_lidar[:3, :3] = U @ Vt
    return {'K': K, 'T_cam_lidar': T_cam_lidar, 'P2': P2, 'R0_rect': R0, 'Tr_velo_to_cam': Tr}


def read_velodyne(path: str | Path) -> np.ndarray:
    """velodyne/XXXXXX.bin -> (N, 4) float32 x, y, z, reflectance (LiDAR frame).

    Raises ValueError when the file size is not a multiple of 16 bytes (truncated file).
    """
    path = Path(path)
    size = path.stat().st_size
    if size % 16:
        raise ValueError(f'{path}: size {size} bytes is not a multiple of 16 (4 float32 per point): truncated?')
    return np.fromfile(path, dtype='<f4').reshape(-1, 4)


def read_image_rgb(path: str | Path) -> np.ndarray:
    """image_2/XXXXXX.png -> (H, W, 3) uint8 RGB. Raises ValueError for a corrupt/unreadable image."""
    from PIL import Image, UnidentifiedImageError
    path = Path(path)
    try:
        with Image.open(path) as im:
            im.load()
            return np.asarray(im.convert('RGB'), dtype=np.uint8).copy()
    except (UnidentifiedImageError, OSError, SyntaxError) as exc:
        raise ValueError(f'{path}: cannot decode image: {exc}') from None


def read_kitti_labels(path: str | Path) -> list[dict]:
    """label_2/XXXXXX.txt -> list of dicts with keys KITTI_LABEL_FIELDS (+ 'score' when present).

    bbox: [left, top, right, bottom] pixels; dimensions_hwl: [h, w, l] m; location: [x, y, z] in
    the camera (rectified) frame, bottom centre of the box; rotation_y: rad around camera y.
    """
    path = Path(path)
    objects = []
    for lineno, line in enumerate(path.read_text().splitlines(), 1):
        parts = line.split()
        if not parts:
            continue
        if len(parts) not in (15, 16):
            raise ValueError(f'{path}:{lineno}: expected 15 or 16 values, got {len(parts)}')
        try:
            v = [float(x) for x in parts[1:]]
        except ValueError as exc:
            raise ValueError(f'{path}:{lineno}: {exc}') from None
        obj = {'type': parts[0], 'truncated': v[0], 'occluded': int(v[1]), 'alpha': v[2],
               'bbox': np.array(v[3:7]), 'dimensions_hwl': np.array(v[7:10]), 'location': np.array(v[10:13]),
               'rotation_y': v[13]}
        if len(v) == 15:
            obj['score'] = v[14]
        objects.append(obj)
    return objects


def kitti_frame_ids(split_dir: str | Path) -> list[str]:
    """Sorted frame ids ('000000', ...) that have velodyne, image_2 and calib files."""
    split_dir = Path(split_dir)
    ids = sorted(p.stem for p in (split_dir / 'velodyne').glob('*.bin'))
    return [i for i in ids if (split_dir / 'image_2' / f'{i}.png').exists()
            and (split_dir / 'calib' / f'{i}.txt').exists()]
