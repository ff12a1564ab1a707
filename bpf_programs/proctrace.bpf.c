// SPDX-License-Identifier: MIT
/* proctrace.bpf.c - process lifecycle events for proctrace-bcc (BCC backend).
 *
 * Kernel structs are read ONLY through byte offsets taken from the running
 * kernel's BTF and passed in as -D defines (OFF_*, SIZE_*): header-derived
 * layouts are wrong whenever the header tree does not match the kernel.
 *
 * Build-time options (-D):
 *   FILTER        1: trace only descendants of the tgids in `traced`
 *   HANDSHAKE     prctl option the recorder calls once after loading: the
 *                 probe stores the caller's pid-namespace level and inode in
 *                 `config`, and every pid is then reported as that namespace
 *                 sees it.  Nothing is emitted before the handshake.
 *   ARGV_MAX      bytes of argument area kept per exec
 *   NCPU          number of possible CPUs (scratch buffers)
 *   WITH_FDS      1: emit PT_FDS after each exec (FDS_MAX descriptors at most,
 *                 a multiple of 64)
 *   WITH_ENV      1: add the chosen environment variables (map `env_conf`) to
 *                 each exec; no other variable leaves the kernel
 */
#include <uapi/linux/ptrace.h>

#define __BPF__ 1
#include "proctrace.h"

#define PATH_MAX_ 4096
#define PIDTYPE_PID_ 0
#define PIDTYPE_TGID_ 1
#define PIDTYPE_PGID_ 2
#define PIDTYPE_SID_ 3
#define SIGNAL_GROUP_EXIT_ 0x00000004

#ifndef FDS_MAX
#define FDS_MAX 256
#endif
#define S_IFMT_ 00170000
#define S_IFREG_ 0100000

#if WITH_ENV
#define ENV_SPACE (2 * PT_ENV_MAX) /* env data, and the verifier's view of its bound */
#else
#define ENV_SPACE 0
#endif

struct scratch {
    struct pt_event ev;
    char data[ARGV_MAX + 3 * PATH_MAX_ + ENV_SPACE];
};

/* Per-exec state kept between sys_enter_execve[at] and the exec / failure. */
struct exec_args {
    const char *filename;
    __u32 argv0_len;
    __u32 argv0_ok;
    char argv0[PATH_MAX_];
};

struct config {
    __u32 ready;
    __u32 level; /* pid namespace level of the recorder (0 = initial) */
    __u32 inum;  /* its inode number */
    __u32 tracer; /* the recorder's tgid in that namespace */
};

struct pgid_args {
    __s32 pid;
    __s32 pgid;
};

BPF_PERF_OUTPUT(events);
BPF_HASH(traced, __u32, __u8, TRACED_MAX);     /* tgid (recorder's ns) -> 1 (2: the recorder) */
BPF_ARRAY(scratch_buf, struct scratch, NCPU);  /* per-CPU scratch for exec events */
BPF_PERCPU_ARRAY(zero_args, struct exec_args, 1); /* never written: a zeroed value source */
BPF_HASH(inflight_exec, __u32, struct exec_args, 10240); /* global tid -> args at entry */
BPF_HASH(inflight_pgid, __u32, struct pgid_args, 10240); /* global tid -> setpgid args */
BPF_ARRAY(config_map, struct config, 1);
#if WITH_FDS
#define FORK_FDS 64
struct fork_files {
    __u64 file[FORK_FDS]; /* struct file * of fds 0..63 when the process was forked */
};
BPF_TABLE("lru_hash", __u32, struct fork_files, fork_fds, 16384); /* tgid -> fork-time files */
#endif
BPF_ARRAY(stats, __u64, PT_STAT_COUNT); /* enum pt_stat -> count */
#if WITH_ENV
#define ENV_AREA_MAX 32768 /* bytes of the environment searched (a power of two) */
#define ENV_ENTRIES 256    /* variables searched (a power of two) */
#define ENV_CANDIDATES 16  /* entries whose hash slot is used, at most (a power of two; each costs
                              the verifier a pass over the name lookup: start-up time) */
#define RECORD_MAX 65504   /* bytes of one perf record's data (its size is 16 bits) */
struct env_scratch {
    __u64 start, alen, n, base, cap, out, cut, nc; /* read_env()'s loop state (see there) */
    __u64 cand[ENV_CANDIDATES];                        /* candidates: their index in envp[] */
    struct pt_env_key key;                            /* a candidate's "NAME=" */
    __u64 envp[ENV_ENTRIES];                          /* the new image's envp[] */
    char area[ENV_AREA_MAX + 8 * PT_ENV_WORDS];       /* its strings (+ room for word loads) */
};
BPF_ARRAY(env_scratch, struct env_scratch, NCPU); /* per-CPU */
BPF_ARRAY(env_conf, struct pt_env_conf, 1);       /* the hash (filled by the recorder) */
BPF_HASH(env_names, struct pt_env_key, __u32, PT_ENV_NAMES); /* "NAME=" -> its length */
#endif

