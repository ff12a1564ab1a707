#!/bin/sh
# storm.sh N P - a fork+exec storm: P loops in parallel, each running /bin/true N times
# one after the other (dash builtins only: every /bin/true is one fork and one exec).
# Processes: this shell, P subshells, N*P /bin/true.
n=$1
p=${2:-1}
loop() {
    i=0
    while [ "$i" -lt "$n" ]; do
        /bin/true
        i=$((i + 1))
    done
}
j=0
while [ "$j" -lt "$p" ]; do
    loop &
    j=$((j + 1))
done
wait
