#!/usr/bin/env bash
# Set up, then run the whole test suite (slow tests included). Extra arguments go to pytest,
# e.g. `bash scripts/test.sh -m "not slow"` for the fast ones only.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh dev
exec .venv/bin/python -m pytest "$@"