#define READ_PTR(dst, base, off) bpf_probe_read_kernel(&(dst), sizeof(void *), (char *)(base) + (off))
#define READ_U32(dst, base, off) bpf_probe_read_kernel(&(dst), 4, (char *)(base) + (off))

static __always_inline void bump(enum pt_stat slot)
{
    int idx = slot;
    __u64 *v = stats.lookup(&idx);
    if (v)
        __sync_fetch_and_add(v, 1);
}

static __always_inline struct config *get_config(void)
{
    int zero = 0;
    struct config *c = config_map.lookup(&zero);
    if (!c || !c->ready)
        return 0;
    return c;
}

static __always_inline __u32 ns_inum(char *upid)
{
    void *ns = 0;
    __u32 inum = 0;
    READ_PTR(ns, upid, OFF_UPID_NS);
    if (ns)
        READ_U32(inum, ns, OFF_PIDNS_NS + OFF_NS_COMMON_INUM);
    return inum;
}

/* pid_nr_ns(): the number of a struct pid in the recorder's namespace (0 if invisible). */
static __always_inline __u32 pid_nr(struct config *c, void *pid)
{
    __u32 level = 0, nr = 0;
    if (!pid)
        return 0;
    READ_U32(level, pid, OFF_PID_LEVEL);
    __u32 want = c->level & 31;
    if (level < want)
        return 0;
    char *upid = (char *)pid + OFF_PID_NUMBERS + want * SIZE_UPID;
    if (want > 0 && ns_inum(upid) != c->inum)
        return 0;
    READ_U32(nr, upid, OFF_UPID_NR);
    return nr;
}

static __always_inline __u32 task_pidtype(struct config *c, void *task, int type)
{
    void *signal = 0, *pid = 0;
    READ_PTR(signal, task, OFF_TASK_SIGNAL);
    if (!signal)
        return 0;
    READ_PTR(pid, signal, OFF_SIGNAL_PIDS + type * sizeof(void *));
    return pid_nr(c, pid);
}

static __always_inline __u32 task_tid(struct config *c, void *task)
{
    void *pid = 0;
    READ_PTR(pid, task, OFF_TASK_THREAD_PID);
    return pid_nr(c, pid);
}

static __always_inline __u32 task_ppid(struct config *c, void *task)
{
    void *parent = 0;
    READ_PTR(parent, task, OFF_TASK_REAL_PARENT);
    if (!parent)
        return 0;
    return task_pidtype(c, parent, PIDTYPE_TGID_);
}

/* Fill the common header from `task`; returns 0 when the task is not traced. */
static __always_inline int fill(struct config *c, struct pt_event *ev, void *task, __u32 type)
{
    __u32 tgid = task_pidtype(c, task, PIDTYPE_TGID_);
    if (!tgid)
        return 0; /* not visible from the recorder's namespace */
#if FILTER
    if (!traced.lookup(&tgid))
        return 0;
#endif
    ev->ts = bpf_ktime_get_ns();
    ev->type = type;
    ev->flags = 0;
    ev->pid = tgid;
    ev->tid = task_tid(c, task);
    ev->ppid = task_ppid(c, task);
    ev->pgid = task_pidtype(c, task, PIDTYPE_PGID_);
    ev->sid = task_pidtype(c, task, PIDTYPE_SID_);
    ev->uid = (__u32)bpf_get_current_uid_gid();
    __builtin_memset(&ev->u, 0, sizeof(ev->u));
    ev->cpu = bpf_get_smp_processor_id();
    return 1;
}

/* Whether the current process is one we trace (always, without FILTER). */
static __always_inline int current_traced(struct config *c)
{
#if FILTER
    __u32 tgid = task_pidtype(c, (void *)bpf_get_current_task(), PIDTYPE_TGID_);
    return tgid && traced.lookup(&tgid);
#else
    return 1;
#endif
}

/* ---------------------------------------------------------------- fork */

