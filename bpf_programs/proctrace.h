/* proctrace.h - the ABI between the BPF C programs and Python.
 *
 * Every event the kernel side emits starts with `struct pt_event`; some
 * kinds are followed by variable-length data (see each kind).  The Python
 * mirror is proctrace_bcc/backends/abi.py; tests/unit/test_abi.py compiles
 * this header and checks that sizes and offsets agree.
 *
 * Only fixed-width types: this header is compiled both by BCC's clang (BPF
 * target) and by the host C compiler in the ABI test.
 */
#ifndef PROCTRACE_H
#define PROCTRACE_H

#ifndef __BPF__
#include <stdint.h>
typedef uint64_t __u64;
typedef uint32_t __u32;
typedef int32_t __s32;
typedef uint8_t __u8;
#endif

#define PT_FORK 1        /* payload u.fork */
#define PT_EXEC 2        /* payload u.exec; data below */
#define PT_EXEC_FAILED 3 /* payload u.exec_failed; data = filename (filename_len bytes) */
#define PT_EXIT 4        /* payload u.exit */
#define PT_SETPGID 5     /* payload u.setpgid */
#define PT_SETSID 6      /* payload u.setsid */
#define PT_FDS 7         /* fd table right after an exec; payload u.fds; data = `size` bytes of
                            struct pt_fd; always follows its PT_EXEC on the same CPU
                            (flag PT_F_HAS_FDS) */
#define PT_SIGNAL 8      /* a fatal signal generated for a traced process: payload u.signal;
                            the header's process is the target */

/* flags */
#define PT_F_TRUNCATED 0x1    /* argument area longer than ARGV_MAX: cut */
#define PT_F_ARGS_FAULT 0x2   /* argument area could not be read */
#define PT_F_ARGV0 0x4        /* argv0 (read at syscall entry) is present */
#define PT_F_SCRIPT 0x8       /* interp != filename: `#!` or binfmt_misc */
#define PT_F_FDS_TRUNCATED 0x10 /* PT_FDS: more descriptors than FDS_MAX */
#define PT_F_HAS_FDS 0x20       /* PT_EXEC: a PT_FDS record follows */
#define PT_F_FORK_UNKNOWN 0x40  /* PT_FDS: the fork-time table is unknown (inherited = 0) */
#define PT_F_ENV 0x80           /* PT_EXEC: the environment was searched (record --env) */
#define PT_F_ENV_TRUNCATED 0x100 /* PT_EXEC: a chosen variable may be missing or its value cut
                                   (environment larger than scanned, or env data full) */
#define PT_F_BY_TRACER 0x200    /* PT_SIGNAL: the recorder sent it */

/* The signals PT_SIGNAL reports (bit N: signal N): those whose default action ends
 * the process; never SIGCHLD, SIGWINCH, SIGCONT, SIGURG (they cost one test). */
#define PT_FATAL_SIGNALS 0x8300ffdeU /* HUP INT QUIT ILL ABRT BUS FPE KILL USR1 SEGV USR2
                                        PIPE ALRM TERM XCPU XFSZ SYS */

#define PT_FD_NAME 48 /* bytes of a regular file's last path component */
#define PT_FD_EMPTY 0xffffffff /* pt_fd.fd of an unused slot */
#define PT_FD_INHERIT_UNKNOWN 2 /* pt_fd.inherited: fd >= 64 or fork not seen */

/* The chosen environment variables (maps `env_conf` and `env_names`, filled by
 * the recorder).  Each entry "NAME=value" of an exec's environment is hashed
 * over its first bytes (as many as the shortest chosen "NAME=" has); only when
 * its slot is used is its "NAME=" looked up in `env_names`.  Only entries whose
 * "NAME=" is there are copied into the record. */
#define PT_ENV_NAMES 16  /* chosen names at most */
#define PT_ENV_WORDS 8   /* "NAME=" fits PT_ENV_WORDS * 8 bytes (names of 63 bytes at most) */
#define PT_ENV_SLOT_BITS 12 /* hash slots: the hash's top PT_ENV_SLOT_BITS bits */
#define PT_ENV_SLOTS 4096
#define PT_ENV_MAX 4096  /* bytes of "NAME=value\0" entries kept per exec */

struct pt_env_key {
    __u64 word[PT_ENV_WORDS]; /* "NAME=" as little-endian words, zero-padded */
};

