/* shim.c - parent-side helpers bound through cffi.
 *
 * oci_spawn: start the sealed ociruntime-init with exactly the fds it needs. fds[i] lands on base+i;
 * fds 0..base-1 (stdio and --preserve-fds) are inherited with CLOEXEC cleared; every other fd is
 * close-on-exec (CVE-2024-21626: nothing the caller leaked reaches the init); the init is execveat'd
 * from the sealed memfd exec_fd with an empty environment and an empty signal mask.
 *
 * The child is started vfork-style, as glibc's posix_spawn does: clone(CLONE_VM | CLONE_VFORK |
 * CLONE_PIDFD) on a dedicated mmap'd stack, so that the Python process's page tables are neither
 * copied nor write-protected (a full fork of a Python process costs ~1 ms of copy_page_range and,
 * afterwards, copy-on-write faults in the parent). The child shares the parent's memory until
 * execveat, hence the rules for spawn_child():
 *  - only raw syscalls and thin async-signal-safe libc wrappers (fcntl, dup2, syscall, _exit); no
 *    malloc, no stdio, nothing that takes a lock;
 *  - the calling thread blocks every signal (raw rt_sigprocmask: glibc's internal SIGCANCEL/SIGSETXID
 *    too) around the clone, so the child starts with all signals blocked; it resets every signal
 *    that has a handler to SIG_DFL before it unblocks them (Python's C-level handler, which writes to
 *    the parent's memory, must never run in the child); the parent restores its mask afterwards;
 *  - the libc wrappers set errno, which is the suspended parent thread's TLS (the child runs with
 *    the parent's thread pointer, as in glibc's posix_spawn): the parent saves and restores errno
 *    around the spawn, so the caller sees no change;
 *  - the error (an errno value) is reported through the shared struct spawn_args in the parent's
 *    frame, not a pipe: the parent is suspended until the child has exec'd (err stays 0) or exited.
 * glibc's clone() wrapper is used rather than a raw clone3: returning from a raw CLONE_VM clone into
 * C code on a new stack is unsafe outside assembly, while clone() runs fn on the given stack. With
 * legacy clone, CLONE_PIDFD stores the pidfd through the parent_tid argument (kernel >= 5.2).
 *
 * With cgroup_fd >= 0 the child is born in that cgroup v2 directory (CLONE_INTO_CGROUP), which only
 * clone3 offers: that path stays a plain (copying) clone3 fork that reports errors through a pipe.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <stdint.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>
#include "shim.h"

#ifndef SYS_clone3
#define SYS_clone3 435
#endif
#ifndef SYS_close_range
#define SYS_close_range 436
#endif
#ifndef SYS_pidfd_open
#define SYS_pidfd_open 434
#endif
#ifndef CLONE_PIDFD
#define CLONE_PIDFD 0x00001000
#endif
#define OCI_CLONE_INTO_CGROUP 0x200000000ULL
#define OCI_CLOSE_RANGE_CLOEXEC (1U << 2)
#define OCI_KSIGSET_SIZE 8   /* the kernel's sigset_t: _NSIG (64) bits */
#define OCI_NSIG 65
#define OCI_SPAWN_STACK (64 * 1024)

struct oci_clone_args {
	uint64_t flags, pidfd, child_tid, parent_tid, exit_signal, stack, stack_size, tls, set_tid, set_tid_size, cgroup;
};

/* the kernel's struct sigaction (rt_sigaction): only SIG_DFL/SIG_IGN are ever installed with it, so
 * no sa_restorer is needed */
struct oci_ksigaction {
	void *handler;
	unsigned long flags;
	void *restorer;
	uint64_t mask;
};

struct spawn_args {
	int exec_fd;
	char *const *argv;
	const int *fds;
	int nfds;
	int base;
	int errfd;          /* fork path: the error pipe; vfork path: -1 */
	volatile int err;   /* vfork path: the child's errno, read by the parent once it resumes */
};

