#!/usr/bin/env bash
# Create or refresh .venv with the pinned environment (idempotent).
#
# Why one script: the README, CI and the demo all call this, so every machine runs
# the same set of packages (requirements/lock.txt). A second run compares a stamp
# (hash of the lock + setup files) and returns in seconds without touching anything.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${GEOLOC_VENV:-$ROOT/.venv}"
PYTHON="${PYTHON:-}"
if [ -z "$PYTHON" ]; then
  for cand in python3.11 "$HOME/.pyenv/versions/3.11.7/bin/python3.11" python3; do
    if command -v "$cand" >/dev/null 2>&1; then PYTHON="$cand"; break; fi
  done
fi
"$PYTHON" -c 'import sys; assert sys.version_info[:2] == (3, 11), "Python 3.11 is required (the ROS 2 wheels are cp311)"' \
  || { echo "setup_env: need Python 3.11, got $("$PYTHON" --version 2>&1)" >&2; exit 2; }

STAMP="$VENV/.geoloc_env_stamp"
WANT="$(cd "$ROOT" && for f in requirements/lock.txt requirements/tools.txt setup.py setup.cfg package.xml msg/*.msg scripts/build_msgs.sh; do
  if [ -f "$f" ]; then echo "== $f"; cat "$f"; fi; done | sha256sum | cut -d' ' -f1)"
if [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$WANT" ] && [ -x "$VENV/bin/python" ]; then
  echo "setup_env: $VENV is up to date"
  exit 0
fi

[ -x "$VENV/bin/python" ] || "$PYTHON" -m venv "$VENV"
PIP=("$VENV/bin/python" -m pip --disable-pip-version-check)
"${PIP[@]}" install -q --upgrade "pip>=24" >/dev/null
echo "setup_env: installing pinned packages (torch from the local disk; ~2 min the first time)"
"${PIP[@]}" install -q -r "$ROOT/requirements/lock.txt"
# ruff (lint test) and colcon (scripts/make_workspace.sh); --no-deps: see the file's header
"${PIP[@]}" install -q --no-deps -r "$ROOT/requirements/tools.txt"
"${PIP[@]}" install -q --no-deps -e "$ROOT" >"$VENV/.geoloc_install.log" 2>&1 \
  || { cat "$VENV/.geoloc_install.log" >&2; echo "setup_env: installing geoloc_ros failed" >&2; exit 1; }
if [ -x "$ROOT/scripts/build_msgs.sh" ]; then
  VIRTUAL_ENV="$VENV" "$ROOT/scripts/build_msgs.sh"
fi
"$VENV/bin/python" -c "import rclpy, torch, timm, rasterio, geoloc_ros" \
  || { echo "setup_env: import check failed" >&2; exit 1; }
echo "$WANT" > "$STAMP"
echo "setup_env: ready ($VENV)"
