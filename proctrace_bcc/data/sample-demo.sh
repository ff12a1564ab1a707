#!/usr/bin/env bash
# The demo recorded in proctrace_bcc/data/sample.ndjson.
set -u
printf 'Hello, World!\n'
sleep 0.2
( cd /tmp && ls -l >/dev/null )
status="$(grep -c root /etc/passwd)"
echo "root entries: $status"
sh -c 'exit 3' || echo "sh failed as expected"
sleep 30 &
kill -9 $! 2>/dev/null
/usr/bin/python3 -c 'import subprocess; subprocess.run(["true"]); subprocess.run(["git", "--version"], stdout=subprocess.DEVNULL)'
setsid sleep 5 &
curl -s -m 1 'http://127.0.0.1:9/health?probe=1#x' || echo "curl failed: $?"
sleep 0.1