/* Moves the fds and exec's the init; returns only on failure, with the errno value. */
static int spawn_child(struct spawn_args *a)
{
	int exec_fd = a->exec_fd, errfd = a->errfd, nfds = a->nfds, base = a->base;
	const int *fds = a->fds;
	int hi = base + nfds;
	for (int i = 0; i < nfds; i++) if (fds[i] >= hi) hi = fds[i] + 1;
	if (exec_fd >= hi) hi = exec_fd + 1;
	if (errfd >= hi) hi = errfd + 1;
	int tmp[64];
	if (nfds > 64) return EINVAL;
	/* move everything out of the way first, so that no dup2 clobbers a source */
	if (errfd >= 0) {
		if ((errfd = fcntl(errfd, F_DUPFD_CLOEXEC, hi)) < 0) return errno;
		a->errfd = errfd;
	}
	if ((exec_fd = fcntl(exec_fd, F_DUPFD_CLOEXEC, hi)) < 0) return errno;
	for (int i = 0; i < nfds; i++)
		if ((tmp[i] = fcntl(fds[i], F_DUPFD_CLOEXEC, hi)) < 0) return errno;
	for (int i = 0; i < nfds; i++)
		if (dup2(tmp[i], base + i) < 0) return errno;
	for (int fd = 0; fd < base; fd++) {
		int fl = fcntl(fd, F_GETFD);
		if (fl >= 0 && (fl & FD_CLOEXEC)) fcntl(fd, F_SETFD, fl & ~FD_CLOEXEC);
	}
	if (syscall(SYS_close_range, base + nfds, ~0U, OCI_CLOSE_RANGE_CLOEXEC) < 0) {
		for (int fd = base + nfds; fd < 4096; fd++)
			if (fd != errfd && fd != exec_fd) fcntl(fd, F_SETFD, FD_CLOEXEC);
	}
	/* every signal with a handler back to SIG_DFL while all are still blocked (raw rt_sigaction:
	 * glibc's wrapper refuses its internal signals), then the init starts with an empty mask */
	for (int sig = 1; sig < OCI_NSIG; sig++) {
		struct oci_ksigaction sa;
		if (sig == SIGKILL || sig == SIGSTOP) continue;
		if (syscall(SYS_rt_sigaction, sig, NULL, &sa, OCI_KSIGSET_SIZE) < 0) continue;
		if (sa.handler == (void *)SIG_DFL || sa.handler == (void *)SIG_IGN) continue;
		memset(&sa, 0, sizeof(sa));
		sa.handler = (void *)SIG_DFL;
		syscall(SYS_rt_sigaction, sig, &sa, NULL, OCI_KSIGSET_SIZE);
	}
	uint64_t none = 0;
	syscall(SYS_rt_sigprocmask, SIG_SETMASK, &none, NULL, OCI_KSIGSET_SIZE);
	char *envp[] = { NULL };
	syscall(SYS_execveat, exec_fd, "", a->argv, envp, AT_EMPTY_PATH);
	return errno;
}

/* clone() entry of the vfork path: runs on the mmap'd stack, in the parent's memory. */
static int spawn_vfork_fn(void *arg)
{
	struct spawn_args *a = arg;
	int e = spawn_child(a);
	a->err = e ? e : EINVAL;
	_exit(127);
}

/* The CLONE_INTO_CGROUP path: a copying clone3 fork; the child reports its errno through a pipe. */
static int spawn_fork(struct spawn_args *a, int cgroup_fd, int *pidfd_out)
{
	int ep[2];
	if (pipe2(ep, O_CLOEXEC) < 0) return -errno;
	int pidfd = -1;
	struct oci_clone_args ca;
	memset(&ca, 0, sizeof(ca));
	ca.flags = CLONE_PIDFD | OCI_CLONE_INTO_CGROUP;
	ca.pidfd = (uint64_t)(uintptr_t)&pidfd;
	ca.exit_signal = SIGCHLD;
	ca.cgroup = (uint64_t)cgroup_fd;
	pid_t pid = (pid_t)syscall(SYS_clone3, &ca, sizeof(ca));
	if (pid < 0) { int e = errno; close(ep[0]); close(ep[1]); return -e; }
	if (pid == 0) {
		close(ep[0]);
		a->errfd = ep[1];
		int e = spawn_child(a);
		(void)!write(a->errfd, &e, sizeof(e));
		_exit(127);
	}
	close(ep[1]);
	int e = 0;
	ssize_t n;
	do n = read(ep[0], &e, sizeof(e)); while (n < 0 && errno == EINTR);
	close(ep[0]);
	if (n == (ssize_t)sizeof(e)) {
		waitpid(pid, NULL, 0);
		if (pidfd >= 0) close(pidfd);
		return -e;
	}
	*pidfd_out = pidfd;
	return pid;
}