RAW_TRACEPOINT_PROBE(sched_process_fork)
{
    void *parent = (void *)ctx->args[0];
    void *child = (void *)ctx->args[1];
    __u32 child_tgid_g = 0, child_pid_g = 0;
    READ_U32(child_tgid_g, child, OFF_TASK_TGID);
    READ_U32(child_pid_g, child, OFF_TASK_PID);
    if (child_tgid_g != child_pid_g)
        return 0; /* a new thread, not a process */

    struct config *c = get_config();
    if (!c)
        return 0;
    struct pt_event ev = {};
    if (!fill(c, &ev, parent, PT_FORK))
        return 0;
    __u32 child_tgid = task_pidtype(c, child, PIDTYPE_TGID_);
    if (!child_tgid)
        return 0;
#if FILTER
    __u8 one = 1;
    if (traced.update(&child_tgid, &one) != 0)
        bump(PT_STAT_TRACED_FULL);
#endif
#if WITH_FDS
    {
        /* One read: the child's fd pointer array (a copy of the parent's). */
        int zero = 0;
        struct fork_files *z = (struct fork_files *)zero_args.lookup(&zero);
        if (z && fork_fds.update(&child_tgid, z) == 0) {
            struct fork_files *ff = fork_fds.lookup(&child_tgid);
            void *files = 0, *fdt = 0, *fdarr = 0;
            __u32 max_fds = 0;
            READ_PTR(files, child, OFF_TASK_FILES);
            READ_PTR(fdt, files, OFF_FILES_FDT);
            READ_U32(max_fds, fdt, OFF_FDT_MAX_FDS);
            READ_PTR(fdarr, fdt, OFF_FDT_FD);
            if (ff) {
                __u32 n = max_fds < FORK_FDS ? max_fds : FORK_FDS;
                bpf_probe_read_kernel(ff->file, (n & (2 * FORK_FDS - 1)) * 8, fdarr);
            }
        }
    }
#endif
    ev.u.fork.child_pid = child_tgid;
    ev.u.fork.child_pgid = task_pidtype(c, child, PIDTYPE_PGID_);
    ev.u.fork.child_sid = task_pidtype(c, child, PIDTYPE_SID_);
    events.perf_submit(ctx, &ev, sizeof(ev));
    return 0;
}

/* ---------------------------------------------------------------- exec */

static __always_inline int exec_enter(const char *filename, const char *const *argv)
{
    __u32 tid = (__u32)bpf_get_current_pid_tgid();
    struct config *c = get_config();
    if (!c)
        return 0;
    if (!current_traced(c))
        return 0;
    int zero = 0;
    struct exec_args *z = zero_args.lookup(&zero);
    if (!z)
        return 0;
    inflight_exec.update(&tid, z);
    struct exec_args *a = inflight_exec.lookup(&tid);
    if (!a)
        return 0;
    a->filename = filename;
    const char *arg0 = 0;
    if (bpf_probe_read_user(&arg0, sizeof(arg0), argv) == 0 && arg0) {
        long n = bpf_probe_read_user_str(a->argv0, sizeof(a->argv0), arg0);
        if (n > 0) {
            a->argv0_len = n - 1;
            a->argv0_ok = 1;
        }
    }
    return 0;
}

TRACEPOINT_PROBE(syscalls, sys_enter_execve)
{
    return exec_enter(args->filename, args->argv);
}

TRACEPOINT_PROBE(syscalls, sys_enter_execveat)
{
    return exec_enter(args->filename, args->argv);
}

static __always_inline int exec_exit(void *ctx, long ret)
{
    __u32 tid = (__u32)bpf_get_current_pid_tgid();
    struct exec_args *a = inflight_exec.lookup(&tid);
    if (!a)
        return 0;
    if (ret < 0) {
        struct scratch *s;
        __u32 cpu = bpf_get_smp_processor_id();
        s = scratch_buf.lookup(&cpu);
        struct config *c = get_config();
        if (s && c && fill(c, &s->ev, (void *)bpf_get_current_task(), PT_EXEC_FAILED)) {
            s->ev.u.exec_failed.error = -ret;
            /* The kernel's getname() touched the string: it is resident now. */
            long n = bpf_probe_read_user_str(s->data, PATH_MAX_, a->filename);
            __u32 len = n > 0 ? n - 1 : 0;
            s->ev.u.exec_failed.filename_len = len;
            len &= (PATH_MAX_ - 1);
            events.perf_submit(ctx, s, sizeof(struct pt_event) + len);
        }
    }
    inflight_exec.delete(&tid);
    return 0;
}

TRACEPOINT_PROBE(syscalls, sys_exit_execve)
{
    return exec_exit(args, args->ret);
}

TRACEPOINT_PROBE(syscalls, sys_exit_execveat)
{
    return exec_exit(args, args->ret);
}

#if WITH_FDS
/* The fd table right after an exec (close-on-exec descriptors are already
 * closed): one struct pt_fd slot per fd number below min(max_fds, FDS_MAX),
 * empty slots have fd == PT_FD_EMPTY.  The loop body has no data-dependent
 * branches (failed reads leave zeros) so the verifier's work stays linear. */
