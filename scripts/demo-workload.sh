#!/bin/sh
# A small process tree with something for every output mode: a pipeline, a
# background job, a failing command, a signal, job control and a daemon.
echo "building..." | tr a-z A-Z > /dev/null
sleep 0.2 &
sh -c 'exit 3' || true
sh -c 'kill -TERM $$' || true
bash -c 'set -m; sleep 0.1 & wait'
(setsid sh -c 'sleep 0.4' &)
ls /nonexistent 2>/dev/null || true
wait
