#!/usr/bin/env bash
# Set up (idempotent) and run the whole test suite. Extra args go to pytest.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bash "$ROOT/scripts/setup.sh"
cd "$ROOT"
exec "${NCAL_VENV:-$ROOT/.venv}/bin/python" -m pytest -q -p no:cacheprovider --timeout=600 "$@"