static __always_inline void emit_fds(void *ctx, struct scratch *s, void *task)
{
    struct pt_event *ev = &s->ev;
    ev->type = PT_FDS;
    ev->flags = 0;
    __builtin_memset(&ev->u, 0, sizeof(ev->u));
    void *files = 0, *fdt = 0, *fdarr = 0;
    __u32 max_fds = 0;
    READ_PTR(files, task, OFF_TASK_FILES);
    READ_PTR(fdt, files, OFF_FILES_FDT);
    READ_U32(max_fds, fdt, OFF_FDT_MAX_FDS);
    READ_PTR(fdarr, fdt, OFF_FDT_FD);
    __u32 tgid = ev->pid;
    struct fork_files *forked = fork_fds.lookup(&tgid);
    if (!forked)
        ev->flags |= PT_F_FORK_UNKNOWN;
    __u32 count = max_fds;
    if (count > FDS_MAX) {
        count = FDS_MAX;
        ev->flags |= PT_F_FDS_TRUNCATED;
    }
    /* Stop after the last open descriptor (open_fds bitmap, FDS_MAX / 64 words). */
    {
        void *open_fds = 0;
        READ_PTR(open_fds, fdt, OFF_FDT_OPEN_FDS);
        __u32 last = 0;
#pragma unroll
        for (__u32 w = 0; w < FDS_MAX / 64; w++) {
            __u64 x = 0;
            bpf_probe_read_kernel(&x, 8, (char *)open_fds + w * 8);
            /* words at or past max_fds are not the bitmap: drop them (no branch) */
            __s64 d = (__s64)count - (__s64)(w * 64) - 1;
            x &= ~(__u64)(d >> 63);
            /* fls(x) without branches (each branch would double the verifier's paths):
             * smear the highest bit down, then count the bits. */
            x |= x >> 1; x |= x >> 2; x |= x >> 4; x |= x >> 8; x |= x >> 16; x |= x >> 32;
            x = x - ((x >> 1) & 0x5555555555555555ULL);
            x = (x & 0x3333333333333333ULL) + ((x >> 2) & 0x3333333333333333ULL);
            x = (x + (x >> 4)) & 0x0f0f0f0f0f0f0f0fULL;
            __u64 fls = (x * 0x0101010101010101ULL) >> 56;
            __u64 nz = (fls + 63) >> 6;
            last = last * (1 - nz) + (w * 64 + fls) * nz;
        }
        count = last < count ? last : count;
    }
#pragma clang loop unroll(disable)
    for (__u32 i = 0; i < FDS_MAX; i++) {
        if (i >= count)
            break;
        /* An explicit bound on the byte offset, hidden from the compiler so it
         * stays in the program: older verifiers (6.1) lose the range of a
         * masked index times sizeof() and reject the slot writes. */
        __u32 off = i * sizeof(struct pt_fd);
        asm volatile("" : "+r"(off));
        if (off > sizeof(s->data) - sizeof(struct pt_fd))
            break;
        struct pt_fd *o = (struct pt_fd *)(s->data + off);
        void *file = 0, *inode = 0, *sb = 0, *dentry = 0, *name = 0;
        READ_PTR(file, fdarr, i * sizeof(void *));
        o->fd = file ? i : PT_FD_EMPTY;
        o->inherited = PT_FD_INHERIT_UNKNOWN;
        if (forked && i < FORK_FDS)
            o->inherited = forked->file[i & (FORK_FDS - 1)] == (__u64)file;
        o->mode = o->dev = o->rdev = o->flags = 0;
        o->ino = 0;
        o->name[0] = 0;
        READ_U32(o->flags, file, OFF_FILE_F_FLAGS);
        READ_PTR(inode, file, OFF_FILE_F_INODE);
        bpf_probe_read_kernel(&o->mode, 2, (char *)inode + OFF_INODE_I_MODE);
        bpf_probe_read_kernel(&o->ino, 8, (char *)inode + OFF_INODE_I_INO);
        READ_U32(o->rdev, inode, OFF_INODE_I_RDEV);
        READ_PTR(sb, inode, OFF_INODE_I_SB);
        READ_U32(o->dev, sb, OFF_SB_S_DEV);
        READ_PTR(dentry, file, OFF_FILE_F_PATH + OFF_PATH_DENTRY);
        READ_PTR(name, dentry, OFF_DENTRY_D_NAME + OFF_QSTR_NAME);
        bpf_probe_read_kernel_str(o->name, sizeof(o->name), name);
    }
    ev->u.fds.size = count * sizeof(struct pt_fd);
    __u64 size = sizeof(struct pt_event) + (count & (2 * FDS_MAX - 1)) * sizeof(struct pt_fd);
    if (size > sizeof(struct scratch))
        return;
    events.perf_submit(ctx, s, size);
}
#endif