int oci_spawn(int exec_fd, char *const argv[], const int *fds, int nfds, int base, int cgroup_fd, int *pidfd_out)
{
	struct spawn_args a = { .exec_fd = exec_fd, .argv = argv, .fds = fds, .nfds = nfds, .base = base,
	                        .errfd = -1, .err = 0 };
	if (cgroup_fd >= 0) return spawn_fork(&a, cgroup_fd, pidfd_out);

	/* the child's stack: a guard page below it, and never touched by the suspended parent thread */
	size_t pg = (size_t)sysconf(_SC_PAGESIZE);
	size_t len = OCI_SPAWN_STACK + pg;
	char *stack = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_STACK, -1, 0);
	if (stack == MAP_FAILED) return -errno;
	if (mprotect(stack, pg, PROT_NONE) < 0) { int e = errno; munmap(stack, len); return -e; }

	int saved_errno = errno;
	uint64_t all = ~(uint64_t)0, old;
	syscall(SYS_rt_sigprocmask, SIG_SETMASK, &all, &old, OCI_KSIGSET_SIZE);
	int pidfd = -1;
	pid_t pid = clone(spawn_vfork_fn, stack + len, CLONE_VM | CLONE_VFORK | CLONE_PIDFD | SIGCHLD, &a, &pidfd);
	int e = pid < 0 ? errno : 0;
	if (pid < 0 && e == EINVAL) {
		/* a kernel without CLONE_PIDFD for clone(): the same spawn, then pidfd_open (the child is ours
		 * and unreaped, so its pid cannot have been reused) */
		pid = clone(spawn_vfork_fn, stack + len, CLONE_VM | CLONE_VFORK | SIGCHLD, &a);
		e = pid < 0 ? errno : 0;
		if (pid > 0 && a.err == 0) {
			pidfd = (int)syscall(SYS_pidfd_open, pid, 0);
			if (pidfd < 0) e = errno;
		}
	}
	syscall(SYS_rt_sigprocmask, SIG_SETMASK, &old, NULL, OCI_KSIGSET_SIZE);
	/* the child has exec'd or exited: its stack is free */
	munmap(stack, len);
	errno = saved_errno;

	if (pid < 0) return -e;
	if (a.err != 0 || e != 0) {
		int err = a.err != 0 ? a.err : e;
		if (a.err == 0) kill(pid, SIGKILL);
		waitpid(pid, NULL, 0);
		if (pidfd >= 0) close(pidfd);
		return -err;
	}
	*pidfd_out = pidfd;
	return pid;
}

/* oci_userns_helper: a child born in a new user namespace that only waits (idmapped mounts need a user
 * namespace carrying each mount's mapping; the caller writes its uid_map/gid_map, opens
 * /proc/<pid>/ns/user and ends it by pid). No Python runs in it: between clone and _exit it only blocks
 * signals and reads a pipe, which also ends it should the caller die (EOF). Returns the pid (the pipe's
 * write end in *hold_fd) or -errno. It stays a copying clone, unlike oci_spawn: the child outlives the
 * call (CLONE_VFORK would suspend the caller until it is ended), and a CLONE_VM child running
 * concurrently with the interpreter would write the calling thread's errno and need a stack whose
 * lifetime the C side cannot know. It is made only for idmapped mounts, once per distinct mapping. */
int oci_userns_helper(int *hold_fd)
{
	int p[2];
	if (pipe2(p, O_CLOEXEC) < 0) return -errno;
	struct oci_clone_args ca;
	memset(&ca, 0, sizeof(ca));
	ca.flags = CLONE_NEWUSER;
	ca.exit_signal = SIGCHLD;
	pid_t pid = (pid_t)syscall(SYS_clone3, &ca, sizeof(ca));
	if (pid < 0 && (errno == ENOSYS || errno == E2BIG))
		pid = (pid_t)syscall(SYS_clone, CLONE_NEWUSER | SIGCHLD, 0, 0, 0, 0);
	if (pid < 0) { int e = errno; close(p[0]); close(p[1]); return -e; }
	if (pid == 0) {
		sigset_t all;
		sigfillset(&all);
		sigprocmask(SIG_SETMASK, &all, NULL);
		close(p[1]);
		char c;
		while (read(p[0], &c, 1) < 0 && errno == EINTR)
			;
		_exit(0);
	}
	close(p[0]);
	*hold_fd = p[1];
	return pid;
}

