/* timed OUT CMD [ARG...] - run CMD and write how long it took, measured from inside.
 *
 *   OUT gets one line:  start_ns end_ns wait_status user_us sys_us
 *
 * start_ns is CLOCK_MONOTONIC at the entry of main (the moment the traced
 * command starts: `record`'s start-up ends here), end_ns right after CMD is
 * reaped.  user_us/sys_us: CPU time of CMD and every descendant it reaped
 * (RUSAGE_CHILDREN).  Exit status: CMD's (128+N when killed by signal N).
 * Built by bench/record_bench.py into .cache/bench/bin/.
 */
#include <stdio.h>
#include <stdlib.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static long long now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

int main(int argc, char **argv)
{
    long long start = now_ns();
    if (argc < 3) {
        fprintf(stderr, "usage: timed OUT CMD [ARG...]\n");
        return 2;
    }
    pid_t pid = fork();
    if (pid < 0) {
        perror("timed: fork");
        return 125;
    }
    if (pid == 0) {
        execvp(argv[2], argv + 2);
        perror("timed: exec");
        _exit(127);
    }
    int status = 0;
    if (waitpid(pid, &status, 0) < 0) {
        perror("timed: waitpid");
        return 125;
    }
    long long end = now_ns();
    struct rusage ru;
    getrusage(RUSAGE_CHILDREN, &ru);
    FILE *f = fopen(argv[1], "w");
    if (!f) {
        perror("timed: open OUT");
        return 125;
    }
    fprintf(f, "%lld %lld %d %lld %lld\n", start, end, status,
            (long long)ru.ru_utime.tv_sec * 1000000LL + ru.ru_utime.tv_usec,
            (long long)ru.ru_stime.tv_sec * 1000000LL + ru.ru_stime.tv_usec);
    fclose(f);
    if (WIFSIGNALED(status))
        return 128 + WTERMSIG(status);
    return WEXITSTATUS(status);
}
