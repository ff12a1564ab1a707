/* holdfds N CMD [ARG...] - open about N descriptors, inheritable, then exec CMD.
 *
 * The descriptors are a mix of what `record --fds` describes: pipes (both
 * ends), regular files (this program's own binary, read-only) and /dev/null,
 * one kind after the other, all without close-on-exec, so CMD and every
 * process it forks and execs carry them (and a descriptor table of at least
 * N + 3 slots: 128 slots for N = 100, 256 for N = 250).  Exit status: CMD's,
 * or 125 when the descriptors cannot be opened.
 * Built by bench/record_bench.py into .cache/bench/bin/.
 */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

int main(int argc, char **argv)
{
    if (argc < 3) {
        fprintf(stderr, "usage: holdfds N CMD [ARG...]\n");
        return 2;
    }
    int n = atoi(argv[1]);
    int opened = 0;
    for (int k = 0; opened < n; k++) {
        int fd;
        switch (k % 3) {
        case 0: {
            int p[2];
            if (pipe(p) != 0) {
                perror("holdfds: pipe");
                return 125;
            }
            opened += 2;
            continue;
        }
        case 1:
            fd = open("/proc/self/exe", O_RDONLY);
            break;
        default:
            fd = open("/dev/null", O_RDWR);
            break;
        }
        if (fd < 0) {
            perror("holdfds: open");
            return 125;
        }
        opened++;
    }
    execvp(argv[2], argv + 2);
    perror("holdfds: exec");
    return 127;
}
