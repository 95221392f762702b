#!/usr/bin/env bash
# Set up, then index scikit-image's sample photos (or the folder given), search, and
# write a contact sheet. Usage: bash scripts/demo.sh [FOLDER]
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh samples
exec .venv/bin/lookalike demo "$@"
