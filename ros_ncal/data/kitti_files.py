"""Low-level KITTI object-benchmark file parsing (calib, velodyne, image_2, label_2).

Only file formats here; building Samples / shards is done elsewhere on top of these.
Frames: ``T_cam_lidar`` maps Velodyne points into the *rectified* left colour camera's
optical frame (camera 2), with P2's small horizontal offset folded into the translation, so
that ``K @ (T_cam_lidar @ p)[:3]`` equals ``P2 @ R0_rect @ Tr_velo_to_cam @ p`` exactly.
The KITTI raw layout keeps the same chain in the day's calib files (P_rect_02, R_rect_00 in
calib_cam_to_cam.txt, R and T in calib_velo_to_cam.txt): :func:`read_kitti_raw_calib`.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

KITTI_LABEL_FIELDS = ('type', 'truncated', 'occluded', 'alpha', 'bbox', 'dimensions_hwl', 'location', 'rotation_y')


TEXT_KEYS = ('calib_time',)   # KITTI raw calib files start with a date line


def _read_calib_values(path: Path) -> dict[str, np.ndarray]:
    values: dict[str, np.ndarray] = {}
    for lineno, line in enumerate(Path(path).read_text().splitlines(), 1):
        if not line.strip():
            continue
        if ':' not in line:
            raise ValueError(f'{path}:{lineno}: expected "KEY: values", got {line[:60]!r}')
        key, rest = line.split(':', 1)
        if key.strip() in TEXT_KEYS:
            continue
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
    K, T_cam_lidar = rectified_camera_from_lidar(P2, R0, Tr)
    return {'K': K, 'T_cam_lidar': T_cam_lidar, 'P2': P2, 'R0_rect': R0, 'Tr_velo_to_cam': Tr}


def rectified_camera_from_lidar(P: np.ndarray, R_rect: np.ndarray, Tr_velo_to_cam: np.ndarray
                                ) -> tuple[np.ndarray, np.ndarray]:
    """KITTI projection chain -> (K (3, 3), T_cam_lidar (4, 4)) with ``K @ (T_cam_lidar @ p)[:3] ==
    P @ R_rect @ Tr_velo_to_cam @ p``.

    P: (3, 4) rectified projection of the camera (P2 / P_rect_02); R_rect: (3, 3) rectifying rotation of the
    reference camera (R0_rect / R_rect_00); Tr_velo_to_cam: (3, 4) Velodyne -> reference camera 0.
    K = P[:, :3]; P's horizontal offset (the baseline to camera 0) is folded into the translation.
    """
    P = np.asarray(P, np.float64).reshape(3, 4)
    K = P[:, :3].copy()
    T_offset = np.eye(4)
    T_offset[:3, 3] = np.linalg.solve(K, P[:, 3])
    R0_4 = np.eye(4)
    R0_4[:3, :3] = np.asarray(R_rect, np.float64).reshape(3, 3)
    T_cam_lidar = T_offset @ R0_4 @ _to_4x4(np.asarray(Tr_velo_to_cam, np.float64).reshape(3, 4))
    # R_rect and Tr are orthonormal to ~1e-6 in the files; re-orthonormalize the rotation block.
    U, _, Vt = np.linalg.svd(T_cam_lidar[:3, :3])
    T_cam_lidar[:3, :3] = U @ Vt
    return K, T_cam_lidar


def _require(vals: dict, path: Path, key: str, size: int) -> np.ndarray:
    if key not in vals:
        raise ValueError(f'{path}: missing {key} (has {sorted(vals)})')
    if vals[key].size != size:
        raise ValueError(f'{path}: {key} has {vals[key].size} values, expected {size}')
    return vals[key]


def read_kitti_raw_calib(calib_dir: str | Path, camera: int = 2) -> dict[str, np.ndarray]:
    """A KITTI raw day folder's calib_cam_to_cam.txt + calib_velo_to_cam.txt -> the rectified chain of camera
    ``camera`` (image_0X), as :func:`read_kitti_calib` gives for the object benchmark:

    {'K' (3, 3), 'T_cam_lidar' (4, 4) Velodyne -> rectified camera X optical frame, 'P_rect' (3, 4),
    'R_rect_00' (3, 3), 'Tr_velo_to_cam' (3, 4), 'image_hw' (2,) from S_rect_0X}.
    Raises FileNotFoundError / ValueError naming the file and key.
    """
    d = Path(calib_dir)
    c2c, v2c = d / 'calib_cam_to_cam.txt', d / 'calib_velo_to_cam.txt'
    for p in (c2c, v2c):
        if not p.is_file():
            raise FileNotFoundError(f'missing KITTI raw calib file {p}')
    cam = _read_calib_values(c2c)
    velo = _read_calib_values(v2c)
    P = _require(cam, c2c, f'P_rect_{camera:02d}', 12).reshape(3, 4)
    R_rect = _require(cam, c2c, 'R_rect_00', 9).reshape(3, 3)
    Tr = np.concatenate([_require(velo, v2c, 'R', 9).reshape(3, 3), _require(velo, v2c, 'T', 3).reshape(3, 1)],
                        axis=1)
    K, T_cam_lidar = rectified_camera_from_lidar(P, R_rect, Tr)
    S = cam.get(f'S_rect_{camera:02d}')
    hw = np.array([S[1], S[0]]).astype(int) if S is not None and S.size == 2 else np.zeros(2, int)
    return {'K': K, 'T_cam_lidar': T_cam_lidar, 'P_rect': P, 'R_rect_00': R_rect, 'Tr_velo_to_cam': Tr,
            'image_hw': hw}


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
