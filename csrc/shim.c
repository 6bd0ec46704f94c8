/* shim.c - parent-side helpers bound through cffi.
 *
 * oci_spawn: start the sealed ociruntime-init with exactly the fds it needs. The child of clone3
 * only moves fds and calls execveat (async-signal-safe syscalls; no Python runs in it). fds[i] lands
 * on base+i; fds 0..base-1 (stdio and --preserve-fds) are inherited with CLOEXEC cleared; every
 * other fd is close-on-exec (CVE-2024-21626: nothing the caller leaked reaches the init).
 * With cgroup_fd >= 0 the child is born in that cgroup v2 directory (CLONE_INTO_CGROUP).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <stdint.h>
#include <string.h>
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

struct oci_clone_args {
	uint64_t flags, pidfd, child_tid, parent_tid, exit_signal, stack, stack_size, tls, set_tid, set_tid_size, cgroup;
};

static void child(int exec_fd, char *const argv[], const int *fds, int nfds, int base, int errfd)
{
	int hi = base + nfds;
	for (int i = 0; i < nfds; i++) if (fds[i] >= hi) hi = fds[i] + 1;
	if (exec_fd >= hi) hi = exec_fd + 1;
	if (errfd >= hi) hi = errfd + 1;
	int tmp[64];
	int e;
	if (nfds > 64) { e = EINVAL; goto fail; }
	/* move everything out of the way first, so that no dup2 clobbers a source */
	errfd = fcntl(errfd, F_DUPFD_CLOEXEC, hi);
	exec_fd = fcntl(exec_fd, F_DUPFD_CLOEXEC, hi);
	if (errfd < 0 || exec_fd < 0) { e = errno; goto fail; }
	for (int i = 0; i < nfds; i++) {
		tmp[i] = fcntl(fds[i], F_DUPFD_CLOEXEC, hi);
		if (tmp[i] < 0) { e = errno; goto fail; }
	}
	for (int i = 0; i < nfds; i++)
		if (dup2(tmp[i], base + i) < 0) { e = errno; goto fail; }
	for (int fd = 0; fd < base; fd++) {
		int fl = fcntl(fd, F_GETFD);
		if (fl >= 0 && (fl & FD_CLOEXEC)) fcntl(fd, F_SETFD, fl & ~FD_CLOEXEC);
	}
	if (syscall(SYS_close_range, base + nfds, ~0U, OCI_CLOSE_RANGE_CLOEXEC) < 0) {
		for (int fd = base + nfds; fd < 4096; fd++)
			if (fd != errfd && fd != exec_fd) fcntl(fd, F_SETFD, FD_CLOEXEC);
	}
	sigset_t none;
	sigemptyset(&none);
	sigprocmask(SIG_SETMASK, &none, NULL);
	char *envp[] = { NULL };
	syscall(SYS_execveat, exec_fd, "", argv, envp, AT_EMPTY_PATH);
	e = errno;
fail:
	(void)!write(errfd, &e, sizeof(e));
	_exit(127);
}

int oci_spawn(int exec_fd, char *const argv[], const int *fds, int nfds, int base, int cgroup_fd, int *pidfd_out)
{
	int ep[2];
	if (pipe2(ep, O_CLOEXEC) < 0) return -errno;
	int pidfd = -1;
	struct oci_clone_args ca;
	memset(&ca, 0, sizeof(ca));
	ca.flags = CLONE_PIDFD | (cgroup_fd >= 0 ? OCI_CLONE_INTO_CGROUP : 0);
	ca.pidfd = (uint64_t)(uintptr_t)&pidfd;
	ca.exit_signal = SIGCHLD;
	ca.cgroup = cgroup_fd >= 0 ? (uint64_t)cgroup_fd : 0;
	pid_t pid = (pid_t)syscall(SYS_clone3, &ca, sizeof(ca));
	if (pid < 0 && (errno == ENOSYS || errno == E2BIG) && cgroup_fd < 0) {
		pid = fork();
		if (pid > 0) pidfd = (int)syscall(SYS_pidfd_open, pid, 0);
	}
	if (pid < 0) { int e = errno; close(ep[0]); close(ep[1]); return -e; }
	if (pid == 0) { close(ep[0]); child(exec_fd, argv, fds, nfds, base, ep[1]); }
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

int oci_set_child_subreaper(void)
{
	return prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) < 0 ? -errno : 0;
}

/* oci_seccomp_compile: the container's seccomp profile compiled to BPF in the parent with libseccomp
 * (as crun does); the init only loads the program (SECCOMP_SET_MODE_FILTER). Unknown syscall names
 * are skipped, as runc does (a profile may name syscalls this libseccomp or arch does not know). */
#include <seccomp.h>
#include <stdio.h>

int oci_seccomp_compile(int out_fd, unsigned int default_action, unsigned int narchs, const char *const *archs,
                        unsigned int nrules, const struct oci_sc_rule *rules, char *err, int errlen)
{
	scmp_filter_ctx ctx = seccomp_init(default_action);
	int rc;
	if (!ctx) { snprintf(err, errlen, "seccomp_init failed"); return -1; }
	/* we load the program ourselves: no NNP forced by libseccomp, no TSYNC attribute here */
	seccomp_attr_set(ctx, SCMP_FLTATR_CTL_NNP, 0);
	for (unsigned int i = 0; i < narchs; i++) {
		uint32_t a = seccomp_arch_resolve_name(archs[i]);
		if (!a) { snprintf(err, errlen, "unknown architecture %s", archs[i]); goto fail; }
		rc = seccomp_arch_add(ctx, a);
		if (rc < 0 && rc != -EEXIST) { snprintf(err, errlen, "add architecture %s: %s", archs[i], strerror(-rc)); goto fail; }
	}
	for (unsigned int i = 0; i < nrules; i++) {
		const struct oci_sc_rule *r = &rules[i];
		int nr = seccomp_syscall_resolve_name(r->name);
		if (nr == __NR_SCMP_ERROR) continue;
		if (r->action == default_action) continue; /* libseccomp refuses rules equal to the default */
		struct scmp_arg_cmp cmp[6];
		for (unsigned int k = 0; k < r->nargs && k < 6; k++) {
			cmp[k].arg = r->args[k].index;
			cmp[k].op = (enum scmp_compare)r->args[k].op;
			cmp[k].datum_a = r->args[k].value;
			cmp[k].datum_b = r->args[k].value2;
		}
		rc = seccomp_rule_add_array(ctx, r->action, nr, r->nargs, cmp);
		if (rc < 0) { snprintf(err, errlen, "add rule for %s: %s", r->name, strerror(-rc)); goto fail; }
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
