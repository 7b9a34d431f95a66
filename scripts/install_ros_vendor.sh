#!/usr/bin/env bash
# Install into a venv the ROS 2 packages that no registry here carries, from the upstream archives in
# ../shared/vendor (commit and licence in SOURCES.md there). Called by scripts/setup.sh (which stamps the
# result); safe to re-run: only what is missing (or was installed from an archive of another commit) is built.
#   bash scripts/install_ros_vendor.sh VENV VENDOR_DIR
# Env: NCAL_CV_BRIDGE=1 also builds cv_bridge (apt-get installs libopencv-dev libboost-python-dev when root;
#      NCAL_APT=0 never calls apt-get, and cv_bridge is then built only if those are installed). CI (.ci/run) sets
#      it. Where it cannot be built, one line says why (also in .vendor_build/cv_bridge.skipped, which its test
#      names when it skips) and everything else installs as usual.
#
# What and how (a sourced ROS distro's package wins wherever it already imports):
#   pip (pure Python, --no-deps):  launch launch_xml launch_yaml launch_testing launch_ros ros2launch
#       launch_testing_ros ros2cli ros2pkg ros2run ros2topic ros2node ros2param ros2service ros2interface
#       ros2action ros2lifecycle rosidl_runtime_py sensor_msgs_py message_filters (Python module) tf2_ros
#       tf_transformations
#   cmake + the pip ament/rosidl toolchain, installed into the venv prefix:  composition_interfaces,
#       tf2_msgs (with services), vision_msgs, tf2 (C++), tf2_py (C extension); cv_bridge (C++ + boost-python)
#       only with NCAL_CV_BRIDGE=1 (see below)
# Upstream problems fixed here, on the extracted copy (SOURCES.md, "Known upstream problems"):
#   cv_bridge: the rclcpp type adapter (rclcpp has no wheel) is left out; ndarray.newbyteorder (gone in NumPy 2)
#   tf_transformations: numpy.array(..., copy=False) (an error in NumPy 2) -> copy=None (NumPy 1's meaning)
#   launch_testing(_ros): their pytest11 plugins (hook argument 'path', gone in pytest 9) are not registered
set -euo pipefail
VENV="$1"; VENDOR="$2"
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PYV="$VENV/bin/python"
WORK="$VENV/.vendor_build"; SRC="$WORK/src"; BLD="$WORK/build"; MARK="$WORK/installed"
PIP=("$PYV" -m pip install --disable-pip-version-check -q)
log() { printf '[setup] %s\n' "$*" >&2; }
quiet_pip() { "${PIP[@]}" "$@" 2> >(grep -v -e "is ignored: it is neither" -e "DEPRECATION" >&2); }

[[ -d "$VENDOR" ]] || { log "vendored upstream sources not found at $VENDOR (set NCAL_VENDOR_DIR)"; exit 1; }
mkdir -p "$SRC" "$BLD" "$MARK"

archive() {  # archive file for a repository name: vendor/<name>-<commit>.tar.gz (exactly one)
  local f; f=$(ls -1 "$VENDOR/$1"-*.tar.gz 2>/dev/null | head -1)
  [[ -n "$f" ]] || { log "no $1-*.tar.gz in $VENDOR"; exit 1; }
  echo "$f"
}
unpack() {  # unpack an archive once; echo the folder holding the repository
  local f dest; f=$(archive "$1"); dest="$SRC/$(basename "$f" .tar.gz)"
  if [[ ! -d "$dest" ]]; then mkdir -p "$dest.tmp" && tar xzf "$f" -C "$dest.tmp" && mv "$dest.tmp" "$dest"; fi
  echo "$dest/$1"
}

