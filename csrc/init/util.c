/* util.c - error reporting over the sync socket, sync messages, hooks run inside the container. */
#include "init.h"
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

int g_sync_fd = -1;
const char *g_stage = "init";

static void vreport(int with_errno, const char *fmt, va_list ap)
{
	int saved = errno;
	char msg[2048];
	int n = vsnprintf(msg, sizeof(msg), fmt, ap);
	if (n < 0) n = 0;
	if ((size_t)n >= sizeof(msg)) n = sizeof(msg) - 1;
	if (with_errno) {
		/* Go's (runc's) wording is lower case: "no such file or directory"; clients match on it */
		size_t at = (size_t)n + 2;
		snprintf(msg + n, sizeof(msg) - n, ": %s", strerror(saved));
		if (at < sizeof(msg) && msg[at] >= 'A' && msg[at] <= 'Z') msg[at] = (char)(msg[at] - 'A' + 'a');
	}
	if (g_sync_fd >= 0) {
		struct sync_hdr h = { SYNC_ERROR, with_errno ? saved : 0 };
		char buf[sizeof(h) + sizeof(msg) + 300];
		size_t len = strlen(msg);
		step_failed(with_errno ? saved : 0);
		trace_flush();
		memcpy(buf, &h, sizeof(h));
		memcpy(buf + sizeof(h), msg, len);
		len += step_context(buf + sizeof(h) + len, sizeof(buf) - sizeof(h) - len);
		if (send(g_sync_fd, buf, sizeof(h) + len, MSG_NOSIGNAL) >= 0)
			return;
	}
	dprintf(2, "ociruntime-init[%s]: %s\n", g_stage, msg);
}

/* A warning for the runtime's log (runc's logrus.Warnf in its init): sent on the sync socket while it
 * is open, else to stderr. Never fails the caller. */
void warn_runtime(const char *fmt, ...)
{
	int saved = errno;
	char msg[1024];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	if (g_sync_fd >= 0) {
		struct sync_hdr h = { SYNC_WARNING, 0 };
		char buf[sizeof(h) + sizeof(msg)];
		size_t len = strlen(msg);
		memcpy(buf, &h, sizeof(h));
		memcpy(buf + sizeof(h), msg, len);
		if (send(g_sync_fd, buf, sizeof(h) + len, MSG_NOSIGNAL) < 0)
			dprintf(2, "ociruntime-init[%s]: warning: %s\n", g_stage, msg);
	} else {
		dprintf(2, "ociruntime-init[%s]: warning: %s\n", g_stage, msg);
	}
	errno = saved;
}

void bail(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vreport(1, fmt, ap);
	va_end(ap);
	_exit(1);
}

void bailx(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vreport(0, fmt, ap);
	va_end(ap);
	_exit(1);
}

void sync_send(uint32_t type, int32_t value, const void *payload, size_t len)
{
	char buf[sizeof(struct sync_hdr) + 256];
	struct sync_hdr h = { type, value };
	if (g_trace) trace_flush();
	if (len > sizeof(buf) - sizeof(h)) bailx("sync message too long");
	memcpy(buf, &h, sizeof(h));
	if (len) memcpy(buf + sizeof(h), payload, len);
	if (send(g_sync_fd, buf, sizeof(h) + len, MSG_NOSIGNAL) < 0) {
		int fd = g_sync_fd;
		g_sync_fd = -1; /* report to stderr instead */
		(void)fd;
		bail("failed to send sync message 0x%x to the runtime", type);
	}
}

int32_t sync_expect(uint32_t type, char **out, size_t *outlen)
{
	size_t cap = sizeof(struct sync_hdr) + SYNC_MAX_PAYLOAD;
	char *buf = malloc(cap + 1);
	if (!buf) bail("malloc");
	ssize_t n;
	do n = recv(g_sync_fd, buf, cap, 0); while (n < 0 && errno == EINTR);
	if (n < 0) bail("failed to read sync message 0x%x", type);
	if (n == 0) { g_sync_fd = -1; errno = EPIPE; bailx("runtime went away while waiting for sync message 0x%x", type); }
	if ((size_t)n < sizeof(struct sync_hdr)) bailx("short sync message");
	struct sync_hdr h;
	memcpy(&h, buf, sizeof(h));
	if (h.type != type) bailx("unexpected sync message 0x%x (wanted 0x%x)", h.type, type);
	if (out) {
		size_t plen = n - sizeof(h);
		memmove(buf, buf + sizeof(h), plen);
		buf[plen] = 0;
		*out = buf;
		if (outlen) *outlen = plen;
	} else {
		free(buf);
	}
	return h.value;
}

/* One sendmsg with exactly one fd (SCM_RIGHTS) and a non-empty payload (cli-contract.md §8.3). */
int send_fd(int sock, int fd, const void *payload, size_t len)
{
	char cbuf[CMSG_SPACE(sizeof(int))];
	memset(cbuf, 0, sizeof(cbuf));
	struct iovec iov = { (void *)payload, len };
	struct msghdr msg;
	memset(&msg, 0, sizeof(msg));
	msg.msg_iov = &iov;
	msg.msg_iovlen = 1;
	msg.msg_control = cbuf;
	msg.msg_controllen = sizeof(cbuf);
	struct cmsghdr *c = CMSG_FIRSTHDR(&msg);
	c->cmsg_level = SOL_SOCKET;
	c->cmsg_type = SCM_RIGHTS;
	c->cmsg_len = CMSG_LEN(sizeof(int));
	memcpy(CMSG_DATA(c), &fd, sizeof(int));
	ssize_t n;
	do n = sendmsg(sock, &msg, MSG_NOSIGNAL); while (n < 0 && errno == EINTR);
	return n < 0 ? -1 : 0;
}

