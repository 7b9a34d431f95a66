"""The marker lists in conftest.py name tests that exist (a renamed test must not silently lose its marker)."""
from __future__ import annotations

import ast
from pathlib import Path

import conftest

TEST_DIR = Path(__file__).resolve().parent


def _test_functions(module: str) -> set[str]:
    tree = ast.parse((TEST_DIR / f'{module}.py').read_text())
    return {n.name for n in ast.walk(tree) if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))
            and n.name.startswith('test')}


def test_marker_lists_name_existing_modules_and_tests():
    missing = [m for m in conftest.ROS_MODULES | conftest.SLOW_MODULES if not (TEST_DIR / f'{m}.py').is_file()]
    for entry in conftest.ROS_TESTS | conftest.SLOW_TESTS:
        file, _, name = entry.partition('::')
        module = file.removesuffix('.py')
        if not (TEST_DIR / file).is_file() or name not in _test_functions(module):
            missing.append(entry)
    assert not missing, f'conftest.py marker lists name tests that do not exist: {sorted(missing)}'
