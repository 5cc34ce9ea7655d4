#!/usr/bin/env bash
# Build the geoloc_ros_msgs interface package (msg/*.msg) into the virtual environment.
#
# Why: the ROS 2 wheels from PyPI ship rosidl and ament_cmake, so the package's own
# messages can be generated and installed into $VIRTUAL_ENV like a workspace overlay
# (Python module geoloc_ros_msgs, C libraries in $VIRTUAL_ENV/lib, which the wheels'
# bootstrapper already puts on LD_LIBRARY_PATH). Idempotent: a stamp of the inputs makes
# a second run return at once. In a ROS workspace use colcon instead (docs/MESSAGES.md).
# After `pip install '.[ros]'` into any venv (the extra brings ament_cmake and rosidl):
#   VIRTUAL_ENV=/path/to/venv scripts/build_msgs.sh      (needs cmake and a C/C++ compiler)
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${VIRTUAL_ENV:-$ROOT/.venv}"
PY="$VENV/bin/python"
PKG_DIR="$ROOT/interfaces/geoloc_ros_msgs"
# one CMake build folder per venv: a cache configured against another venv's ament_cmake would
# build against that venv (pip install '.[ros]' into a second venv, then this script)
if [ "$VENV" = "$ROOT/.venv" ]; then
  BUILD="$ROOT/build/geoloc_ros_msgs"
else
  BUILD="$ROOT/build/geoloc_ros_msgs-$(printf %s "$VENV" | sha256sum | cut -c1-8)"
fi
[ -x "$PY" ] || { echo "build_msgs: no Python at $PY (run scripts/setup_env.sh)" >&2; exit 2; }

SITE="$("$PY" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')"
STAMP="$VENV/.geoloc_msgs_stamp"
WANT="$(cat "$ROOT"/msg/*.msg "$ROOT"/msg/srv/*.srv "$PKG_DIR/CMakeLists.txt" "$PKG_DIR/package.xml" "${BASH_SOURCE[0]}" | sha256sum | cut -d' ' -f1)"
if [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$WANT" ] && [ -f "$SITE/geoloc_ros_msgs/msg/__init__.py" ]; then
  echo "build_msgs: geoloc_ros_msgs is up to date"
  exit 0
fi

# The wheels' exported CMake files carry the wheel build host's Python paths; point them
# at this interpreter once (files already rewritten no longer match, so this is idempotent).
PYINC="$("$PY" -c 'import sysconfig; print(sysconfig.get_paths()["include"])')"
NPINC="$("$PY" -c 'import numpy; print(numpy.get_include())')"
mapfile -t stale < <(grep -rl /opt/python/cp311-cp311 "$VENV/share" --include='*.cmake' 2>/dev/null || true)
if [ "${#stale[@]}" -gt 0 ]; then
  sed -i "s#/opt/python/cp311-cp311/lib/python3.11/site-packages/numpy/_core/include#$NPINC#g; s#/opt/python/cp311-cp311/include/python3.11#$PYINC#g" "${stale[@]}"
fi

echo "build_msgs: building geoloc_ros_msgs into $VENV (~10 s)"
mkdir -p "$BUILD"
LOG="$BUILD/build.log"
export AMENT_PREFIX_PATH="$VENV${AMENT_PREFIX_PATH:+:$AMENT_PREFIX_PATH}"
export CMAKE_PREFIX_PATH="$VENV${CMAKE_PREFIX_PATH:+:$CMAKE_PREFIX_PATH}"
if ! { cmake -S "$PKG_DIR" -B "$BUILD" -DCMAKE_INSTALL_PREFIX="$VENV" -DPython3_EXECUTABLE="$PY" \
         -DBUILD_TESTING=OFF -DCMAKE_BUILD_TYPE=Release \
       && cmake --build "$BUILD" -j2 && cmake --install "$BUILD"; } >"$LOG" 2>&1; then
  tail -n 30 "$LOG" >&2
  echo "build_msgs: build failed (full log: $LOG)" >&2
  exit 1
fi
# Installed under <prefix>/lib/python3.11/site-packages, which is this venv's site dir.
"$PY" -c "from geoloc_ros_msgs.msg import LocalizerStatus; from geoloc_ros_msgs.srv import SetInitialFix" \
  || { echo "build_msgs: geoloc_ros_msgs built but does not import" >&2; exit 1; }
echo "$WANT" > "$STAMP"
echo "build_msgs: geoloc_ros_msgs ready"