#if WITH_ENV
/* Copy the chosen variables of the new image's environment to s->data + off, each
 * "NAME=value" NUL-terminated (u.exec.env_len bytes); returns the offset after them.  The strings and the
 * envp[] array (on the new stack: argc, argv[], NULL, envp[]) are read in one copy
 * each; an entry is looked at only through its first 8 * PT_ENV_WORDS bytes (a
 * hash of a few; for the few whose hash slot is used, its name looked up, in a
 * second loop), and only a match is copied, from the process's memory, into the
 * record. */
static __always_inline __u64 read_env(struct scratch *s, __u64 off, void *mm, void *bprm,
                                      __u32 cpu)
{
    int zero = 0;
    struct pt_env_conf *conf = env_conf.lookup(&zero);
    struct env_scratch *es = env_scratch.lookup(&cpu);
    if (!conf || !es || !mm)
        return off;
    struct pt_event *ev = &s->ev;
    ev->flags |= PT_F_ENV;
    unsigned long env_start = 0, env_end = 0, start_stack = 0;
    __s32 argc = 0, envc = 0;
    bpf_probe_read_kernel(&env_start, sizeof(env_start), (char *)mm + OFF_MM_ENV_START);
    bpf_probe_read_kernel(&env_end, sizeof(env_end), (char *)mm + OFF_MM_ENV_END);
    bpf_probe_read_kernel(&start_stack, sizeof(start_stack), (char *)mm + OFF_MM_START_STACK);
    READ_U32(argc, bprm, OFF_BINPRM_ARGC);
    READ_U32(envc, bprm, OFF_BINPRM_ENVC);
    if (envc <= 0 || env_end <= env_start)
        return off;
    __u64 alen = env_end - env_start;
    if (alen > ENV_AREA_MAX) {
        alen = ENV_AREA_MAX;
        ev->flags |= PT_F_ENV_TRUNCATED;
    }
    __u64 n = envc;
    if (n > ENV_ENTRIES) {
        n = ENV_ENTRIES;
        ev->flags |= PT_F_ENV_TRUNCATED;
    }
    __u64 envp = start_stack + 8 * ((__u64)(argc & 0x3FFFFF) + 2);
    if (bpf_probe_read_user(es->area, alen & (2 * ENV_AREA_MAX - 1), (void *)env_start) != 0 ||
        bpf_probe_read_user(es->envp, (n & (2 * ENV_ENTRIES - 1)) * 8, (void *)envp) != 0 ||
        es->envp[0] != env_start) {
        ev->flags |= PT_F_ENV_TRUNCATED; /* unreadable, or not the layout of an ELF stack */
        return off;
    }
    /* Everything the loop needs besides its index lives in `es`, not in registers:
     * the paths that lead here (script or not, clamped or not) then reach the loop
     * in the same verifier state, and the states of its iterations do not differ
     * by what was matched so far (else the verifier gives up: too many paths). */
    es->start = env_start;
    es->alen = alen;
    es->n = n;
    es->base = off;
    /* room for the data: PT_ENV_MAX, less when argv and paths fill the record */
    es->cap = PT_ENV_MAX;
    if (RECORD_MAX - sizeof(struct pt_event) - off < PT_ENV_MAX)
        es->cap = RECORD_MAX - sizeof(struct pt_event) - off;
    es->out = 0;
    es->cut = 0;
    es->nc = 0;
    /* 1. every entry: a hash of its first bytes; the few whose slot is used are
     *    candidates (cheap for the verifier: one short path per entry) */
#pragma clang loop unroll(disable)
    for (__u32 i = 0; i < ENV_ENTRIES; i++) {
        asm volatile("" ::: "memory"); /* read the loop state from `es` each time */
        if (i >= es->n)
            break;
        __u64 o = es->envp[i] - es->start;
        if (o >= es->alen) {
            es->cut = 1; /* past what was read (entries are in order) */
            break;
        }
        o &= ENV_AREA_MAX - 1;
        /* conf's values are the same for every entry: keep the compiler from hoisting
         * them out of the loop */
        struct pt_env_conf *cf = conf;
        asm volatile("" : "+r"(cf));
        /* unaligned loads (fine for map values on x86 and arm64) */
        volatile __u64 *x = (volatile __u64 *)(es->area + o);
        __u64 h = 0;
#pragma unroll
        for (int w = 0; w < PT_ENV_WORDS; w++)
            h += (x[w] & cf->hmask[w]) * cf->mult[w];
        if (!cf->used[(h >> (64 - PT_ENV_SLOT_BITS)) & (PT_ENV_SLOTS - 1)])
            continue;
        __u64 k = es->nc;
        if (k >= ENV_CANDIDATES) {
            es->cut = 1;
            break;
        }
        es->cand[k & (ENV_CANDIDATES - 1)] = i;
        es->nc = k + 1;
    }
    /* 2. each candidate: its name, up to and with the first '=' in its first
     *    8 * PT_ENV_WORDS bytes, is looked up in `env_names`; a match is copied */
#pragma clang loop unroll(disable)
    for (__u32 c = 0; c < ENV_CANDIDATES; c++) {
        asm volatile("" ::: "memory");
        if (c >= es->nc)
            break;
        __u64 i = es->cand[c] & (ENV_ENTRIES - 1);
        __u64 o = (es->envp[i] - es->start) & (ENV_AREA_MAX - 1);
        volatile __u64 *x = (volatile __u64 *)(es->area + o);
        /* Without branches (each would double the verifier's paths): find that '='
         * (a zero byte of x ^ "===="), then mask each word to the bytes up to it. */
        __u64 pos = 8 * PT_ENV_WORDS, found = 0;
#pragma unroll
        for (int w = 0; w < PT_ENV_WORDS; w++) {
            __u64 t = x[w] ^ 0x3d3d3d3d3d3d3d3dULL;
            __u64 z = (t - 0x0101010101010101ULL) & ~t & 0x8080808080808080ULL;
            __u64 low = z & (0 - z); /* the first '=' of this word (exact: lowest) */
            __u64 b = low - 1;       /* popcount(low - 1) / 8 = its byte index */
            b = b - ((b >> 1) & 0x5555555555555555ULL);
            b = (b & 0x3333333333333333ULL) + ((b >> 2) & 0x3333333333333333ULL);
            b = (b + (b >> 4)) & 0x0f0f0f0f0f0f0f0fULL;
            b = ((b * 0x0101010101010101ULL) >> 56) >> 3;
            __u64 take = ((z | (0 - z)) >> 63) & (found ^ 1);
            asm volatile("" : "+r"(take)); /* 0 or 1: no select (a branch) on it */
            pos = (pos & (take - 1)) | ((8 * w + b) & (0 - take));
            found |= take;
        }
#pragma unroll
        for (int w = 0; w < PT_ENV_WORDS; w++) {
            __u64 d = pos + 1 - 8 * w; /* bytes of this word in the key (as signed) */
            __u64 all = ((d - 8) >> 63) ^ 1; /* d >= 8 */
            __u64 none = (d - 1) >> 63;      /* d <= 0 */
            asm volatile("" : "+r"(all));    /* 0 or 1: no select (a branch) on them */
            asm volatile("" : "+r"(none));
            __u64 m = (((1ULL << ((8 * d) & 63)) - 1) | (0 - all)) & (none - 1);
            es->key.word[w] = x[w] & m & (0 - found);
        }
        __u32 *lenp = env_names.lookup(&es->key);
        if (!lenp)
            continue;
        __u64 len = *lenp;
        /* its name must lie in what was read, and fit in the room left */
        __u64 out = es->out, cap = es->cap;
        if (o + len > es->alen || out + len >= cap) {
            es->cut = 1;
            continue;
        }
        /* Explicit bounds hidden from the compiler (the 6.1 verifier loses them). */
        __u64 dst = es->base + out;
        __u64 room = cap - out;
        asm volatile("" : "+r"(dst));
        asm volatile("" : "+r"(room));
        if (dst > ARGV_MAX + 3 * PATH_MAX_ + PT_ENV_MAX || room > PT_ENV_MAX)
            break;
        long r = bpf_probe_read_user_str(s->data + dst, room, (void *)es->envp[i]);
        if (r <= 0 || r >= room) /* unreadable, or cut: the rest does not fit */
            es->cut = 1;
        if (r > 0)
            es->out = out + r;
    }
    if (es->cut)
        ev->flags |= PT_F_ENV_TRUNCATED;
    __u64 out = es->out > es->cap ? 0 : es->out;
    ev->u.exec.env_len = out;
    return es->base + out; /* from `es`: `off` is not live across the loop */
}
#endif