int oci_set_child_subreaper(void)
{
	return prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) < 0 ? -errno : 0;
}

/* oci_seccomp_compile: the container's seccomp profile compiled to BPF in the parent with libseccomp
 * (as crun does); the init only loads the program (SECCOMP_SET_MODE_FILTER). As runc
 * (libcontainer/seccomp): a rule whose action equals the default action is skipped, unknown syscall
 * names are skipped (a profile may name syscalls this libseccomp or arch does not know), libseccomp's
 * binary-tree optimisation is used for more than 32 rules, and, unless the default action is
 * permissive (ALLOW, LOG, TRACE), the program is prefixed with runc's -ENOSYS stub (patchbpf): a
 * syscall numbered above the largest one the profile names, for its architecture, gets ENOSYS
 * instead of the default action, so that libcs fall back from syscalls newer than the profile
 * (clone3, faccessat2, …). Writes the stub then libseccomp's program to out_fd; 0 or -1 (err set). */
#include <seccomp.h>
#include <stdio.h>

struct oci_sock_filter { uint16_t code; uint8_t jt, jf; uint32_t k; };
enum { OCI_BPF_LD_ABS_W = 0x20, OCI_BPF_JA = 0x05, OCI_BPF_JEQ = 0x15, OCI_BPF_JGT = 0x25, OCI_BPF_JSET = 0x45,
       OCI_BPF_RET = 0x06 };
#define OCI_RET_ERRNO_ENOSYS (0x00050000U | ENOSYS)
#define OCI_X32_SYSCALL_BIT 0x40000000U
#define OCI_AUDIT_ARCH_X86_64 0xC000003EU
#define OCI_STUB_MAX 512
#define OCI_STUB_LABELS 64

struct oci_stub {
	struct oci_sock_filter ins[OCI_STUB_MAX];
	int target[OCI_STUB_MAX]; /* label of a ja, -1 otherwise */
	int label[OCI_STUB_LABELS];
	unsigned int n, nlabels;
	int overflow;
};
enum { OCI_L_FILTER, OCI_L_ENOSYS, OCI_L_FIRST };

static void stub_ins(struct oci_stub *s, uint16_t code, uint8_t jt, uint8_t jf, uint32_t k, int target)
{
	if (s->n >= OCI_STUB_MAX) { s->overflow = 1; return; }
	s->ins[s->n] = (struct oci_sock_filter){ code, jt, jf, k };
	s->target[s->n++] = target;
}
static int stub_label(struct oci_stub *s)
{
	if (s->nlabels >= OCI_STUB_LABELS) { s->overflow = 1; return OCI_L_FILTER; }
	s->label[s->nlabels] = -1;
	return (int)s->nlabels++;
}
static void stub_ja(struct oci_stub *s, int label) { stub_ins(s, OCI_BPF_JA, 0, 0, 0, label); }
static void stub_here(struct oci_stub *s, int label) { s->label[label] = (int)s->n; }
/* nr > max: ENOSYS, else: the filter */
static void stub_check_max(struct oci_stub *s, uint32_t max)
{
	stub_ins(s, OCI_BPF_JGT, 0, 1, max, -1);
	stub_ja(s, OCI_L_ENOSYS);
	stub_ja(s, OCI_L_FILTER);
}

struct oci_stub_arch { uint32_t audit; uint32_t max64, max32; int s390; };

static int oci_seccomp_permissive(unsigned int action)
{
	unsigned int a = action & 0xFFFF0000U;
	return a == SCMP_ACT_ALLOW || a == SCMP_ACT_LOG || a == (SCMP_ACT_TRACE(0) & 0xFFFF0000U);
}

/* runc patchbpf findLastSyscalls + generateEnosysStub (same decisions; every jump here is a short
 * conditional over one instruction followed by an unconditional `ja`, so no 255-jump limit). */
