"""Gross-error recovery with the learned calibrator: many local starts, the network votes.

The network is trained on perturbations up to the pretext's range (10 deg / 0.5 m for the shipped model),
so from a guess 20 deg off it has no basin to fall into. :class:`MultiStartNCLR` tries the guess and a set
of rotated copies of it that cover the gross range (by default the guess, 6 axis starts and 8 cube-corner
starts at ``offset_deg``), runs one network pass from each, then refines the most promising ones with
further passes and picks by *agreement*: converged rotations within ``agree_deg`` of each other form a
cluster, a cluster's score is the sum of its members' confidences (the truth attracts several starts; a
wrong basin rarely attracts more than one), and the best member of the best cluster is the estimate.

Translation is left as the base calibrator's translation model leaves it (the shipped default: kept, for a
classical or joint multi-frame stage to estimate). Cost: ``len(starts) + top_k * refine_passes``
network passes per frame (15 + 6 at the defaults, about 4 s on 2 CPU cores); meant for the first frames
of a badly calibrated rig, not for every frame.
"""
from __future__ import annotations

import itertools
import time
from collections import Counter
from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import torch

from ros_ncal.calib.result import ESTIMATED_ALL, ESTIMATED_NONE, ESTIMATED_ROTATION, CalibResult
from ros_ncal.config_io import SectionConfig
from ros_ncal.data.sample import Sample
from ros_ncal.geometry import make_T, rotation_angle_deg, rotvec_to_matrix


@dataclass
class MultiStartConfig(SectionConfig):
    """Settings of the multi-start stage (YAML section ``nclr_multistart``)."""

    SECTION: ClassVar[str] = 'nclr_multistart'
    CONFIG_NAME: ClassVar[str] = 'nclr multi-start config'

    offset_deg: float = 12.0       # rotation of the axis starts; cube corners get the same angle
    corners: bool = True           # also the 8 cube-corner directions (15 starts instead of 7)
    top_k: int = 3                 # starts refined further
    refine_passes: int = 2         # extra network passes for each of the top_k
    agree_deg: float = 2.0         # converged rotations this close vote together

    def validate(self) -> None:
        if not 0 < self.offset_deg < 90 or self.top_k < 1 or self.refine_passes < 0 or self.agree_deg <= 0:
            raise ValueError('nclr multi-start config: 0 < offset_deg < 90, top_k >= 1, refine_passes >= 0, '
                             'agree_deg > 0')


def start_rotations(offset_deg: float, corners: bool = True) -> list[np.ndarray]:
    """(3, 3) rotations: identity, +-offset about each camera axis, and (``corners``) offset about the
    8 diagonals (+-1, +-1, +-1)/sqrt(3). Applied on the left of the guess (camera frame)."""
    a = np.deg2rad(offset_deg)
    axes = [np.eye(3)[i] * s for i in range(3) for s in (1.0, -1.0)]
    if corners:
        axes += [np.array(c) / np.sqrt(3.0) for c in itertools.product((1.0, -1.0), repeat=3)]
    return [np.eye(3)] + [rotvec_to_matrix(ax * a) for ax in axes]


def cluster_by_rotation(Ts: list[np.ndarray], scores: list[float], agree_deg: float) -> tuple[list[int], float]:
    """Greedy agreement: for each candidate, the candidates whose rotation is within ``agree_deg``; returns the
    members of the cluster with the largest summed score and that sum."""
    best_members, best_score = [], -1.0
    for i, Ti in enumerate(Ts):
        members = [j for j, Tj in enumerate(Ts)
                   if rotation_angle_deg(Ti[:3, :3] @ Tj[:3, :3].T) <= agree_deg]
        s = float(sum(scores[j] for j in members))
        if s > best_score:
            best_members, best_score = members, s
    return best_members, best_score


class MultiStartNCLR:
    """``estimate(sample, T_init) -> CalibResult`` over many starts of an :class:`NCLRCalibrator` (module doc)."""

    name = 'nclr_wide'

    def __init__(self, base, cfg: MultiStartConfig | None = None):
        self.base = base
        self.cfg = cfg or MultiStartConfig()
        self.starts = start_rotations(self.cfg.offset_deg, self.cfg.corners)

    def estimate(self, sample: Sample, T_init: np.ndarray) -> CalibResult:
        t0 = time.perf_counter()
        T_init = np.asarray(T_init, dtype=np.float64)
        try:
            infer = self.base.infer
            rng = np.random.default_rng(infer.seed)
            gen = torch.Generator().manual_seed(infer.seed)
            first = []                      # (confidence, T) of the starts that gave an estimate
            reasons: Counter = Counter()
            for R in self.starts:
                T_new, info = self.base.one_pass(sample, make_T(R, np.zeros(3)) @ T_init, rng, gen)
                if T_new is None:
                    reasons[info.get('reason', '?')] += 1
                    continue
                first.append((float(info.get('confidence', 0.0)), T_new))
            extras = {'starts': len(self.starts), 'usable_starts': len(first)}
            if not first:
                why = reasons.most_common(1)[0][0] if reasons else 'no estimate'
                return CalibResult.failure(T_init, f'nclr_wide: no start gave an estimate ({why})',
                                           latency_s=time.perf_counter() - t0, **extras)
            first.sort(key=lambda c: -c[0])
            finals, confs = [], []
            for conf, T in first[:self.cfg.top_k]:
                for _ in range(self.cfg.refine_passes):
                    T_new, info = self.base.one_pass(sample, T, rng, gen)
                    if T_new is None:
                        break
                    T, conf = T_new, float(info.get('confidence', 0.0))
                finals.append(T)
                confs.append(conf)
            # the unrefined starts vote too (one pass moves a start most of the way into its basin)
            voters = finals + [T for _c, T in first[self.cfg.top_k:]]
            votes = confs + [c for c, _T in first[self.cfg.top_k:]]
            members, score = cluster_by_rotation(voters, votes, self.cfg.agree_deg)
            refined = [m for m in members if m < len(finals)] or members
            best = max(refined, key=lambda m: votes[m])
            T_best, conf = voters[best], float(np.clip(votes[best], 0.0, 1.0))
            extras.update(cluster_size=len(members), cluster_score=score, latency_s=time.perf_counter() - t0,
                          correction_deg=rotation_angle_deg(T_best[:3, :3] @ T_init[:3, :3].T))
            if conf < infer.min_confidence:
                extras['T_estimate'] = T_best.tolist()
                return CalibResult(T_init.copy(), conf, False, f'nclr_wide: low confidence {conf:.2f}', extras,
                                   ESTIMATED_NONE)
            estimated = ESTIMATED_ROTATION if infer.translation == 'fixed' else ESTIMATED_ALL
            return CalibResult(T_best, conf, True, 'nclr_wide: ok', extras, estimated)
        except Exception as exc:  # never let one frame stop a batch or a node
            return CalibResult.failure(T_init, f'nclr_wide: {type(exc).__name__}: {exc}',
                                       latency_s=time.perf_counter() - t0)
