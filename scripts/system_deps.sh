#!/usr/bin/env bash
# Checks the few Debian/Ubuntu libraries the Python wheels need at run time, and installs them when
# run as root. Otherwise prints one line saying what to install. Exits non-zero only if something
# required is missing and could not be installed.
set -u
need=()
have_lib() { ldconfig -p 2>/dev/null | grep -q "$1"; }
have_lib "libusb-1.0.so.0" || need+=(libusb-1.0-0)        # pyrealsense2 imports it
have_lib "libEGL.so.1" || need+=(libegl1)                  # MuJoCo headless rendering (MUJOCO_GL=egl)
[ -e /usr/lib/x86_64-linux-gnu/dri/swrast_dri.so ] || [ -e /usr/lib/aarch64-linux-gnu/dri/swrast_dri.so ] \
  || have_lib "libgallium" || need+=(libgl1-mesa-dri)      # the software EGL driver (llvmpipe)
[ ${#need[@]} -eq 0 ] && exit 0
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  echo "robot_rl: installing system packages: ${need[*]}"
  export DEBIAN_FRONTEND=noninteractive
  (apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null 2>&1) || {
    apt-get update -qq >/dev/null && apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
  } || { echo "robot_rl: apt-get could not install: ${need[*]}" >&2; exit 1; }
else
  echo "robot_rl: please install these system packages first: sudo apt-get install ${need[*]}" >&2
  exit 1
fi