static int oci_seccomp_stub(struct oci_stub *s, unsigned int narchs, const char *const *archs,
                            unsigned int nrules, const struct oci_sc_rule *rules)
{
	uint32_t tokens[32];
	unsigned int ntok = 0;
	struct oci_stub_arch groups[32];
	unsigned int ngroups = 0;
	memset(s, 0, sizeof(*s));
	s->nlabels = OCI_L_FIRST;
	s->label[OCI_L_FILTER] = s->label[OCI_L_ENOSYS] = -1;
	/* the profile's architectures and, always (runc >= 1.2), the native one */
	for (unsigned int i = 0; i <= narchs && ntok < 32; i++) {
		uint32_t t = i < narchs ? seccomp_arch_resolve_name(archs[i]) : seccomp_arch_native();
		int dup = 0;
		for (unsigned int j = 0; j < ntok; j++) dup |= tokens[j] == t;
		if (t && !dup) tokens[ntok++] = t;
	}
	for (unsigned int i = 0; i < ntok; i++) {
		uint32_t t = tokens[i], largest = 0;
		for (unsigned int r = 0; r < nrules; r++) {
			int nr = seccomp_syscall_resolve_name_arch(t, rules[r].name);
			if (nr >= 0 && (uint32_t)nr > largest) largest = (uint32_t)nr;
		}
		if (!largest) continue; /* no syscall of the profile on this arch (runc: same) */
		int x32 = t == SCMP_ARCH_X32;
		uint32_t audit = x32 ? OCI_AUDIT_ARCH_X86_64 : t;
		if (x32) largest |= OCI_X32_SYSCALL_BIT; /* x32 numbers carry the bit; be sure */
		unsigned int g = 0;
		while (g < ngroups && groups[g].audit != audit) g++;
		if (g == ngroups) {
			groups[ngroups++] = (struct oci_stub_arch){ audit, 0, 0, t == SCMP_ARCH_S390 || t == SCMP_ARCH_S390X };
		}
		if (x32) groups[g].max32 = largest;
		else groups[g].max64 = largest;
	}
	if (!ngroups) return 0;
	int sec[32];
	stub_ins(s, OCI_BPF_LD_ABS_W, 0, 0, 4, -1); /* seccomp_data.arch */
	for (unsigned int g = 0; g < ngroups; g++) {
		sec[g] = stub_label(s);
		stub_ins(s, OCI_BPF_JEQ, 0, 1, groups[g].audit, -1);
		stub_ja(s, sec[g]);
	}
	stub_ja(s, OCI_L_FILTER); /* another arch: the filter decides (bad arch) */
	for (unsigned int g = 0; g < ngroups; g++) {
		struct oci_stub_arch *a = &groups[g];
		stub_here(s, sec[g]);
		stub_ins(s, OCI_BPF_LD_ABS_W, 0, 0, 0, -1); /* seccomp_data.nr */
		if (a->s390) { /* setup(2) = 0 multiplexes unknown syscalls on s390(x) */
			stub_ins(s, OCI_BPF_JEQ, 0, 1, 0, -1);
			stub_ja(s, OCI_L_ENOSYS);
		}
		if (a->audit != OCI_AUDIT_ARCH_X86_64) {
			stub_check_max(s, a->max64);
		} else if (a->max64 && a->max32) {
			int l32 = stub_label(s);
			stub_ins(s, OCI_BPF_JSET, 0, 1, OCI_X32_SYSCALL_BIT, -1);
			stub_ja(s, l32);
			stub_check_max(s, a->max64);
			stub_here(s, l32);
			stub_check_max(s, a->max32);
		} else if (a->max64) {
			stub_ins(s, OCI_BPF_JSET, 0, 1, OCI_X32_SYSCALL_BIT, -1); /* an x32 syscall: not ours */
			stub_ja(s, OCI_L_FILTER);
			stub_check_max(s, a->max64);
		} else {
			stub_ins(s, OCI_BPF_JSET, 1, 0, OCI_X32_SYSCALL_BIT, -1); /* an x86_64 syscall: not ours */
			stub_ja(s, OCI_L_FILTER);
			stub_check_max(s, a->max32);
		}
	}
	stub_here(s, OCI_L_ENOSYS);
	stub_ins(s, OCI_BPF_RET, 0, 0, OCI_RET_ERRNO_ENOSYS, -1);
	stub_here(s, OCI_L_FILTER);
	if (s->overflow) return -1;
	for (unsigned int pc = 0; pc < s->n; pc++) {
		if (s->target[pc] < 0) continue;
		int to = s->label[s->target[pc]];
		if (to <= (int)pc) return -1;
		s->ins[pc].k = (uint32_t)(to - (int)pc - 1);
	}
	return 0;
}

