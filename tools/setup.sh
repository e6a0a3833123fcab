#!/usr/bin/env bash
# Install everything netmapy needs on a Debian machine (run as root), then
# build and install netmapy itself in editable mode from this checkout.
#
#   bash tools/setup.sh            # system packages + Python packages + build
#   NETMAPY_NO_APT=1 bash tools/setup.sh   # skip apt (packages already there)
set -euo pipefail
cd "$(dirname "$0")/.."

PACKAGES=(
  build-essential pkg-config # C compiler for the extensions; setup.py asks pkg-config
  libpcap-dev tcpdump        # pcap backend, filters; reading captures
  libbpf-dev libxdp-dev      # xdp backend
  clang llvm bpftool xdp-tools
  libclang-rt-dev            # libFuzzer + sanitizer runtimes for clang (the parser's fuzz test)
  iproute2 ethtool iputils-ping util-linux psmisc   # lab, NIC control, setpriv
  netsniff-ng                # trafgen: the lab's traffic generator
  tshark                     # editcap (pcapng tests), capture inspection
)

if [ "${NETMAPY_NO_APT:-0}" != 1 ]; then
  if [ "$(id -u)" != 0 ]; then
    echo "setup.sh: installing system packages needs root (run it with sudo)" >&2
    exit 1
  fi
  export DEBIAN_FRONTEND=noninteractive
  echo "setup.sh: apt-get install ${PACKAGES[*]}"
  apt-get update -q
  apt-get install -y -q --no-install-recommends "${PACKAGES[@]}"
fi

PY=${PYTHON:-python3}
echo "setup.sh: pip install build requirements and test tools"
"$PY" -m pip install -q --upgrade "pip>=23" "setuptools>=64" wheel "Cython>=3.0"
"$PY" -m pip install -q "psutil>=5.9" "click>=8.1" "pytest>=7" "hypothesis>=6" "matplotlib>=3.5" \
  "mypy>=1.18"
echo "setup.sh: building netmapy"
"$PY" -m pip install -q --no-build-isolation -e .
"$PY" -c "import netmapy, netmapy.backends.packet, netmapy.backends.pipe, netmapy.backends.pcap; print('setup.sh: netmapy', netmapy.__version__, 'ready')"
