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
