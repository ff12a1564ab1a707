#!/bin/bash
# `make vagrant-test`: bring up each machine of vagrant/Vagrantfile (provisioned
# by vm/provision.sh) and run, inside it, the same checks and kernel test suite
# as a VM-matrix guest (vm/guest.py).  Prints one line per machine,
#   kernel <release>: N passed, M failed, K skipped
# and exits non-zero when one failed.  Needs Vagrant with a provider and the
# boxes (they cannot be downloaded on the project's own machines).
#
#   vm/vagrant-test.sh [MACHINE...]     default: every machine; VAGRANT_HALT=1 halts after
set -uo pipefail

here=$(cd "$(dirname "$0")" && pwd)
repo=$(dirname "$here")
cd "$repo/vagrant" || exit 2
command -v vagrant >/dev/null || { echo "vagrant-test: vagrant not found" >&2; exit 2; }

machines=("$@")
if [ ${#machines[@]} -eq 0 ]; then
    mapfile -t machines < <(vagrant status --machine-readable | awk -F, '$3 == "state" {print $2}')
fi

summary=()
failed=0
for m in "${machines[@]}"; do
    echo "== $m"
    if ! vagrant up --provision "$m"; then
        summary+=("$m: vagrant up failed")
        failed=1
        continue
    fi
    # guest.py: the checks of the matrix (smoke, offsets against the running kernel's
    # own headers) and the kernel suite with PROCTRACE_REQUIRE_KERNEL=1; results in /tmp.
    out=$(vagrant ssh "$m" -c 'set -e; d=$(mktemp -d); cd /proctrace-bcc;
        sudo PROCTRACE_VENV_PY=/opt/proctrace-venv/bin/python \
            /usr/bin/python3 vm/guest.py --out "$d" --release "$(uname -r)" --checks smoke,offsets \
            >&2 || true;
        sudo python3 -c "import json,sys; r=json.load(open(sys.argv[1]));
print(\"kernel %s: %d passed, %d failed, %d skipped\" % (r[\"release\"], r[\"passed\"], r[\"failed\"], r[\"skipped\"]))" "$d/result.json"' )
    line=$(printf '%s\n' "$out" | grep '^kernel ' | tail -1)
    [ -n "$line" ] || line="$m: no result"
    summary+=("$line ($m)")
    case "$line" in *" 0 failed"*) ;; *) failed=1 ;; esac
    [ "${VAGRANT_HALT:-0}" = 1 ] && vagrant halt "$m"
done
printf '%s\n' "${summary[@]}"
exit $failed