int write_all(int fd, const void *buf, size_t len)
{
	const char *p = buf;
	while (len) {
		ssize_t n = write(fd, p, len);
		if (n < 0) { if (errno == EINTR) continue; return -1; }
		p += n; len -= n;
	}
	return 0;
}

/* Runs the hooks of one kind inside the container (createContainer, startContainer): fork, state on
 * stdin, output captured for the error message, nothing but stdio inherited, waited for with the
 * hook's timeout (runtime-spec config.md#posix-platform-hooks). */
int run_hooks(struct plan *p, uint32_t kind, const char *state, size_t state_len)
{
	const char *name = kind == HOOK_CREATE_CONTAINER ? "createContainer" : "startContainer";
	int idx = -1; /* the hook's number among those of its kind, as runc's "hook #<n>" */
	for (uint32_t i = 0; i < p->nhooks; i++) {
		struct hook_op *h = &p->hooks[i];
		if ((h->kind & ~HOOK_F_PROCESS_ENV) != kind) continue;
		idx++;
		char **envp = (h->kind & HOOK_F_PROCESS_ENV) ? (char **)p->env.v : (char **)h->env.v;
		int in[2], out[2];
		if (pipe2(in, O_CLOEXEC) < 0 || pipe2(out, O_CLOEXEC) < 0) bail("%s hook: pipe", name);
		pid_t pid = fork();
		if (pid < 0) bail("%s hook: fork", name);
		if (pid == 0) {
			dup2(in[0], 0);
			dup2(out[1], 1);
			dup2(out[1], 2);
			/* the sync socket, the exec fifo and preserved fds are not the hook's business */
			if (syscall(SYS_close_range, 3, ~0U, 0) < 0)
				for (int fd = 3; fd < 65536; fd++) close(fd);
			sigset_t all;
			sigemptyset(&all);
			sigprocmask(SIG_SETMASK, &all, NULL);
			const char *argv0[] = { h->path, NULL };
			execve(h->path, h->args.n ? (char **)h->args.v : (char **)argv0, envp);
			char e[128];
			snprintf(e, sizeof(e), "%s", strerror(errno));
			if (e[0] >= 'A' && e[0] <= 'Z') e[0] = (char)(e[0] - 'A' + 'a');
			dprintf(2, "exec %s: %s", h->path, e);
			_exit(127);
		}
		close(in[0]);
		close(out[1]);
		signal(SIGPIPE, SIG_IGN);
		write_all(in[1], state, state_len);
		close(in[1]);
		int pidfd = syscall(SYS_pidfd_open, pid, 0);
		char msg[512];
		size_t mlen = 0;
		int timed_out = 0;
		struct timespec t0;
		clock_gettime(CLOCK_MONOTONIC, &t0);
		for (;;) {
			struct pollfd pf[2] = { { out[0], POLLIN, 0 }, { pidfd, POLLIN, 0 } };
			int wait_ms = -1;
			if (h->timeout > 0) {
				struct timespec t;
				clock_gettime(CLOCK_MONOTONIC, &t);
				long el = (t.tv_sec - t0.tv_sec) * 1000 + (t.tv_nsec - t0.tv_nsec) / 1000000;
				wait_ms = h->timeout * 1000 - (int)el;
				if (wait_ms <= 0) { timed_out = 1; break; }
			}
			int r = poll(pf, pidfd >= 0 ? 2 : 1, wait_ms);
			if (r < 0 && errno == EINTR) continue;
			if (r < 0) bail("%s hook: poll", name);
			if (r == 0) { timed_out = 1; break; }
			if (pf[0].revents) {
				char buf[256];
				ssize_t n = read(out[0], buf, sizeof(buf));
				if (n > 0) {
					/* keep the last bytes: the end of the output says what went wrong */
					/* buf is smaller than msg, so dropping from the front always makes room */
					if (mlen + n >= sizeof(msg)) { size_t drop = mlen + n - (sizeof(msg) - 1); memmove(msg, msg + drop, mlen - drop); mlen -= drop; }
					memcpy(msg + mlen, buf, n);
					mlen += n;
				} else if (n == 0) {
					break; /* EOF: the hook (and whatever it started) closed its output */
				}
			}
			if (pidfd >= 0 && pf[1].revents && !pf[0].revents) break;
		}
		close(out[0]);
		int status = 0;
		if (timed_out) {
			kill(pid, SIGKILL);
			waitpid(pid, &status, 0);
			bailx("error running %s hook #%d: hook ran past specified timeout of %d.0s", name, idx, h->timeout);
		}
		if (pidfd >= 0) close(pidfd);
		while (waitpid(pid, &status, 0) < 0)
			if (errno != EINTR) bail("%s hook: waitpid", name);
		while (mlen && (msg[mlen - 1] == '\n' || msg[mlen - 1] == ' ')) mlen--;
		msg[mlen] = 0;
		for (size_t k = 0; k < mlen; k++) if (msg[k] == '\n') msg[k] = ' ';
		/* runc's wording; the hook's stdout and stderr share one pipe here: its output is given as both */
		if (WIFSIGNALED(status))
			bailx("error running %s hook #%d: signal: %d, stdout: %s, stderr: %s", name, idx, WTERMSIG(status), msg, msg);
		if (WEXITSTATUS(status) == 127 && strncmp(msg, "exec ", 5) == 0)
			bailx("error running %s hook #%d: fork/%s", name, idx, msg);
		if (WEXITSTATUS(status) != 0)
			bailx("error running %s hook #%d: exit status %d, stdout: %s, stderr: %s", name, idx, WEXITSTATUS(status), msg, msg);
	}
	return 0;
}