RAW_TRACEPOINT_PROBE(sched_process_exec)
{
    void *task = (void *)bpf_get_current_task();
    __u32 old_tid = (__u32)ctx->args[1];
    void *bprm = (void *)ctx->args[2];
    __u32 cpu = bpf_get_smp_processor_id();
    struct scratch *s = scratch_buf.lookup(&cpu);
    struct config *c = get_config();
    if (!s || !c)
        return 0;
    if (!fill(c, &s->ev, task, PT_EXEC))
        return 0;
    struct pt_event *ev = &s->ev;
    ev->u.exec.old_tid = old_tid;
    __s32 argc = 0;
    READ_U32(argc, bprm, OFF_BINPRM_ARGC);
    ev->u.exec.argc = argc;

    /* 1. the new image's argument area: resident, complete */
    void *mm = 0;
    unsigned long arg_start = 0, arg_end = 0;
    READ_PTR(mm, task, OFF_TASK_MM);
    if (mm) {
        bpf_probe_read_kernel(&arg_start, sizeof(arg_start), (char *)mm + OFF_MM_ARG_START);
        bpf_probe_read_kernel(&arg_end, sizeof(arg_end), (char *)mm + OFF_MM_ARG_END);
    }
    __u64 len = arg_end > arg_start ? arg_end - arg_start : 0;
    if (len > ARGV_MAX) {
        len = ARGV_MAX;
        ev->flags |= PT_F_TRUNCATED;
    }
    len &= 0xFFFF;
    if (len > ARGV_MAX)
        len = ARGV_MAX;
    if (len && bpf_probe_read_user(s->data, len, (void *)arg_start) != 0) {
        ev->flags |= PT_F_ARGS_FAULT;
        bump(PT_STAT_ARGS_FAULT);
        len = 0;
    }
    ev->u.exec.args_len = len;
    __u32 off = len;

    /* 2. the file the kernel executed */
    const char *filename = 0, *interp = 0;
    READ_PTR(filename, bprm, OFF_BINPRM_FILENAME);
    READ_PTR(interp, bprm, OFF_BINPRM_INTERP);
    off &= 0xFFFF;
    if (off > ARGV_MAX)
        return 0;
    long n = bpf_probe_read_kernel_str(s->data + off, PATH_MAX_, filename);
    __u32 flen = n > 0 ? n - 1 : 0;
    ev->u.exec.filename_len = flen;
    off += flen & (PATH_MAX_ - 1);

    /* 3. for `#!` scripts (and binfmt_misc): the interpreter, and the caller's argv[0] */
    if (interp && interp != filename) {
        ev->flags |= PT_F_SCRIPT;
        off &= 0x1FFFF;
        if (off > ARGV_MAX + PATH_MAX_)
            return 0;
        n = bpf_probe_read_kernel_str(s->data + off, PATH_MAX_, interp);
        __u32 ilen = n > 0 ? n - 1 : 0;
        ev->u.exec.interp_len = ilen;
        off += ilen & (PATH_MAX_ - 1);
        struct exec_args *a = inflight_exec.lookup(&old_tid);
        if (a && a->argv0_ok) {
            off &= 0x1FFFF;
            if (off > ARGV_MAX + 2 * PATH_MAX_)
                return 0;
            __u32 alen = a->argv0_len & (PATH_MAX_ - 1);
            bpf_probe_read_kernel(s->data + off, alen, a->argv0);
            ev->u.exec.argv0_len = alen;
            ev->flags |= PT_F_ARGV0;
            off += alen;
        } else {
            bump(PT_STAT_ARGV0_FAULT);
        }
    }
#if WITH_ENV
    off &= 0x1FFFF;
    if (off > ARGV_MAX + 3 * PATH_MAX_)
        return 0;
    off = read_env(s, off, mm, bprm, cpu);
#endif
    inflight_exec.delete(&old_tid);
#if WITH_FDS
    ev->flags |= PT_F_HAS_FDS;
#endif
    __u64 size = sizeof(struct pt_event) + off;
    size &= 0x1FFFF;
    if (size > sizeof(struct scratch))
        return 0;
    events.perf_submit(ctx, s, size);
#if WITH_FDS
    emit_fds(ctx, s, task);
#endif
    return 0;
}

