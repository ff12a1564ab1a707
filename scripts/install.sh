#!/usr/bin/env bash
# Set up everything `make test` and `make demo` need, on a fresh Debian/Ubuntu
# machine (as root: system packages too) or anywhere else (venv only).
# Idempotent: a second run only checks.
set -euo pipefail
cd "$(dirname "$0")/.."

# System packages for recording and for the test suite.
APT_PACKAGES=(
  python3 python3-venv python3-bpfcc bpftrace strace bats bpftool procps util-linux
  gcc libc6-dev chromium nodejs npm
)
arch=$(dpkg --print-architecture 2>/dev/null || echo amd64)
APT_PACKAGES+=("linux-headers-$arch")
if [ -n "${PROCTRACE_EXTRA_APT:-}" ]; then
  read -r -a extra <<<"$PROCTRACE_EXTRA_APT"
  APT_PACKAGES+=("${extra[@]}")
fi

missing=()
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null && command -v dpkg-query >/dev/null; then
  for p in "${APT_PACKAGES[@]}"; do
    # node may come from elsewhere (nodesource, nvm): only ask apt when it is absent
    case $p in nodejs) command -v node >/dev/null && continue ;; npm) command -v npm >/dev/null && continue ;; esac
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  if [ ${#missing[@]} -gt 0 ]; then
    echo "install: apt-get install ${missing[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  fi
fi

# The venv: from the system python so that Debian's `bcc` module is importable.
if [ ! -x .venv/bin/python ]; then
  if [ -x /usr/bin/python3 ]; then
    /usr/bin/python3 -m venv --system-site-packages .venv
  else
    python3 -m venv .venv
  fi
fi
stamp=.venv/.proctrace-installed
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
  .venv/bin/python -m pip install -q --upgrade pip >/dev/null 2>&1 || true
  .venv/bin/python -m pip install -q -e '.[dev]'
  touch "$stamp"
fi

# JS test dependencies (the real Mermaid parser, playwright-core) when npm exists.
if command -v npm >/dev/null && [ -x tests/js/install.sh ]; then
  tests/js/install.sh
fi
echo "install: ok (.venv ready)"