int oci_seccomp_compile(int out_fd, unsigned int default_action, unsigned int narchs, const char *const *archs,
                        unsigned int nrules, const struct oci_sc_rule *rules, char *err, int errlen)
{
	struct oci_stub stub;
	scmp_filter_ctx ctx = seccomp_init(default_action);
	int rc;
	if (!ctx) { snprintf(err, errlen, "seccomp_init failed (default action 0x%x)", default_action); return -1; }
	/* we load the program ourselves: no NNP forced by libseccomp, no TSYNC attribute here */
	seccomp_attr_set(ctx, SCMP_FLTATR_CTL_NNP, 0);
	for (unsigned int i = 0; i < narchs; i++) {
		uint32_t a = seccomp_arch_resolve_name(archs[i]);
		if (!a) { snprintf(err, errlen, "unknown architecture %s", archs[i]); goto fail; }
		rc = seccomp_arch_add(ctx, a);
		if (rc < 0 && rc != -EEXIST) { snprintf(err, errlen, "add architecture %s: %s", archs[i], strerror(-rc)); goto fail; }
	}
	/* runc: binary tree for longer rule sets (libseccomp <= 2.5.4 misbehaves with it and 0 rules) */
	if (nrules > 32) seccomp_attr_set(ctx, SCMP_FLTATR_CTL_OPTIMIZE, 2);
	for (unsigned int i = 0; i < nrules; i++) {
		const struct oci_sc_rule *r = &rules[i];
		if (r->action == default_action) continue; /* redundant: libseccomp refuses it (runc skips it) */
		int nr = seccomp_syscall_resolve_name(r->name);
		if (nr == __NR_SCMP_ERROR) continue;
		struct scmp_arg_cmp cmp[6];
		if (r->nargs > 6) { snprintf(err, errlen, "rule for %s: at most 6 argument conditions", r->name); goto fail; }
		for (unsigned int k = 0; k < r->nargs; k++) {
			cmp[k].arg = r->args[k].index;
			cmp[k].op = (enum scmp_compare)r->args[k].op;
			cmp[k].datum_a = r->args[k].value;
			cmp[k].datum_b = r->args[k].value2;
		}
		rc = seccomp_rule_add_array(ctx, r->action, nr, r->nargs, cmp);
		if (rc < 0) { snprintf(err, errlen, "add rule for %s: %s", r->name, strerror(-rc)); goto fail; }
	}
	if (!oci_seccomp_permissive(default_action) && default_action != SCMP_ACT_ERRNO(ENOSYS)) {
		if (oci_seccomp_stub(&stub, narchs, archs, nrules, rules) < 0) {
			snprintf(err, errlen, "generate the -ENOSYS stub: too many architectures");
			goto fail;
		}
		size_t len = stub.n * sizeof(stub.ins[0]);
		const char *p = (const char *)stub.ins;
		while (len) {
			ssize_t w = write(out_fd, p, len);
			if (w < 0 && errno == EINTR) continue;
			if (w <= 0) { snprintf(err, errlen, "write the -ENOSYS stub: %s", strerror(errno)); goto fail; }
			p += w;
			len -= (size_t)w;
		}
	}
	rc = seccomp_export_bpf(ctx, out_fd);
	if (rc < 0) { snprintf(err, errlen, "export seccomp BPF: %s", strerror(-rc)); goto fail; }
	seccomp_release(ctx);
	return 0;
fail:
	seccomp_release(ctx);
	return -1;
}

/* --- cgroup v2 device filter (BPF_PROG_TYPE_CGROUP_DEVICE); the program is built in Python ---
 *
 * oci_bpf_dev_prog_load: load ninsns 8-byte instructions; returns the program fd or -errno (the
 * verifier log, if any, in log). oci_bpf_dev_prog_attach: attach with BPF_F_ALLOW_MULTI to the
 * cgroup directory fd; with replace_old, the device programs attached before are detached after
 * the new one is in place (so the cgroup is never without a filter). Returns 0 or -errno.
 */
#include <linux/bpf.h>

#define OCI_BPF_ATTR_SIZE 256 /* larger than any bpf_attr variant; the tail stays zero */

static long oci_bpf(int cmd, void *attr)
{
	long rc;
	int tries = 0;
	do rc = syscall(__NR_bpf, cmd, attr, (unsigned int)sizeof(union bpf_attr));
	while (rc < 0 && (errno == EINTR || (errno == EAGAIN && cmd == BPF_PROG_LOAD)) && ++tries < 30);
	return rc;
}