/* ---------------------------------------------------------------- exit */

RAW_TRACEPOINT_PROBE(sched_process_exit)
{
    void *task = (void *)bpf_get_current_task();
    void *signal = 0;
    READ_PTR(signal, task, OFF_TASK_SIGNAL);
    if (!signal)
        return 0;
    __s32 live = 1;
    READ_U32(live, signal, OFF_SIGNAL_LIVE);
    if (live != 0)
        return 0; /* a thread exits, the process goes on */
    struct config *c = get_config();
    if (!c)
        return 0;
    struct pt_event ev = {};
    if (!fill(c, &ev, task, PT_EXIT))
        return 0;
    __u32 sflags = 0;
    __s32 status = 0;
    READ_U32(sflags, signal, OFF_SIGNAL_FLAGS);
    if (sflags & SIGNAL_GROUP_EXIT_)
        READ_U32(status, signal, OFF_SIGNAL_GROUP_EXIT_CODE);
    else
        READ_U32(status, task, OFF_TASK_EXIT_CODE);
    ev.u.exit.status = status;
    events.perf_submit(ctx, &ev, sizeof(ev));
    __u32 tgid = ev.pid;
#if FILTER
    traced.delete(&tgid);
#endif
#if WITH_FDS
    fork_fds.delete(&tgid);
#endif
    return 0;
}

