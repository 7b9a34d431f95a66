"""Lint: ruff (pinned in requirements.txt, configured in ruff.toml) finds nothing in the code we ship and test.

Runs the venv's own ruff binary (scripts/setup.sh installs it from requirements.txt). ``NCAL_RUFF`` may name
another ruff executable of the same version.
"""
from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PATHS = ['ros_ncal', 'test', 'bench', 'scripts', 'launch']


def _ruff() -> Path:
    path = Path(os.environ.get('NCAL_RUFF') or Path(sys.executable).parent / 'ruff')
    assert path.is_file(), (f'ruff not found at {path}: it is a pinned test dependency (requirements.txt); '
                            'run scripts/setup.sh to install it into the venv')
    return path


def _pinned_version() -> str:
    m = re.search(r'^ruff==(\S+)', (REPO / 'requirements.txt').read_text(), re.M)
    assert m, 'requirements.txt must pin ruff'
    return m.group(1)


def test_ruff_is_the_pinned_version():
    out = subprocess.run([str(_ruff()), '--version'], capture_output=True, text=True, check=True).stdout
    assert out.split()[-1] == _pinned_version(), f'{out.strip()} but requirements.txt pins {_pinned_version()}'


def test_ruff_finds_nothing():
    assert (REPO / 'ruff.toml').is_file()
    res = subprocess.run([str(_ruff()), 'check', '--no-cache', '--output-format', 'concise', *PATHS],
                         cwd=REPO, capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, f'ruff check {" ".join(PATHS)}:\n{res.stdout}{res.stderr}'