int oci_bpf_dev_prog_load(const void *insns, int ninsns, char *log, int loglen)
{
	union { union bpf_attr a; char pad[OCI_BPF_ATTR_SIZE]; } u;
	static const char license[] = "Apache-2.0";
	memset(&u, 0, sizeof(u));
	u.a.prog_type = BPF_PROG_TYPE_CGROUP_DEVICE;
	u.a.insn_cnt = (uint32_t)ninsns;
	u.a.insns = (uint64_t)(uintptr_t)insns;
	u.a.license = (uint64_t)(uintptr_t)license;
	long fd = oci_bpf(BPF_PROG_LOAD, &u);
	if (fd < 0 && log && loglen > 0) {
		int e = errno;
		log[0] = 0;
		u.a.log_level = 1;
		u.a.log_size = (uint32_t)loglen;
		u.a.log_buf = (uint64_t)(uintptr_t)log;
		fd = oci_bpf(BPF_PROG_LOAD, &u);
		if (fd >= 0) return (int)fd;
		log[loglen - 1] = 0;
		return -e;
	}
	return fd < 0 ? -errno : (int)fd;
}

int oci_bpf_dev_prog_attach(int prog_fd, int cgroup_fd, int replace_old)
{
	union { union bpf_attr a; char pad[OCI_BPF_ATTR_SIZE]; } u;
	uint32_t ids[64];
	uint32_t nids = 0;
	if (replace_old) {
		memset(&u, 0, sizeof(u));
		u.a.query.target_fd = (uint32_t)cgroup_fd;
		u.a.query.attach_type = BPF_CGROUP_DEVICE;
		u.a.query.prog_ids = (uint64_t)(uintptr_t)ids;
		u.a.query.prog_cnt = 64;
		if (oci_bpf(BPF_PROG_QUERY, &u) < 0) return -errno;
		nids = u.a.query.prog_cnt;
		if (nids > 64) nids = 64;
	}
	memset(&u, 0, sizeof(u));
	u.a.target_fd = (uint32_t)cgroup_fd;
	u.a.attach_bpf_fd = (uint32_t)prog_fd;
	u.a.attach_type = BPF_CGROUP_DEVICE;
	u.a.attach_flags = BPF_F_ALLOW_MULTI;
	if (oci_bpf(BPF_PROG_ATTACH, &u) < 0) return -errno;
	for (uint32_t i = 0; i < nids; i++) {
		memset(&u, 0, sizeof(u));
		u.a.prog_id = ids[i];
		long old = oci_bpf(BPF_PROG_GET_FD_BY_ID, &u);
		if (old < 0) {
			if (errno == EPERM || errno == EACCES || errno == ENOENT) continue;
			return -errno;
		}
		memset(&u, 0, sizeof(u));
		u.a.target_fd = (uint32_t)cgroup_fd;
		u.a.attach_bpf_fd = (uint32_t)old;
		u.a.attach_type = BPF_CGROUP_DEVICE;
		long rc = oci_bpf(BPF_PROG_DETACH, &u);
		int e = errno;
		close((int)old);
		if (rc < 0 && e != ENOENT) return -e;
	}
	return 0;
}

/* oci_umount: delete's cleanup of the mounts a container without a mount namespace made below its
 * rootfs (they live in the runtime's own namespace). */
#include <sys/mount.h>
int oci_umount(const char *path, int flags)
{
	return umount2(path, flags) < 0 ? -errno : 0;
}

/* oci_idmap_tree: an idmapped bind mount whose source is inside the container's root (runc >= 1.2
 * does the same in its parent): the container init clones the source in its own mount namespace into
 * a detached tree and hands it over; the mapping's user namespace and the privilege over the source's
 * filesystem are ours, so we set MOUNT_ATTR_IDMAP on it (every mount of the tree when recursive). */
#include <sys/syscall.h>
#ifndef SYS_mount_setattr
#define SYS_mount_setattr 442
#endif
int oci_idmap_tree(int tree_fd, int userns_fd, int recursive)
{
	struct { uint64_t attr_set, attr_clr, propagation, userns_fd; } a = { 0x100000 /* MOUNT_ATTR_IDMAP */, 0, 0,
									       (uint64_t)userns_fd };
	unsigned flags = 0x1000 /* AT_EMPTY_PATH */ | (recursive ? 0x8000 /* AT_RECURSIVE */ : 0);
	return syscall(SYS_mount_setattr, tree_fd, "", flags, &a, sizeof(a)) < 0 ? -errno : 0;
}
