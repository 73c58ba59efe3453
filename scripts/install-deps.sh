#!/usr/bin/env bash
# Installs the system packages tapstream needs on a Debian 12 (bookworm)
# machine. Usage: install-deps.sh [run|test|bench]
#   run   : libpcap-dev (live capture), besides a Rust toolchain and
#           python3 + pip (checked here)
#   test  : + Suricata 7 from bookworm-backports (Community ID cross-check),
#           g++ (the kernels run as C++ in a test), NVRTC 13.0 from PyPI,
#           iproute2, tcpdump, nmap and curl (the live-capture test in
#           network namespaces)
#   bench : + Suricata 7, tshark tools (editcap/mergecap/capinfos), nfstream,
#           tcpreplay and iproute2 (scripts/live-bench.sh)
# Idempotent: packages already present are not reinstalled.
set -euo pipefail
what=${1:-run}

need() { command -v "$1" >/dev/null 2>&1 || { echo "tapstream: $1 is required but not installed" >&2; exit 1; }; }
need cargo
need python3

sudo_() { if [ "$(id -u)" -eq 0 ]; then "$@"; elif command -v sudo >/dev/null; then sudo "$@"; else echo "tapstream: need root to install $*" >&2; exit 1; fi; }

apt_install() {
  local missing=()
  for p in "$@"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
  [ ${#missing[@]} -eq 0 ] && return 0
  sudo_ env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
}

backports() {
  if ! grep -rqs "bookworm-backports" /etc/apt/sources.list /etc/apt/sources.list.d/; then
    echo "deb http://deb.debian.org/debian bookworm-backports main" | sudo_ tee /etc/apt/sources.list.d/bookworm-backports.list >/dev/null
    sudo_ apt-get update -qq
  fi
}

suricata7() {
  if ! command -v suricata >/dev/null || ! suricata -V 2>/dev/null | grep -q "version 7"; then
    backports
    sudo_ env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq -t bookworm-backports suricata >/dev/null
  fi
}

case "$what" in
  run)
    if ! dpkg -s libpcap-dev >/dev/null 2>&1; then
      sudo_ apt-get update -qq || true
      apt_install libpcap-dev
    fi
    ;;
  test)
    sudo_ apt-get update -qq || true
    suricata7
    apt_install g++ libpcap-dev iproute2 tcpdump nmap curl
    # NVRTC and CUDA headers from PyPI: the kernels compile to PTX in a test
    # (no GPU needed). Pinned to 13.0: newer PTX may not load on the GPU
    # host's 13.0 driver.
    python3 -m pip install -q --disable-pip-version-check nvidia-cuda-nvrtc==13.0.88
    ;;
  bench)
    sudo_ apt-get update -qq || true
    suricata7
    apt_install tshark libpcap-dev tcpreplay iproute2
    python3 -m pip install -q --disable-pip-version-check nfstream==6.6.0
    ;;
  *) echo "usage: $0 [run|test|bench]" >&2; exit 2 ;;
esac
