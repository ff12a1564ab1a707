#!/usr/bin/env bash
# `make demo`: record scripts/demo-workload.sh (as root, with BPF) and render it;
# without root or BPF, render the bundled sample recording instead.
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p out
PT=(.venv/bin/python -m proctrace_bcc)
if [ "$(id -u)" = 0 ] && [ -e /sys/kernel/btf/vmlinux ]; then
  "${PT[@]}" record -o out/demo.ndjson -- scripts/demo-workload.sh
  rec=out/demo.ndjson
else
  echo "demo: not root (or no BTF): rendering the bundled sample recording" >&2
  rec=proctrace_bcc/data/sample.ndjson
fi
"${PT[@]}" analyze -i "$rec" -d tree
for mode in sequential by-process mermaid html chrome-trace; do
  ext=$mode; case $mode in html) ext=html ;; chrome-trace) ext=trace.json ;; mermaid) ext=mmd ;; *) ext=$mode.ndjson ;; esac
  "${PT[@]}" analyze -i "$rec" -d "$mode" -o "out/demo.$ext" 2>/dev/null && echo "demo: wrote out/demo.$ext" || echo "demo: mode $mode unavailable" >&2
done