/* ---------------------------------------------------------------- signals */

/* signal_generate(sig, info, task, group, result): a fatal-by-default signal for a
 * traced process (not the recorder).  The test of `sig` comes first: SIGCHLD and the
 * other harmless signals cost that test only. */
RAW_TRACEPOINT_PROBE(signal_generate)
{
    int sig = (int)ctx->args[0];
    if (sig <= 0 || sig > 31 || !((PT_FATAL_SIGNALS >> sig) & 1))
        return 0;
    struct config *c = get_config();
    if (!c)
        return 0;
    void *task = (void *)ctx->args[2];
    struct pt_event ev = {};
    if (!fill(c, &ev, task, PT_SIGNAL))
        return 0;
    __u32 target = ev.pid;
    if (target == c->tracer)
        return 0; /* signals to the recorder itself */
    void *info = (void *)ctx->args[1];
    __s32 code = 0; /* SEND_SIG_NOINFO: SI_USER */
    if (info == (void *)1)
        code = 0x80; /* SEND_SIG_PRIV: SI_KERNEL */
    else if (info)
        READ_U32(code, info, 8); /* kernel_siginfo.si_code (uapi layout) */
    __u32 sender = task_pidtype(c, (void *)bpf_get_current_task(), PIDTYPE_TGID_);
    ev.u.signal.sig = sig;
    ev.u.signal.code = code;
    ev.u.signal.sender = sender;
    bpf_get_current_comm(&ev.u.signal.sender_comm, sizeof(ev.u.signal.sender_comm));
    if (sender == c->tracer)
        ev.flags |= PT_F_BY_TRACER;
    events.perf_submit(ctx, &ev, sizeof(ev));
    return 0;
}

/* ---------------------------------------------------------------- setpgid / setsid */

TRACEPOINT_PROBE(syscalls, sys_enter_setpgid)
{
    struct config *c = get_config();
    if (!c)
        return 0;
    if (!current_traced(c))
        return 0;
    __u32 tid = (__u32)bpf_get_current_pid_tgid();
    struct pgid_args a = {.pid = args->pid, .pgid = args->pgid};
    inflight_pgid.update(&tid, &a);
    return 0;
}

TRACEPOINT_PROBE(syscalls, sys_exit_setpgid)
{
    __u32 tid = (__u32)bpf_get_current_pid_tgid();
    struct pgid_args *a = inflight_pgid.lookup(&tid);
    if (!a)
        return 0;
    struct pgid_args copy = *a;
    inflight_pgid.delete(&tid);
    if (args->ret != 0)
        return 0;
    struct config *c = get_config();
    if (!c)
        return 0;
    struct pt_event ev = {};
    if (!fill(c, &ev, (void *)bpf_get_current_task(), PT_SETPGID))
        return 0;
    /* Resolve 0 arguments as the kernel does: pid 0 = caller, pgid 0 = target pid. */
    __s32 target = copy.pid ? copy.pid : (__s32)ev.pid;
    ev.u.setpgid.target_pid = target;
    ev.u.setpgid.pgid = copy.pgid ? copy.pgid : target;
    events.perf_submit(args, &ev, sizeof(ev));
    return 0;
}

TRACEPOINT_PROBE(syscalls, sys_exit_setsid)
{
    if (args->ret < 0)
        return 0;
    struct config *c = get_config();
    if (!c)
        return 0;
    struct pt_event ev = {};
    if (!fill(c, &ev, (void *)bpf_get_current_task(), PT_SETSID))
        return 0;
    ev.u.setsid.sid = ev.sid;
    events.perf_submit(args, &ev, sizeof(ev));
    return 0;
}

/* ---------------------------------------------------------------- handshake */

TRACEPOINT_PROBE(syscalls, sys_enter_prctl)
{
    if (args->option != HANDSHAKE)
        return 0;
    int zero = 0;
    struct config *c = config_map.lookup(&zero);
    if (!c || c->ready)
        return 0;
    void *task = (void *)bpf_get_current_task();
    void *pid = 0;
    __u32 level = 0;
    READ_PTR(pid, task, OFF_TASK_THREAD_PID);
    if (!pid)
        return 0;
    READ_U32(level, pid, OFF_PID_LEVEL);
    level &= 31;
    char *upid = (char *)pid + OFF_PID_NUMBERS + level * SIZE_UPID;
    c->level = level;
    c->inum = ns_inum(upid);
    READ_U32(c->tracer, upid, OFF_UPID_NR); /* called from the main thread: tid == tgid */
#if FILTER
    __u32 tracer = c->tracer;
    __u8 two = 2;
    traced.update(&tracer, &two);
#endif
    c->ready = 1;
    return 0;
}
