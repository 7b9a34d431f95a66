#!/usr/bin/env python3
"""Recount the online-sequence success of an ``ncal eval-calib`` report.json written before 2026-12-03 (which
counted it at the single-frame 2 deg / 20 cm) at the sequence thresholds, from the report's own per-sequence
records; writes the thresholds beside the new summary. Usage: rescore_sequences.py REPORT [RRE_DEG RTE_M]."""
from __future__ import annotations

import json
import sys
from pathlib import Path

from ros_ncal.calib.evaluate import summarize_sequences


def rescore(path: Path, rre_deg: float = 1.0, rte_m: float = 0.1) -> dict:
    r = json.loads(path.read_text())
    seq = r['sequence']
    seq['summary'] = summarize_sequences(seq['records'], rre_deg, rte_m)
    seq['success_rre_deg'], seq['success_rte_m'] = rre_deg, rte_m
    path.write_text(json.dumps(r, indent=1))
    return seq['summary']


if __name__ == '__main__':
    args = sys.argv[1:]
    summary = rescore(Path(args[0]), *(float(a) for a in args[1:3]))
    for name, s in summary.items():
        print(f"{name}: success {100 * s['success_rate']:.0f} %")
