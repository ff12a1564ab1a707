"""How long reading the kernel's BTF takes: our reader vs bpftool on the same file.

    .venv/bin/python bench/bench_btf.py [BTF_FILE] [ROUNDS]

Prints medians of ROUNDS runs (default 10) of: BTF.load (read + index),
offsets_from_btf on a fresh load (what the recorder pays once per run), and,
when bpftool is installed, `bpftool btf dump file F format c > /dev/null`
(a parse of the same file by libbpf), with the ratio.
"""

from __future__ import annotations

import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Callable

from proctrace_bcc.btf import BTF, VMLINUX_BTF
from proctrace_bcc.offsets import offsets_from_btf


def median_seconds(fn: Callable[[], object], rounds: int) -> float:
    times = []
    for _ in range(rounds):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main() -> None:
    path = sys.argv[1] if len(sys.argv) > 1 else VMLINUX_BTF
    rounds = int(sys.argv[2]) if len(sys.argv) > 2 else 10
    btf = BTF.load(path)
    load = median_seconds(lambda: BTF.load(path), rounds)
    full = median_seconds(lambda: offsets_from_btf(BTF.load(path)), rounds)
    print(f"{path}: {btf.type_count} types")
    print(f"BTF.load                 {load * 1000:8.1f} ms (median of {rounds})")
    print(f"load + all offsets       {full * 1000:8.1f} ms")
    bpftool = shutil.which("bpftool") or shutil.which("bpftool", path="/usr/sbin:/sbin")
    if bpftool:

        def dump() -> None:
            subprocess.run(
                [bpftool, "btf", "dump", "file", path, "format", "c"],
                stdout=subprocess.DEVNULL,
                check=True,
            )

        ref = median_seconds(dump, rounds)
        print(f"bpftool dump format c    {ref * 1000:8.1f} ms")
        print(f"ratio (load+offsets / bpftool) {full / ref:.2f}")
    else:
        print("bpftool not installed: no reference timing")


if __name__ == "__main__":
    main()
