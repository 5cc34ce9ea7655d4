#!/usr/bin/env bash
# Make a ROS 2 colcon workspace for geoloc_ros (and its interface package geoloc_ros_msgs).
#
#   scripts/make_workspace.sh [--distro auto|none|humble|jazzy|kilted|...] [--build] [WS]
#
# WS (default ~/geoloc_ws) gets src/geoloc_ros (a link to this checkout) and underlay.bash.
# Afterwards, the same commands in both modes:
#
#   cd WS && source underlay.bash
#   colcon build --base-paths src src/geoloc_ros/interfaces
#   source install/setup.bash
#   ros2 launch geoloc_ros localize.launch.py map:=/data/area.tif weights:=default
#
# Two modes (--distro auto: a ROS 2 distro when /opt/ros/<distro> or $ROS_DISTRO exists, else none):
#  * a ROS 2 distro installed (Humble/Jazzy/Kilted): underlay.bash sources /opt/ros/<distro>/setup.bash;
#    rosdep installs what package.xml names (rosdep keys), pip what rosdep has no key for
#    (timm, safetensors, rosbags, pymavlink); --no-deps skips both.
#  * no distro: the project venv is the underlay (scripts/setup_env.sh, skipped with --no-deps:
#    the kilted wheels from PyPI, colcon); the script writes $VENV/local_setup.{bash,sh} (PATH, AMENT_PREFIX_PATH,
#    CMAKE_PREFIX_PATH), which colcon's install/setup.bash then chains like /opt/ros/<distro>.
#    `ros2 launch` needs the launch stack (launch, launch_ros, ros2cli, ...), which no package
#    registry serves: the source archives in ../shared/vendor/ros2_launch (or
#    $GEOLOC_ROS2_LAUNCH_VENDOR) are unpacked into WS/src/ros2_launch and built by the same
#    colcon build. Without them the workspace still builds; run the node with
#    `localize_node --ros-args --params-file ...` instead of ros2 launch.
# --build also runs the colcon build (and prints its time). Idempotent: a second run only
# refreshes what changed.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${GEOLOC_VENV:-$ROOT/.venv}"
DISTRO=auto
BUILD=0
DEPS=1
WS=""
while [ $# -gt 0 ]; do
  case "$1" in
    --distro) DISTRO="$2"; shift 2 ;;
    --distro=*) DISTRO="${1#*=}"; shift ;;
    --build) BUILD=1; shift ;;
    --no-deps) DEPS=0; shift ;;
    -h|--help) sed -n '2,27p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; exit 0 ;;
    -*) echo "make_workspace: unknown option $1 (see --help)" >&2; exit 2 ;;
    *) [ -z "$WS" ] || { echo "make_workspace: one workspace folder, got '$WS' and '$1'" >&2; exit 2; }
       WS="$1"; shift ;;
  esac
done
WS="${WS:-$HOME/geoloc_ws}"
mkdir -p "$WS/src"
WS="$(cd "$WS" && pwd)"

if [ "$DISTRO" = auto ]; then
  DISTRO=none
  if [ -n "${ROS_DISTRO:-}" ] && [ -f "/opt/ros/$ROS_DISTRO/setup.bash" ]; then
    DISTRO="$ROS_DISTRO"
  else
    for d in kilted jazzy humble rolling; do
      if [ -f "/opt/ros/$d/setup.bash" ]; then DISTRO="$d"; break; fi
    done
  fi
fi

# the package itself: a link to this checkout (edits need no copy; colcon finds geoloc_ros here
# and geoloc_ros_msgs under src/geoloc_ros/interfaces, the second --base-paths)
link="$WS/src/geoloc_ros"
if [ -L "$link" ] || [ ! -e "$link" ]; then
  ln -sfn "$ROOT" "$link"
elif [ "$(cd "$link" && pwd -P)" != "$(cd "$ROOT" && pwd -P)" ]; then
  echo "make_workspace: $link exists and is not this checkout ($ROOT)" >&2; exit 2
fi

if [ "$DISTRO" != none ]; then
  # ------------------------------------------------------------------ a ROS 2 distro
  SETUP="/opt/ros/$DISTRO/setup.bash"
  [ -f "$SETUP" ] || { echo "make_workspace: no $SETUP (ROS 2 $DISTRO not installed)" >&2; exit 2; }
  cat > "$WS/underlay.bash" <<EOF
# geoloc_ros workspace underlay (scripts/make_workspace.sh): ROS 2 $DISTRO
source "$SETUP"
EOF
  # the distro's launch stack, not a vendored copy left by an earlier run without a distro
  if [ -d "$WS/src/ros2_launch" ]; then touch "$WS/src/ros2_launch/COLCON_IGNORE"; fi
  if [ "$DEPS" = 1 ]; then
    # shellcheck disable=SC1090
    set +u; source "$SETUP"; set -u
    command -v rosdep >/dev/null || { echo "make_workspace: rosdep not found (apt install python3-rosdep)" >&2; exit 2; }
    if [ ! -d /etc/ros/rosdep/sources.list.d ]; then
      if [ "$(id -u)" = 0 ]; then rosdep init; else sudo rosdep init; fi
    fi
    rosdep update --rosdistro "$DISTRO" >/dev/null
    echo "make_workspace: rosdep install (package.xml of geoloc_ros and geoloc_ros_msgs)"
    rosdep install -y --rosdistro "$DISTRO" --ignore-src --from-paths "$WS/src" "$WS/src/geoloc_ros/interfaces"
    # no rosdep key (or only a *-pip one): pip, for the interpreter of the distro
    py=(python3 -m pip install --user)
    python3 -m pip install --help 2>/dev/null | grep -q -- --break-system-packages && py+=(--break-system-packages)
    echo "make_workspace: pip install timm safetensors rosbags pymavlink (no rosdep key)"
    "${py[@]}" timm safetensors rosbags pymavlink
  fi
  command -v colcon >/dev/null || echo "make_workspace: colcon not found: apt install python3-colcon-common-extensions" >&2