# PKG:REPO:SUBDIR:KIND:CHECK  (KIND pip|cmake; CHECK = module to import, '-' = installed marker only)
PACKAGES=(
  composition_interfaces:rcl_interfaces:composition_interfaces:cmake:composition_interfaces.srv
  tf2_msgs:geometry2:tf2_msgs:cmake:tf2_msgs.srv
  vision_msgs:vision_msgs:vision_msgs:cmake:vision_msgs.msg._label_info
  tf2:geometry2:tf2:cmake:-
  tf2_py:geometry2:tf2_py:cmake:tf2_py._tf2_py
  launch:launch:launch:pip:launch
  launch_xml:launch:launch_xml:pip:launch_xml
  launch_yaml:launch:launch_yaml:pip:launch_yaml
  launch_testing:launch:launch_testing:pip:launch_testing
  launch_ros:launch_ros:launch_ros:pip:launch_ros
  ros2launch:launch_ros:ros2launch:pip:ros2launch
  launch_testing_ros:launch_ros:launch_testing_ros:pip:launch_testing_ros
  ros2cli:ros2cli:ros2cli:pip:ros2cli
  ros2pkg:ros2cli:ros2pkg:pip:ros2pkg
  ros2run:ros2cli:ros2run:pip:ros2run
  ros2topic:ros2cli:ros2topic:pip:ros2topic
  ros2node:ros2cli:ros2node:pip:ros2node
  ros2param:ros2cli:ros2param:pip:ros2param
  ros2service:ros2cli:ros2service:pip:ros2service
  ros2interface:ros2cli:ros2interface:pip:ros2interface
  ros2action:ros2cli:ros2action:pip:ros2action
  ros2lifecycle:ros2cli:ros2lifecycle:pip:ros2lifecycle
  rosidl_runtime_py:rosidl_runtime_py:.:pip:rosidl_runtime_py
  sensor_msgs_py:common_interfaces:sensor_msgs_py:pip:sensor_msgs_py
  message_filters:message_filters:.:pip:message_filters
  tf2_ros_py:geometry2:tf2_ros_py:pip:tf2_ros
  tf_transformations:tf_transformations:.:pip:tf_transformations
)

# cv_bridge only on request (NCAL_CV_BRIDGE=1; CI sets it): its CMake needs OpenCVConfig.cmake, which Debian ships
# only in the libopencv-dev meta package (214 packages with VTK, GDAL, ...: system packages, installed as root), and
# cv_bridge.cpp includes <opencv2/opencv.hpp>, i.e. the headers of every OpenCV module, so the
# core/imgproc/imgcodecs -dev packages are not enough. Measured (docs/ros.md): apt 27 s + build 27 s.
if [[ "${NCAL_CV_BRIDGE:-0}" == "1" ]]; then
  PACKAGES+=(cv_bridge:vision_opencv:cv_bridge:cmake:cv_bridge.boost.cv_bridge_boost)
else
  echo "not requested (NCAL_CV_BRIDGE=1 bash scripts/setup.sh builds it; CI does)" > "$WORK/cv_bridge.skipped"
fi

# Which are missing: not importable, or installed into this venv from an archive other than today's.
# A package importable from outside the venv (a sourced ROS distro) counts as present.
missing_packages() {
  local specs=() p
  for p in "${PACKAGES[@]}"; do
    IFS=: read -r name repo _sub _kind check <<<"$p"
    specs+=("$name" "$check" "$(basename "$(archive "$repo")")")
  done
  (cd / && "$PYV" - "$VENV" "$MARK" "${specs[@]}") <<'PYEOF'
import importlib, importlib.util, os, sys
venv, mark, rest = os.path.realpath(sys.argv[1]), sys.argv[2], sys.argv[3:]
sys.path = [p for p in sys.path if p not in ('', os.getcwd())]   # a folder named like a package is not one
prefixes = [p for p in os.environ.get('AMENT_PREFIX_PATH', '').split(os.pathsep) if p]
for name, check, arc in zip(rest[0::3], rest[1::3], rest[2::3]):
    marker = os.path.join(mark, name)
    ours = os.path.exists(marker) and open(marker).read().strip() == arc
    if check == '-':  # C++ only: ours, or a distro prefix that has it
        outside = any(os.path.isdir(os.path.join(p, 'share', name)) for p in prefixes
                      if os.path.realpath(p) != venv)
        if not (ours or outside):
            print(name)
        continue
    try:
        mod = importlib.import_module(check)
        where = os.path.realpath(mod.__file__)   # None for a namespace package: not the package we want
    except Exception:  # noqa: BLE001 - anything that stops the import means "build it"
        print(name)
        continue
    if where.startswith(venv + os.sep) and not ours:
        print(name)
PYEOF
}