struct pt_env_conf {
    __u64 hmask[PT_ENV_WORDS]; /* the bytes hashed (the same for every entry) */
    __u64 mult[PT_ENV_WORDS];  /* hash = sum of (word[w] & hmask[w]) * mult[w], mod 2^64 */
    __u8 used[PT_ENV_SLOTS];   /* slot -> 1: some chosen "NAME=" has that hash */
};

/* Slots of the `stats` array map (counters the kernel side bumps). */
enum pt_stat {
    PT_STAT_TRACED_FULL = 0, /* `traced` map full: a forked child not tracked */
    PT_STAT_ARGS_FAULT = 1,  /* an exec's argument area could not be read */
    PT_STAT_ARGV0_FAULT = 2, /* a script's caller argv[0] was not captured at entry */
    PT_STAT_COUNT = 3,
};

/* The per-kind part of struct pt_event (member u, named after the kind). */
struct pt_fork {
    __s32 child_pid;  /* the child's tgid */
    __s32 child_pgid;
    __s32 child_sid;
};

/* PT_EXEC data, in this order, no terminators:
 *   args_len bytes:     the new image's argument area (NUL-separated strings)
 *   filename_len bytes: bprm->filename
 *   interp_len bytes:   bprm->interp (only when PT_F_SCRIPT)
 *   argv0_len bytes:    the caller's argv[0], read at syscall entry (when PT_F_ARGV0)
 *   env_len bytes:      the chosen variables of the new image's environment, each
 *                       "NAME=value" NUL-terminated (when PT_F_ENV; the last may be
 *                       cut, then PT_F_ENV_TRUNCATED)
 */
struct pt_exec {
    __s32 old_tid;      /* the thread that called exec (the tgid's leader takes over) */
    __s32 argc;         /* argc of the new image */
    __u32 args_len;
    __u32 filename_len;
    __u32 interp_len;
    __u32 argv0_len;
    __u32 env_len;
};

struct pt_exec_failed {
    __s32 error;        /* errno (positive) */
    __u32 filename_len; /* bytes of data: the filename passed to exec */
};

struct pt_exit {
    __s32 status; /* wait status (code << 8 | core 0x80 | signal) */
};

struct pt_setpgid {
    __s32 target_pid; /* the process whose group changed (0 resolved to the caller) */
    __s32 pgid;       /* its new group (0 resolved to target_pid) */
};

struct pt_setsid {
    __s32 sid; /* the new session */
};

struct pt_fds {
    __u32 size; /* bytes of struct pt_fd entries in data */
};

struct pt_signal {
    __s32 sig;
    __s32 code;         /* siginfo si_code: > 0 the kernel sent it (SI_KERNEL, a fault) */
    __u32 sender;       /* the current process's tgid (the sender unless the kernel) */
    char sender_comm[16];
};

union pt_payload {
    struct pt_fork fork;
    struct pt_exec exec;
    struct pt_exec_failed exec_failed;
    struct pt_exit exit;
    struct pt_setpgid setpgid;
    struct pt_setsid setsid;
    struct pt_fds fds;
    struct pt_signal signal;
};

struct pt_event {
    __u64 ts;    /* bpf_ktime_get_ns() (CLOCK_MONOTONIC) */
    __u32 type;  /* PT_* */
    __u32 flags; /* PT_F_* */
    __u32 pid;   /* tgid, as seen from the recorder's pid namespace */
    __u32 tid;
    __u32 ppid;  /* real_parent's tgid */
    __u32 pgid;
    __u32 sid;
    __u32 uid;
    union pt_payload u; /* by type: u.fork, u.exec, ... */
    __u32 cpu;
};

/* One open descriptor (PT_FDS payload entry). */
struct pt_fd {
    __u32 fd;
    __u32 mode;      /* inode->i_mode (S_IFMT bits tell the type) */
    __u64 ino;       /* inode->i_ino */
    __u32 dev;       /* inode->i_sb->s_dev (kernel dev_t encoding) */
    __u32 rdev;      /* inode->i_rdev (ttys and other devices) */
    __u32 flags;     /* file->f_flags (O_ACCMODE: read end vs write end of a pipe) */
    __u32 inherited; /* 1: the same open file was at this fd when the process was
                        forked; 0: opened since; PT_FD_INHERIT_UNKNOWN */
    char name[PT_FD_NAME]; /* regular files: last path component, NUL-terminated */
};

#endif
