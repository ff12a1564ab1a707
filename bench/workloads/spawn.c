/* spawn RATE COUNT PROG - fork+exec PROG (no arguments) COUNT times at RATE per second.
 *
 * Children are started on a fixed schedule (child i at i/RATE seconds) and
 * reaped as they exit, so the spawn rate does not depend on how long each one
 * runs; when the machine cannot keep up the schedule slips and the achieved
 * rate is simply lower (record it from outside: COUNT / duration).  RATE 0
 * means as fast as possible.  Exit status: 0 when every child exited 0.
 * Built by bench/record_bench.py into .cache/bench/bin/.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

int main(int argc, char **argv)
{
    if (argc != 4) {
        fprintf(stderr, "usage: spawn RATE COUNT PROG\n");
        return 2;
    }
    double rate = atof(argv[1]);
    long count = atol(argv[2]);
    char *const child_argv[] = {argv[3], NULL};
    struct timespec t0;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    int bad = 0;
    long running = 0;
    for (long i = 0; i < count; i++) {
        if (rate > 0) {
            double at = (double)i / rate;
            struct timespec due = t0;
            due.tv_sec += (time_t)at;
            due.tv_nsec += (long)((at - (double)(time_t)at) * 1e9);
            if (due.tv_nsec >= 1000000000L) {
                due.tv_sec += 1;
                due.tv_nsec -= 1000000000L;
            }
            while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &due, NULL) == EINTR)
                ;
        }
        /* reap what has finished, without waiting */
        int st;
        while (running > 0 && waitpid(-1, &st, WNOHANG) > 0) {
            running--;
            bad |= !(WIFEXITED(st) && WEXITSTATUS(st) == 0);
        }
        pid_t pid = fork();
        if (pid < 0) {
            perror("spawn: fork");
            return 125;
        }
        if (pid == 0) {
            execv(argv[3], child_argv);
            _exit(127);
        }
        running++;
    }
    int st;
    while (running > 0 && waitpid(-1, &st, 0) > 0) {
        running--;
        bad |= !(WIFEXITED(st) && WEXITSTATUS(st) == 0);
    }
    return bad ? 1 : 0;
}