mapfile -t MISSING < <(missing_packages)
if (( ${#MISSING[@]} == 0 )); then
  exit 0
fi
log "ROS 2 packages to install from $VENDOR: ${MISSING[*]}"
is_missing() { local m; for m in "${MISSING[@]}"; do [[ "$m" == "$1" ]] && return 0; done; return 1; }
spec_of() { local p; for p in "${PACKAGES[@]}"; do [[ "${p%%:*}" == "$1" ]] && { echo "$p"; return; }; done; }
mark_done() { IFS=: read -r _n repo _rest <<<"$(spec_of "$1")"; basename "$(archive "$repo")" > "$MARK/$1"; }

quiet_pip -r "$ROOT/requirements-ros-tooling.txt"

# ---- cmake packages -------------------------------------------------------------------------------------
need_cmake=()
for p in "${PACKAGES[@]}"; do
  IFS=: read -r name _r _s kind _c <<<"$p"
  [[ "$kind" == cmake ]] && is_missing "$name" && need_cmake+=("$name")
done

apt_dev_packages() {  # OpenCV + Boost.Python dev files for cv_bridge (Debian); returns 1 if not available
  local pkgs=(libopencv-dev libboost-python-dev python3-dev)
  local have=1 p
  for p in "${pkgs[@]}"; do dpkg -s "$p" >/dev/null 2>&1 || have=0; done
  (( have )) && return 0
  if [[ "${NCAL_APT:-1}" == "0" ]]; then CVB_WHY="NCAL_APT=0 and ${pkgs[*]} not all installed"; return 1; fi
  if ! command -v apt-get >/dev/null || [[ "$(id -u)" != 0 ]]; then
    CVB_WHY="needs the Debian packages ${pkgs[*]} (apt-get as root not available here)"; return 1
  fi
  log "apt-get install ${pkgs[*]} (for cv_bridge; NCAL_APT=0 skips)"
  local t0=$SECONDS apt=(env DEBIAN_FRONTEND=noninteractive apt-get -q -o Acquire::http::Timeout=30
                          -o Acquire::Retries=1)   # an unreachable mirror fails in about a minute, not many
  if ! "${apt[@]}" install -y --no-install-recommends "${pkgs[@]}" >"$WORK/apt.log" 2>&1; then
    "${apt[@]}" update >>"$WORK/apt.log" 2>&1 || true
    "${apt[@]}" install -y --no-install-recommends "${pkgs[@]}" >>"$WORK/apt.log" 2>&1 \
      || { CVB_WHY="apt-get install ${pkgs[*]} failed: $(grep -m1 -E '^(E|Err):' "$WORK/apt.log" || echo 'see apt.log')"
           return 1; }
  fi
  log "  apt-get (cv_bridge's dev packages): $((SECONDS - t0)) s"
}

patch_cv_bridge() {  # rclcpp has no wheel: drop the rclcpp type adapter; NumPy 2: no ndarray.newbyteorder
  local d="$1"
  sed -i -e '/find_package(rclcpp REQUIRED)/d' -e 's/^\(\s*\)rclcpp$/\1/' "$d/CMakeLists.txt"
  sed -i -e '/cv_mat_sensor_msgs_image_type_adapter.cpp/d' -e '/rclcpp::rclcpp/d' "$d/src/CMakeLists.txt"
  sed -i 's/im = im.byteswap().newbyteorder()/im = im.byteswap().view(im.dtype.newbyteorder())/' \
    "$d/python/cv_bridge/core.py"
}

if (( ${#need_cmake[@]} )); then
  log "building ${need_cmake[*]} with the pip ament/rosidl toolchain"
  quiet_pip -r "$ROOT/requirements-build-msgs.txt"
  # The wheels' cmake exports point at the wheel builder's Python; point them at this venv (once; idempotent).
  "$PYV" - "$VENV" <<'PYEOF'
import pathlib, sys, sysconfig, numpy
venv = pathlib.Path(sys.argv[1])
inc, npinc = sysconfig.get_paths()["include"], numpy.get_include()
for f in (venv / "share").rglob("*.cmake"):
    t = f.read_text(errors="ignore")
    n = t.replace("/opt/python/cp311-cp311/include/python3.11", inc)
    for old in ("/opt/python/cp311-cp311/lib/python3.11/site-packages/numpy/_core/include",
                "/opt/python/cp311-cp311/lib/python3.11/site-packages/numpy/core/include"):
        n = n.replace(old, npinc)
    if n != t:
        f.write_text(n)
PYEOF
  BENV=(env CMAKE_PREFIX_PATH="$VENV${CMAKE_PREFIX_PATH:+:$CMAKE_PREFIX_PATH}"
            AMENT_PREFIX_PATH="$VENV${AMENT_PREFIX_PATH:+:$AMENT_PREFIX_PATH}" PATH="$VENV/bin:$PATH")
  for name in "${need_cmake[@]}"; do
    IFS=: read -r _n repo sub _k check <<<"$(spec_of "$name")"
    src="$(unpack "$repo")/$sub"
    if [[ "$name" == cv_bridge ]]; then
      CVB_WHY=""
      if ! apt_dev_packages; then
        log "cv_bridge not built: $CVB_WHY (its tests skip; the nodes decode without it)"
        echo "$CVB_WHY" > "$WORK/cv_bridge.skipped"
        continue
      fi
      rm -f "$WORK/cv_bridge.skipped"
      patch_cv_bridge "$src"
    fi
    # Installed into the venv prefix itself: its lib/ is on the ROS wheels' LD_LIBRARY_PATH bootstrap and its
    # site-packages on sys.path, so every entry point finds them.
    rm -rf "${BLD:?}/$name"; blog="$BLD/$name.log"
    # Interface packages: generated (de)serialization code for small messages, compiled without optimization to
    # save compile time (not measured against -O2 here); the C++ libraries (tf2, tf2_py, cv_bridge) as Release.
    if [[ "$check" == *.msg* || "$check" == *.srv* ]]; then btype=(-DCMAKE_BUILD_TYPE=None -DCMAKE_C_FLAGS=-O0
      -DCMAKE_CXX_FLAGS=-O0); else btype=(-DCMAKE_BUILD_TYPE=Release); fi
    t0=$SECONDS
    "${BENV[@]}" cmake -S "$src" -B "$BLD/$name" -DCMAKE_INSTALL_PREFIX="$VENV" -DPython3_EXECUTABLE="$PYV" \
        -DBUILD_TESTING=OFF "${btype[@]}" >"$blog" 2>&1 \
      && "${BENV[@]}" cmake --build "$BLD/$name" -j "$(nproc)" >>"$blog" 2>&1 \
      && cmake --install "$BLD/$name" >>"$blog" 2>&1 \
      || { if [[ "$name" == cv_bridge ]]; then   # optional native part: one line, everything else still installs
             echo "its build failed (log: $blog)" > "$WORK/cv_bridge.skipped"
             log "cv_bridge not built: $(cat "$WORK/cv_bridge.skipped") (its tests skip; the nodes decode without it)"
             continue; fi
           log "building $name failed; see $blog"; tail -30 "$blog" >&2; exit 1; }
    if [[ "$check" != - ]] && ! "$PYV" -c "import $check" 2>"$BLD/$name.import.log"; then
      if [[ "$name" == cv_bridge ]]; then
        echo "built, but 'import $check' fails: $(tail -1 "$BLD/$name.import.log")" > "$WORK/cv_bridge.skipped"
        log "cv_bridge not usable: $(cat "$WORK/cv_bridge.skipped") (its tests skip)"; continue
      fi
      cat "$BLD/$name.import.log" >&2; log "$name built but 'import $check' fails"; exit 1
    fi
    mark_done "$name"
    log "  $name: $((SECONDS - t0)) s"
  done
fi

# ---- pure-Python packages ---------------------------------------------------------------------------------
dirs=(); names=()
for p in "${PACKAGES[@]}"; do
  IFS=: read -r name repo sub kind _c <<<"$p"
  [[ "$kind" == pip ]] && is_missing "$name" || continue
  d="$(unpack "$repo")/$sub"
  [[ "$name" == tf_transformations ]] && sed -i 's/copy=False/copy=None/g' "$d/tf_transformations/__init__.py"
  [[ "$name" == launch_testing_ros ]] && sed -i "/'pytest11':/d" "$d/setup.py"   # extends launch_testing's plugin
  if [[ "$name" == launch_testing ]]; then
    # Its pytest plugin would load into every pytest run of this venv, and its hook signature
    # (path, removed in pytest 9) stops pytest from starting: not auto-loaded, and the signature fixed for
    # those who load it with -p launch_testing.pytest.hooks.
    sed -i "/'pytest11':/d" "$d/setup.py"
    sed -i 's/^def pytest_pycollect_makemodule(path, parent):/def pytest_pycollect_makemodule(module_path, parent):\n    path = module_path/' \
      "$d/launch_testing/pytest/hooks.py"
  fi
  dirs+=("$d"); names+=("$name")
done
if (( ${#dirs[@]} )); then
  log "pip-installing ${names[*]} (pure Python, from the vendored sources)"
  t0=$SECONDS
  quiet_pip --no-deps --no-build-isolation --no-index "${dirs[@]}"
  log "  pure-Python packages: $((SECONDS - t0)) s"
  for name in "${names[@]}"; do mark_done "$name"; done
fi

# What still does not import is an error (cv_bridge only if it was skipped for a stated reason above).
mapfile -t STILL < <(missing_packages)
for name in "${STILL[@]}"; do
  [[ "$name" == cv_bridge && -f "$WORK/cv_bridge.skipped" ]] && continue
  log "$name is still missing after the install"; exit 1
done
