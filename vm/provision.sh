#!/bin/bash
# Provision a machine to run proctrace-bcc's kernel tests.  The ONE script used by
# vagrant/Vagrantfile (inside each box) and by the local VM matrix (on its host,
# whose userspace the matrix guests share: `make vm-test` runs it first).
#
#   vm/provision.sh                  BCC, bpftrace, headers of the running kernel,
#                                    the tools the kernel tests use, the project venv
#   vm/provision.sh --matrix-host    the same, plus the packages of vm/host-tools.conf
#                                    (QEMU, udev, kmod, busybox-static, e2fsprogs, ...)
#                                    and virtme-ng (in .cache/vm/tools)
#   vm/provision.sh --packages P...  only install Debian/Ubuntu packages P (if missing)
#
# Environment: PROCTRACE_REPO (default: the folder above this script),
# PROCTRACE_VENV (default: $PROCTRACE_REPO/.venv).  Idempotent: what is already
# installed is not installed again, a working venv is kept.  Needs root.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
REPO=${PROCTRACE_REPO:-$(dirname "$here")}
VENV=${PROCTRACE_VENV:-$REPO/.venv}
VIRTME_NG_VERSION=1.42
export DEBIAN_FRONTEND=noninteractive

say() { echo "provision: $*"; }

if [ "$(id -u)" != 0 ]; then
    echo "provision: needs root" >&2
    exit 2
fi

updated=
apt_install() {
    local missing=() p
    for p in "$@"; do
        dpkg-query -W -f='${Status}\n' "$p" 2>/dev/null | grep -q '^install ok installed$' \
            || missing+=("$p")
    done
    [ ${#missing[@]} -eq 0 ] && return 0
    if [ -z "$updated" ]; then
        apt-get update -q >/dev/null
        updated=1
    fi
    say "apt-get install ${missing[*]}"
    apt-get install -y -q --no-install-recommends "${missing[@]}" >/dev/null
}

available() { apt-cache show "$1" >/dev/null 2>&1; }

if [ "${1:-}" = --packages ]; then
    shift
    apt_install "$@"
    exit 0
fi

matrix_host=
[ "${1:-}" = --matrix-host ] && matrix_host=1

# --- what the kernel tests need ------------------------------------------------
apt_install python3-bpfcc bpftrace python3-venv strace bats sudo procps util-linux make git

# Headers of the running kernel (BCC compiles against /lib/modules/$(uname -r)/build).
# A matrix host's own kernel may be a custom one without a package: the matrix
# guests get theirs from the kernel cache, and the recorder falls back to any
# header tree (struct offsets come from BTF).
release=$(uname -r)
if [ -d "/lib/modules/$release/build/include" ]; then
    :
elif [ -n "$updated" ] || apt-get update -q >/dev/null; then
    updated=1
    if available "linux-headers-$release"; then
        apt_install "linux-headers-$release"
    elif available linux-headers-amd64; then
        apt_install linux-headers-amd64
    elif available linux-headers-generic; then
        apt_install linux-headers-generic
    fi
fi

# Python >= 3.11 for the venv (Ubuntu 22.04's python3 is 3.10: use its python3.11).
py=
for cand in python3 python3.13 python3.12 python3.11; do
    if command -v "$cand" >/dev/null &&
        "$cand" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
        py=$(command -v "$cand")
        break
    fi
done
if [ -z "$py" ]; then
    apt_install python3.11 python3.11-venv
    py=$(command -v python3.11)
fi
case "$py" in
    /usr/bin/*) ;;
    *) py=/usr/bin/$(basename "$py") ;;  # the distribution's, which sees python3-bpfcc
esac
apt_install "$(basename "$py")-venv" 2>/dev/null || true

if [ -x "$VENV/bin/python" ] && "$VENV/bin/python" -c 'import bcc, proctrace_bcc, pytest' 2>/dev/null; then
    say "venv $VENV ok"
else
    say "venv $VENV ($py, with the system's site-packages for bcc)"
    "$py" -m venv --system-site-packages "$VENV"
    "$VENV/bin/pip" install -q -e "$REPO[dev]"
fi

# --- what the VM matrix host needs -----------------------------------------------
if [ -n "$matrix_host" ]; then
    # The packages of vm/host-tools.conf (the one list; vm/matrix.py checks its tools).
    mapfile -t host_pkgs < <(awk '!/^[[:space:]]*#/ && NF >= 3 { print $2 }' \
        "$here/host-tools.conf" | sort -u)
    apt_install "${host_pkgs[@]}"
    tools=${PROCTRACE_VM_CACHE:-$REPO/.cache/vm}/tools
    if [ -x "$tools/bin/vng" ] && [ "$("$tools/bin/vng" --version 2>/dev/null)" = "virtme-ng $VIRTME_NG_VERSION" ]; then
        say "virtme-ng $VIRTME_NG_VERSION ok"
    else
        say "virtme-ng $VIRTME_NG_VERSION into $tools"
        /usr/bin/python3 -m venv "$tools"
        "$tools/bin/pip" install -q "virtme-ng==$VIRTME_NG_VERSION"
    fi
fi
say done
