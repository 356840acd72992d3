#!/usr/bin/env bash
# The two commands of the README:
#   ./dev.sh up     set up (first time) and run the whole stack on embedded defaults
#                   (extra arguments go to `memq up --demo`, e.g. `./dev.sh up --smoke`)
#   ./dev.sh test   set up (first time) and run the test suite
# and the set-up step alone (what CI runs first):
#   ./dev.sh setup  create .venv and install memq with the dev extras (linters, pytest)
# Needs only Python >= 3.11 with pip/venv. No Docker, no system services.
set -euo pipefail
cd "$(dirname "$0")"

VENV=${MEMQ_VENV:-.venv}
PY=${PYTHON:-}
if [ -z "$PY" ]; then
  for cand in python3.11 python3.12 python3.13 python3; do
    if command -v "$cand" >/dev/null 2>&1 && "$cand" -c 'import sys; sys.exit(sys.version_info < (3, 11))'; then
      PY=$cand; break
    fi
  done
fi
[ -n "$PY" ] || { echo "memq needs Python >= 3.11 on PATH" >&2; exit 1; }

setup() {
  local extras=$1
  [ -x "$VENV/bin/python" ] || "$PY" -m venv "$VENV"
  local stamp="$VENV/.memq-installed-$extras"
  local want
  want=$(sha256sum < pyproject.toml | cut -d' ' -f1)
  # The dev install includes the runtime one.
  if [ "$extras" = runtime ] && [ "$(cat "$VENV/.memq-installed-dev" 2>/dev/null)" = "$want" ]; then
    return
  fi
  if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
    "$VENV/bin/python" -m pip install -q --upgrade pip
    # torch first, pinned: it resolves to the CPU wheel instead of a multi-GB CUDA build.
    "$VENV/bin/python" -m pip install -q "torch==2.13.0"
    if [ "$extras" = dev ]; then
      "$VENV/bin/python" -m pip install -q -e ".[dev]"
    else
      "$VENV/bin/python" -m pip install -q -e .
    fi
    echo "$want" > "$stamp"
  fi
}

cmd=${1:-help}
shift || true
case "$cmd" in
  up)
    setup runtime
    exec "$VENV/bin/memq" up --demo "$@"
    ;;
  setup)
    setup dev
    ;;
  test)
    setup dev
    export HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false
    exec "$VENV/bin/python" -m pytest "$@"
    ;;
  *)
    echo "usage: ./dev.sh up [memq up options] | test [pytest args] | setup" >&2
    exit 2
    ;;
esac
