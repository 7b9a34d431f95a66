"""Typed configuration of the NCLR pretext task, network, losses and training (loaded from YAML)."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path

from ros_ncal.config_io import dataclass_from_dict, deep_merge, load_yaml_with_base


@dataclass
class PerturbationConfig:
    """How the hidden pose is drawn.

    preset 'calib': uniform random axis, angle in [0, max_angle_deg], translation norm in [0, max_trans_m]
    (online extrinsic refinement; the cloud is given in the frame of the wrong guess).
    preset 'wide': the paper's image-to-point setting (yaw uniform in [0, 360) deg, xy ~ N(0, sigma) clipped).
    curriculum_steps: linear ramp of the bounds from ``start_fraction`` x max to max over this many steps.
    """
    preset: str = 'calib'
    max_angle_deg: float = 10.0
    max_trans_m: float = 0.5
    wide_trans_sigma_m: float = 4.0
    wide_trans_clip_m: float = 15.0
    curriculum_steps: int = 0
    start_fraction: float = 0.2


@dataclass
class InputConfig:
    """Network input preparation."""
    image_hw: tuple[int, int] = (96, 320)       # resized image (H, W)
    max_points: int = 12000                     # random subsample of the cloud
    frustum_margin: float = 0.5                 # keep points whose projection (with the input guess) is within
                                                # this fraction of the image size outside the border; <0: keep all
    min_depth: float = 1.0
    max_depth: float = 60.0
    hflip_prob: float = 0.0                     # image+cloud mirror augmentation (keeps K consistent)
    color_jitter: float = 0.1
    # Real-data augmentation and any-size cameras (docs/nclr.md "Real data").
    keep_aspect: bool = False                   # crop the image to the network aspect ratio before resizing
                                                # (train and inference alike), instead of stretching it
    crop_scale: tuple[float, float] = (1.0, 1.0)  # training: random crop of this fraction of the (aspect) crop,
                                                # at a random position, then resized (K follows)
    crop_prob: float = 0.0
    gamma_jitter: float = 0.0                   # training: image gamma in [1-g, 1+g]
    blur_prob: float = 0.0                      # training: Gaussian blur (sigma 0.5-1.5 px) with this probability
    beam_keep: tuple[int, ...] = (1,)           # training: keep every k-th LiDAR ring, k drawn from this list
                                                # (1: all; 2, 4: look like 32 / 16-beam sensors)
    beam_bin_deg: float = 0.42                  # ring width used to rebuild rings from elevation
    point_dropout: float = 0.0                  # training: drop up to this fraction of points at random


@dataclass
class NetworkConfig:
    point_backbone: dict = field(default_factory=lambda: {'depth': 14, 'width': 0.5, 'voxel_size': 0.2, 'out_dim': 64,
                                                          'in_channels': 1})
    image_backbone: dict = field(default_factory=lambda: {'depth': 18, 'base_channels': 16, 'out_dim': 64, 'stride': 4})
    embed_dim: int = 64
    alignment: str = 'lta'                       # 'lta' (learnable transformation alignment) or 'cosine'
    attention_tokens: tuple[int, int] = (6, 20)  # pooled image grid used as cross-attention context
    temperature: float = 0.05                    # soft matching softmax temperature
    learn_temperature: bool = True
    num_keypoints: int = 256
    match_window: float = 0.0                   # >0: match only within this many feature cells of the
                                                # guess projection (calib preset); 0: all pixels (wide)
    overlap_threshold: float = 0.5
    pnp_iters: int = 8
    pnp_init: str = 'identity'                  # 'identity' (calib preset: cloud already in the guessed camera frame), 'epnp', 'auto'


@dataclass
class LossConfig:
    matching: float = 1.0        # cross-entropy of the soft match against the true pixel cell
    matching_l1: float = 0.02    # L1 (pixels at feature resolution) between expected and true pixel
    overlap: float = 1.0         # point and pixel overlap BCE
    pose: float = 1.0            # SmoothL1 on rotation matrix + trans_weight x SmoothL1 on translation (m)
    pose_trans_weight: float = 0.1
    pose_start_step: int = 0     # pose loss switched on from this step (the paper enables it late)


@dataclass
class TrainConfig:
    data: dict = field(default_factory=lambda: {'kind': 'synthetic', 'train_indices': [0, 2000], 'config': None})
    batch_size: int = 2
    steps: int = 1000
    lr: float = 1e-3
    weight_decay: float = 1e-3
    warmup_fraction: float = 0.05
    min_lr_fraction: float = 0.01
    grad_clip: float = 5.0
    num_workers: int = 0
    num_threads: int = 0          # torch intra-op CPU threads; 0 leaves torch's default (1 is fastest on 2 busy cores)
    log_every: int = 10
    ckpt_every: int = 100
    amp: bool = True             # mixed precision on CUDA only
    seed: int = 0
    init_from: str | None = None  # NCLR checkpoint whose weights start this run (fine-tuning stage)
    out_dir: str = 'runs/nclr'


@dataclass
class NCLRConfig:
    perturbation: PerturbationConfig = field(default_factory=PerturbationConfig)
    input: InputConfig = field(default_factory=InputConfig)
    network: NetworkConfig = field(default_factory=NetworkConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    train: TrainConfig = field(default_factory=TrainConfig)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict | None) -> 'NCLRConfig':
        """Sections and keys by the rules of :mod:`ros_ncal.config_io` (dict fields merge over their defaults)."""
        return dataclass_from_dict(cls, d, 'nclr config', merge_dict_defaults=True)

    @classmethod
    def from_yaml(cls, path: str | Path, overrides: dict | None = None) -> 'NCLRConfig':
        """Load a YAML config; ``_base_: other.yaml`` (relative to the file, or absolute) is inherited, recursively."""
        d = load_yaml_with_base(path)
        if overrides:
            d = deep_merge(d, overrides)
        return cls.from_dict(d)
