# Sourced by scripts/demo and scripts/test: a virtualenv in .venv with inferpipe installed,
# with the extras named by the first argument (scripts/test: `all`; the demo: none).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
PYTHON="${PYTHON:-python3}"
if [ ! -x .venv/bin/python ]; then
    echo "creating .venv with $("$PYTHON" --version)"
    "$PYTHON" -m venv .venv
fi
EXTRAS="${1:-}"
.venv/bin/python -m pip install -q --disable-pip-version-check -e ".${EXTRAS:+[$EXTRAS]}"