else
  # ------------------------------------------------------------------ no distro: the project venv
  if [ "$DEPS" = 1 ]; then
    GEOLOC_VENV="$VENV" "$ROOT/scripts/setup_env.sh"
  fi
  PY="$VENV/bin/python"
  [ -x "$PY" ] || { echo "make_workspace: no venv at $VENV (run scripts/setup_env.sh)" >&2; exit 1; }
  [ -x "$VENV/bin/colcon" ] || { echo "make_workspace: no colcon in $VENV (scripts/setup_env.sh installs it from requirements/tools.txt)" >&2; exit 1; }
  # the wheels' CMake files with this interpreter's paths (scripts/build_msgs.sh, run by setup_env, did it)
  for sh in bash sh; do
    cat > "$VENV/local_setup.$sh" <<EOF
# ROS 2 underlay = the geoloc_ros venv (kilted wheels from PyPI); written by scripts/make_workspace.sh.
# colcon's install/setup.$sh sources it for a workspace built on top of it.
export VIRTUAL_ENV="$VENV"
case ":\$PATH:" in *":$VENV/bin:"*) ;; *) export PATH="$VENV/bin:\$PATH" ;; esac
case ":\${AMENT_PREFIX_PATH:-}:" in *":$VENV:"*) ;; *) export AMENT_PREFIX_PATH="$VENV\${AMENT_PREFIX_PATH:+:\$AMENT_PREFIX_PATH}" ;; esac
case ":\${CMAKE_PREFIX_PATH:-}:" in *":$VENV:"*) ;; *) export CMAKE_PREFIX_PATH="$VENV\${CMAKE_PREFIX_PATH:+:\$CMAKE_PREFIX_PATH}" ;; esac
unset PYTHONHOME
EOF
  done
  cat > "$WS/underlay.bash" <<EOF
# geoloc_ros workspace underlay (scripts/make_workspace.sh): the venv $VENV (kilted wheels, no ROS distro)
source "$VENV/local_setup.bash"
EOF
  # ros2 launch: the vendored launch stack, built by the same colcon build
  VENDOR="${GEOLOC_ROS2_LAUNCH_VENDOR:-$ROOT/../shared/vendor/ros2_launch}"
  if [ -d "$VENDOR" ] && compgen -G "$VENDOR/*.tar.gz" >/dev/null; then
    VENDOR="$(cd "$VENDOR" && pwd)"
    want="$(sha256sum "$VENDOR"/*.tar.gz | sha256sum | cut -d' ' -f1)"
    dest="$WS/src/ros2_launch"
    if [ "$(cat "$dest/.geoloc_vendor_stamp" 2>/dev/null)" != "$want" ]; then
      rm -rf "$dest"; mkdir -p "$dest"
      for t in "$VENDOR"/*.tar.gz; do tar -xzf "$t" -C "$dest"; done
      echo "$want" > "$dest/.geoloc_vendor_stamp"
      echo "make_workspace: launch stack from $VENDOR unpacked into $dest"
    fi
    rm -f "$dest/COLCON_IGNORE"
    # what launch, ros2cli and osrf_pycommon need from PyPI (requirements/tools.txt has them)
    "$PY" -c "import osrf_pycommon, psutil, argcomplete" 2>/dev/null \
      || { echo "make_workspace: osrf-pycommon, psutil or argcomplete missing in $VENV (requirements/tools.txt)" >&2; exit 1; }
  else
    echo "make_workspace: no launch stack at $VENDOR: the workspace builds, but without ros2 launch/ros2 param" >&2
    echo "  (run the node as: localize_node --ros-args --params-file install/geoloc_ros/share/geoloc_ros/config/localize.yaml -p map:=...)" >&2
  fi
fi

echo "make_workspace: $WS ready (underlay: $([ "$DISTRO" = none ] && echo "venv $VENV" || echo "ROS 2 $DISTRO"))"
if [ "$BUILD" = 1 ]; then
  cd "$WS"
  t0=$(date +%s)
  # shellcheck disable=SC1091
  set +u; source underlay.bash; set -u
  colcon build --base-paths src src/geoloc_ros/interfaces --cmake-args -DBUILD_TESTING=OFF
  echo "make_workspace: colcon build took $(( $(date +%s) - t0 )) s"
fi
cat <<EOF
next:
  cd $WS && source underlay.bash
  colcon build --base-paths src src/geoloc_ros/interfaces
  source install/setup.bash
  ros2 launch geoloc_ros localize.launch.py map:=/path/to/map.tif weights:=default
EOF
