/* main.c - ociruntime-init: the only code that runs between clone and the user's execve.
 *
 * Started by ociruntime (Python) from a sealed memfd copy of this binary, so /proc/<pid>/exe never
 * points at a host binary (CVE-2019-5736). argv[1] is the fd of the plan (a memfd, see plan.h).
 *
 * stage-1 ("ociruntime:[1:SETUP]", child of the runtime, host namespaces): waits for GO (the runtime
 *   has put it into its cgroup), joins namespaces by path, unshares the user namespace alone and asks
 *   the runtime to write the id maps, unshares the other namespaces, hands the runtime a netlink
 *   socket there if it has network devices to move, then clone(CLONE_PARENT)s the init so that it
 *   lands in the new pid/time namespaces while staying the runtime's child.
 * stage-2 ("ociruntime:[2:INIT]", the container init): rootfs, hooks, pivot_root, masked paths,
 *   hostname, sysctls, rlimits, creds, caps, cwd, then READY; after RUN it drops the sync socket,
 *   blocks on the exec fifo until `start`, runs startContainer hooks and execve()s the process.
 */
#include "init.h"
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <net/if.h>
#ifndef NETLINK_ROUTE
#define NETLINK_ROUTE 0 /* musl has no <linux/netlink.h> */
#endif
#ifndef NS_GET_NSTYPE
#define NS_GET_NSTYPE _IO(0xb7, 0x3)
#endif
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#ifndef CLONE_NEWTIME
#define CLONE_NEWTIME 0x00000080
#endif
#ifndef SYS_close_range
#define SYS_close_range 436
#endif

static int g_userns; /* created or joined a user namespace: become its root */

static const char *ns_name(uint32_t flag)
{
	switch (flag) {
	case CLONE_NEWUSER: return "user";
	case CLONE_NEWNS: return "mount";
	case CLONE_NEWPID: return "pid";
	case CLONE_NEWNET: return "network";
	case CLONE_NEWIPC: return "ipc";
	case CLONE_NEWUTS: return "uts";
	case CLONE_NEWCGROUP: return "cgroup";
	case CLONE_NEWTIME: return "time";
	}
	return "?";
}

static void write_proc_self(const char *file, const char *val)
{
	char path[64];
	snprintf(path, sizeof(path), "/proc/self/%s", file);
	int fd = open(path, O_WRONLY | O_CLOEXEC);
	if (fd < 0) bail("open %s", path);
	if (write_all(fd, val, strlen(val)) < 0) bail("write %s (%s)", path, val);
	close(fd);
}

/* exec: the container's init, taken once by the runtime as a pidfd (start time checked), is the only
 * source of its namespaces: one setns(pidfd, flags) joins them all or fails (ESRCH once the init is
 * gone). Never fails open into the runtime's own namespaces. 0: joined; -1: this kernel cannot setns
 * through a pidfd (before 5.8): join through the path fds opened (and proven the init's) before. */
static int join_through_pidfd(struct plan *p)
{
	uint32_t flags = 0;
	for (uint32_t i = 0; i < p->njoins; i++) flags |= p->joins[i].flag;
	if (!flags) return 0;
	char names[128] = "";
	for (uint32_t i = 0; i < p->njoins; i++) {
		const char *slash = strrchr(p->joins[i].path, '/');
		size_t l = strlen(names);
		snprintf(names + l, sizeof(names) - l, "%s%s", l ? " " : "", slash ? slash + 1 : p->joins[i].path);
	}
	step("setns pidfd", -1, names); /* one setns(2) joins them all */
	if (setns(p->target_pidfd, (int)flags) == 0) {
		if (flags & CLONE_NEWUSER) g_userns = 1;
		return 0;
	}
	if (errno == ESRCH)
		bailx("the container's init exited: refusing to run the process outside the container's namespaces");
	if (errno == EINVAL || errno == EBADF) return -1;
	bail("join the namespaces 0x%x of the container's init", flags);
}

static void target_alive_or_bail(struct plan *p)
{
	struct pollfd pf = { p->target_pidfd, POLLIN, 0 };
	if (poll(&pf, 1, 0) != 0)
		bailx("the container's init exited: refusing to run the process outside the container's namespaces");
}

/* No mount namespace (exec into such a container): the process gets the init's root (an fd the runtime
 * opened from /proc/<init>/root while the pidfd showed the init alive), as the init itself is chrooted.
 * Before the joins: chroot needs CAP_SYS_CHROOT over the runtime's mount namespace, which joining the
 * container's user namespace would take away (setns into a user namespace works from a chroot). */
static void enter_target_root(struct plan *p)
{
	if (p->target_rootfd < 0) return;
	if (fchdir(p->target_rootfd) < 0 || chroot(".") < 0 || chdir("/") < 0)
		bail("confine the process to the container's root (the container has no mount namespace)");
	close(p->target_rootfd);
	p->target_rootfd = -1;
}

/* Join the namespaces given by path. All paths are opened (and their type verified with
 * NS_GET_NSTYPE) before the first setns, since joining a mount namespace changes what paths mean.
 * exec (a target pidfd): the opened files count only if the init is still alive after they were
 * opened (a missing one is already an error: bail); the joins then go through the pidfd where the
 * kernel can, else through these files. */
static void join_namespaces(struct plan *p)
{
	for (uint32_t i = 0; i < p->njoins; i++) {
		struct ns_join *j = &p->joins[i];
		j->fd = open(j->path, O_RDONLY | O_CLOEXEC);
		if (j->fd < 0) bail("open %s namespace %s", ns_name(j->flag), j->path);
		int t = ioctl(j->fd, NS_GET_NSTYPE);
		if (t < 0) bail("%s is not a namespace file", j->path);
		if ((uint32_t)t != j->flag)
			bailx("%s is a %s namespace, not a %s namespace", j->path, ns_name(t), ns_name(j->flag));
	}
	if (p->target_pidfd >= 0) {
		target_alive_or_bail(p);
		enter_target_root(p);
		int r = join_through_pidfd(p);
		target_alive_or_bail(p);
		close(p->target_pidfd);
		p->target_pidfd = -1;
		if (r == 0) {
			for (uint32_t i = 0; i < p->njoins; i++) {
				close(p->joins[i].fd);
				p->joins[i].fd = -1;
			}
			return;
		}
	}
	/* runc >= 1.3: each namespace is tried before the user namespace is joined (with the runtime's
	 * privileges: a namespace not owned by the container's user namespace, such as the host's network
	 * namespace), then the user namespace, then once more those that were refused before it (a
	 * namespace only the container's user namespace may enter) */
	for (int pass = 0; pass < 3; pass++)
		for (uint32_t i = 0; i < p->njoins; i++) {
			struct ns_join *j = &p->joins[i];
			if (j->fd < 0 || (pass == 1) != (j->flag == CLONE_NEWUSER)) continue;
			step("setns", (int)i, j->path);
			if (setns(j->fd, j->flag) < 0) {
				if (pass == 0 && errno == EPERM) continue; /* again once in the user namespace */
				bail("setns %s namespace %s", ns_name(j->flag), j->path);
			}
			if (j->flag == CLONE_NEWUSER) g_userns = 1;
			close(j->fd);
			j->fd = -1;
		}
}

/* A new network namespace starts with lo down; runc brings it up (its "loopback" strategy). */
static void loopback_up(void)
{
	int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	if (fd < 0) bail("socket for lo");
	struct ifreq ifr;
	memset(&ifr, 0, sizeof(ifr));
	strcpy(ifr.ifr_name, "lo");
	if (ioctl(fd, SIOCGIFFLAGS, &ifr) < 0) bail("get flags of lo");
	ifr.ifr_flags |= IFF_UP | IFF_RUNNING;
	if (ioctl(fd, SIOCSIFFLAGS, &ifr) < 0) bail("bring lo up");
	close(fd);
}

/* linux.netDevices: the runtime moves the devices from its own namespace (one RTM_NEWLINK with
 * IFLA_NET_NS_FD and IFLA_IFNAME) and then sets their addresses and brings them up through this
 * NETLINK_ROUTE socket, opened here after joining or creating the container's network namespace:
 * a netlink socket stays bound to the namespace it was created in, so the runtime (Python) never
 * has to enter it. SOCK_DGRAM: what pyroute2's asyncio transport accepts. */
static void send_netlink_socket(void)
{
	int fd = socket(AF_NETLINK, SOCK_DGRAM | SOCK_CLOEXEC, NETLINK_ROUTE);
	if (fd < 0) bail("open a netlink socket in the container's network namespace");
	struct sync_hdr h = { SYNC_NETDEV_FD, 0 };
	if (send_fd(g_sync_fd, fd, &h, sizeof(h)) < 0) bail("send the netlink socket to the runtime");
	close(fd);
	sync_expect(SYNC_NETDEV_ACK, NULL, NULL);
}

static pid_t clone_parent(void)
{
	/* fork semantics (no new stack), but the child is a sibling of this process: a child of the runtime */
	return (pid_t)syscall(SYS_clone, CLONE_PARENT | SIGCHLD, 0, 0, 0, 0);
}

/* The waiting init of a created container is the init of its pid namespace: without a handler the
 * kernel drops SIGTERM/SIGINT/SIGHUP/SIGQUIT sent from outside, so `kill ID TERM` would do nothing.
 * runc's waiting init is a Go program, whose runtime catches them and exits; do the same. */
static void die_on_signal(int sig)
{
	signal(sig, SIG_DFL);
	raise(sig); /* a pid namespace's init ignores its own default-action signal: then exit */
	_exit(2);
}

static void wait_exec_fifo(struct plan *p)
{
	g_step_name = "exec fifo wait"; /* for an error report only: the socket is closed, no trace */
	static const int terminating[] = { SIGHUP, SIGINT, SIGQUIT, SIGTERM };
	struct sigaction sa;
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = die_on_signal;
	for (size_t i = 0; i < sizeof(terminating) / sizeof(terminating[0]); i++)
		sigaction(terminating[i], &sa, NULL);
	struct pollfd pf = { p->fifo_fd, POLLIN, 0 };
	for (;;) {
		int r = poll(&pf, 1, -1);
		if (r < 0 && errno == EINTR) continue;
		if (r < 0) bail("poll exec fifo");
		char c;
		ssize_t n = read(p->fifo_fd, &c, 1);
		if (n == 1) break;
		if (n < 0 && (errno == EAGAIN || errno == EINTR)) continue;
		if (n == 0) { /* a writer came and went without a byte: keep waiting */
			struct timespec ts = { 0, 1000000 };
			nanosleep(&ts, NULL);
			continue;
		}
		bail("read exec fifo");
	}
	close(p->fifo_fd);
}

static void reset_signals(void)
{
	struct sigaction sa;
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = SIG_DFL;
	for (int s = 1; s < _NSIG; s++)
		sigaction(s, &sa, NULL);
	sigset_t none;
	sigemptyset(&none);
	sigprocmask(SIG_SETMASK, &none, NULL);
}

/* The last steps before execve, shared by the container init and exec'd processes. */
static void finish_and_exec(struct plan *p, const char *path)
{
	g_step_name = "execve";
	reset_signals();
	/* CVE-2024-21626: nothing but stdio and the preserved fds crosses execve. CLOEXEC rather than
	 * close, so that a failing execve can still be reported on the sync socket (exec). */
	if (syscall(SYS_close_range, p->close_from, ~0U, 4 /* CLOSE_RANGE_CLOEXEC */) < 0) {
		for (int fd = p->close_from; fd < 65536; fd++)
			if (fd != g_sync_fd) close(fd);
		if (g_sync_fd >= 0) fcntl(g_sync_fd, F_SETFD, FD_CLOEXEC);
	}
	execve(path, (char **)p->args.v, (char **)p->env.v);
	bail("exec %s", path);
}

static const char *process_setup(struct plan *p, char *exe, size_t exelen)
{
	step("lsm labels", -1, NULL);
	/* runc's place for the exec label: after READY, while still privileged, before seccomp and the
	 * credential change (the attr files take effect at execve, so nothing between changes meaning) */
	apply_lsm_labels(p);
	step("no_new_privs", -1, NULL);
	if ((p->proc_flags & PROC_NNP) && prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0) bail("prctl(PR_SET_NO_NEW_PRIVS)");
	apply_rlimits(p);
	/* runc's order: scheduler, I/O priority, personality, memory policy; all before the caps are
	 * dropped (real-time policies need CAP_SYS_NICE, IOPRIO_CLASS_RT CAP_SYS_ADMIN/NICE) and before
	 * any seccomp filter is loaded */
	step("scheduler and io priority", -1, NULL);
	apply_sched_and_io(p);
	step("personality", -1, NULL);
	apply_personality(p);
	step("memory policy", -1, NULL);
	apply_mempolicy(p);
	/* runc's ordering rule: without NNP the filter needs CAP_SYS_ADMIN, so load it before dropping caps */
	if (!(p->proc_flags & PROC_NNP)) { step("seccomp", -1, NULL); load_seccomp(p); }
	step("cwd", -1, p->cwd);
	int cwd_done = enter_cwd(p, 0);
	step("environment", -1, NULL);
	prepare_env(p);
	apply_user_and_caps(p);
	if (!cwd_done) { step("cwd", -1, p->cwd); enter_cwd(p, 1); }
	if (p->cwd && *p->cwd) {
		/* CVE-2024-21626: a cwd outside the container's root reads back as ENOENT/"(unreachable)" */
		char buf[PATH_MAX];
		char *wd = getcwd(buf, sizeof(buf));
		/* as runc verifyCwd: ENOENT or a relative "(unreachable)" path means outside the root; any other
		 * failure (e.g. getcwd denied by the container's own seccomp profile) proves nothing */
		if ((!wd && errno == ENOENT) || (wd && wd[0] != '/'))
			bailx("current working directory is outside of container mount namespace root -- possible container breakout detected");
	}
	step("lookup executable", -1, p->args.n ? p->args.v[0] : NULL);
	const char *path = lookup_exec(p, exe, exelen);
	if (p->proc_flags & PROC_NNP) { step("seccomp", -1, NULL); load_seccomp(p); } /* as late as possible */
	step_end();
	return path;
}

static void stage2_exec(struct plan *p)
{
	g_stage = "exec";
	prctl(PR_SET_NAME, "ociruntime:[2:EXEC]", 0, 0, 0);
	if (g_userns) {
		if (setresgid(0, 0, 0) < 0) bail("setresgid(0) in the user namespace");
		if (setresuid(0, 0, 0) < 0) bail("setresuid(0) in the user namespace");
	}
	/* every exec'd process leads a new session, with or without a terminal (as runc): otherwise it shares
	 * the caller's controlling terminal (TIOCSTI keystroke injection through /dev/tty) and process
	 * group (kill(0, ...) reaches the operator's shell) */
	if (setsid() < 0) bail("setsid");
	if (p->has_console) setup_console(p, 0);
	sync_send(SYNC_READY, 0, NULL, 0);
	static char exe[PATH_MAX];
	const char *path = process_setup(p, exe, sizeof(exe));
	trace_flush(); /* exec: the socket stays open until execve closes it */
	finish_and_exec(p, path);
}

static void stage2(struct plan *p)
{
	if (p->proc_flags & PROC_EXEC) stage2_exec(p);
	g_stage = "init";
	step("setsid", -1, NULL);
	prctl(PR_SET_NAME, "ociruntime:[2:INIT]", 0, 0, 0);
	if (setsid() < 0) bail("setsid");
	if (p->new_ns & CLONE_NEWUSER || g_userns) {
		if (setresgid(0, 0, 0) < 0) bail("setresgid(0) in the user namespace");
		if (setresuid(0, 0, 0) < 0) bail("setresuid(0) in the user namespace");
	}

	setup_rootfs(p);

	step("wait: prestart/createRuntime hooks", -1, NULL);
	sync_send(SYNC_HOOKS_PLS, 0, NULL, 0);
	char *state = NULL;
	size_t state_len = 0;
	sync_expect(SYNC_HOOKS_ACK, &state, &state_len);
	step("createContainer hooks", -1, NULL);
	run_hooks(p, HOOK_CREATE_CONTAINER, state, state_len);
	free(state);

	step("pivot_root", -1, p->rootfs);
	finish_rootfs(p);
	step("console", -1, NULL);
	setup_console(p, 1);
	step("hostname", -1, p->hostname);
	if (p->hostname && sethostname(p->hostname, strlen(p->hostname)) < 0) bail("sethostname %s", p->hostname);
	if (p->domainname && setdomainname(p->domainname, strlen(p->domainname)) < 0) bail("setdomainname %s", p->domainname);
	step("sysctls", -1, NULL);
	write_sysctls(p);
	masked_and_readonly(p);
	step("wait: state saved (READY/RUN)", -1, NULL);
	/* READY/RUN before the process setup, as runc's procReady/procRun: the seccomp filter is loaded
	 * in process_setup and may deny the socket calls; errors after RUN still reach the runtime, which
	 * reads until we close the socket */
	sync_send(SYNC_READY, 0, NULL, 0);
	sync_expect(SYNC_RUN, &state, &state_len);
	static char exe[PATH_MAX];
	const char *path = process_setup(p, exe, sizeof(exe));
	step_open("exec fifo wait");
	trace_flush();
	close(g_sync_fd);
	g_sync_fd = -1;

	wait_exec_fifo(p);
	run_hooks(p, HOOK_START_CONTAINER, state, state_len);
	free(state);
	finish_and_exec(p, path);
}

static void stage1(struct plan *p)
{
	g_stage = "setup";
	step("wait: cgroup placement (GO)", -1, NULL);
	prctl(PR_SET_NAME, "ociruntime:[1:SETUP]", 0, 0, 0);
	sync_expect(SYNC_GO, NULL, NULL);
	step("cpu affinity", -1, NULL);
	/* in the container's cgroup now: the final CPU affinity (or a reset), as runc does right after
	 * the join; the container init and exec'd processes inherit it */
	apply_cpu_affinity(p);
	if (p->has_oom) {
		step("oom_score_adj", -1, NULL);
		char v[16];
		snprintf(v, sizeof(v), "%d", p->oom);
		write_proc_self("oom_score_adj", v);
	}
	/* Not dumpable while we hold host fds and join namespaces (CVE-2016-9962). */
	if (prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) < 0) bail("prctl(PR_SET_DUMPABLE)");
	/* idmapped mounts need the runtime's privileges over the source's filesystem: before any join */
	step("idmapped mounts", -1, NULL);
	prepare_idmapped_mounts(p);
	step("device nodes", -1, NULL);
	prepare_device_nodes(p);
	step("open namespaces", -1, NULL);
	join_namespaces(p);
	if (p->new_ns & CLONE_NEWUSER) {
		/* The user namespace alone first: the runtime (still privileged in the parent user namespace)
		 * writes our maps; only then do the other namespaces get created, owned by the new userns. */
		step("unshare user", -1, NULL);
		if (unshare(CLONE_NEWUSER) < 0) bail("unshare user namespace");
		if (prctl(PR_SET_DUMPABLE, 1, 0, 0, 0) < 0) bail("prctl(PR_SET_DUMPABLE)");
		step("wait: uid/gid maps", -1, NULL);
		sync_send(SYNC_USERMAP_PLS, 0, NULL, 0);
		sync_expect(SYNC_USERMAP_ACK, NULL, NULL);
		step("setresuid 0", -1, NULL);
		if (prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) < 0) bail("prctl(PR_SET_DUMPABLE)");
		/* the uid only, as runc's nsexec: the namespaces below are made with our gid as it maps in
		 * the new namespace (the new ipc namespace's mqueue root takes it, e.g. the user's group under
		 * podman --userns=keep-id); the init becomes gid 0 itself */
		if (setresuid(0, 0, 0) < 0) bail("setresuid(0) in the new user namespace");
		g_userns = 1;
	}
	uint32_t rest = p->new_ns & ~(uint32_t)CLONE_NEWUSER;
	step("unshare", -1, NULL);
	if (rest && unshare(rest) < 0) bail("unshare namespaces 0x%x", rest);
	if (rest & CLONE_NEWNET) { step("loopback up", -1, NULL); loopback_up(); }
	if (p->netdevs) { step("network devices", -1, NULL); send_netlink_socket(); }
	if (p->has_timens) {
		step("time offsets", -1, NULL);
		char v[128];
		snprintf(v, sizeof(v), "monotonic %lld %lld\nboottime %lld %lld\n",
			 (long long)p->timens[0], (long long)p->timens[1], (long long)p->timens[2], (long long)p->timens[3]);
		if (g_userns) {
			/* in a user namespace our (non-dumpable) /proc/self belongs to the host's root: the
			 * privileged runtime writes the offsets, as runc >= 1.2 does */
			sync_send(SYNC_TIMENS_PLS, 0, v, strlen(v));
			sync_expect(SYNC_TIMENS_ACK, NULL, NULL);
		} else {
			write_proc_self("timens_offsets", v);
		}
	}
	/* the init waits until its pid has been reported, so that the runtime always learns the pid
	 * before any message of the init's own */
	int go[2];
	step("clone init", -1, NULL);
	if (pipe2(go, O_CLOEXEC) < 0) bail("pipe");
	pid_t pid = clone_parent();
	if (pid < 0) bail("clone container init");
	if (pid == 0) {
		close(go[1]);
		char c;
		ssize_t n;
		do n = read(go[0], &c, 1); while (n < 0 && errno == EINTR);
		if (n != 1) _exit(1); /* stage-1 died before reporting us */
		close(go[0]);
		trace_forget(); /* the steps of stage-1 are its own */
		stage2(p);
		_exit(1);
	}
	close(go[0]);
	step_end();
	sync_send(SYNC_PID, pid, NULL, 0);
	if (write(go[1], "1", 1) != 1) bail("release the container init");
	_exit(0);
}

int main(int argc, char **argv)
{
	if (argc >= 3 && strcmp(argv[1], "--check-plan") == 0) {
		/* test hook: decode a plan file and report; never executes anything */
		int fd = open(argv[2], O_RDONLY | O_CLOEXEC);
		if (fd < 0) { perror(argv[2]); return 2; }
		struct stat st;
		fstat(fd, &st);
		uint8_t *buf = malloc(st.st_size + 1);
		if (!buf || read(fd, buf, st.st_size) != st.st_size) { perror("read"); return 2; }
		struct plan p;
		char err[256];
		if (plan_decode(buf, st.st_size, &p, err, sizeof(err)) < 0) { printf("error: %s\n", err); return 1; }
		uint32_t nidmap = 0;
		for (uint32_t i = 0; i < p.nmounts; i++) nidmap += p.mounts[i].idmap_fd >= 0;
		printf("ok mounts=%u devices=%u masked=%u readonly=%u args=%u env=%u hooks=%u joins=%u ns=0x%x idmapped=%u\n",
		       p.nmounts, p.ndevices, p.nmasked, p.nreadonly, p.args.n, p.env.n, p.nhooks, p.njoins, p.new_ns, nidmap);
		for (uint32_t i = 0; i < p.nlsms; i++)
			printf("lsm %u flags=%u %s/%s value=%s\n", p.lsms[i].lsm, p.lsms[i].flags, p.lsms[i].procroot,
			       p.lsms[i].subpath, p.lsms[i].value);
		if (p.mount_label) printf("mount_label %s\n", p.mount_label);
		return 0;
	}
	if (argc == 4 && strcmp(argv[1], "--netns-socket") == 0) {
		/* helper for the runtime (ociruntime/netdev.py rollback): a NETLINK_ROUTE socket in the network
		 * namespace of fd argv[2], made with the runtime's own credentials (the one stage-1 made carries
		 * those of a container's user namespace), sent on the unix socket argv[3]. Silent: the runtime
		 * sees a failure as no fd. */
		int ns = atoi(argv[2]), out = atoi(argv[3]);
		if (setns(ns, CLONE_NEWNET) < 0) return 1;
		int fd = socket(AF_NETLINK, SOCK_DGRAM | SOCK_CLOEXEC, NETLINK_ROUTE);
		if (fd < 0 || send_fd(out, fd, "n", 1) < 0) return 1;
		return 0;
	}
	if (argc < 3) {
		dprintf(2, "ociruntime-init: this program is started by ociruntime, not by hand\n");
		return 2;
	}
	int planfd = atoi(argv[1]);
	g_sync_fd = atoi(argv[2]);
	struct stat st;
	if (fstat(planfd, &st) < 0 || st.st_size <= 0 || (uint64_t)st.st_size > PLAN_MAX_SIZE) {
		dprintf(2, "ociruntime-init: bad plan fd\n");
		return 2;
	}
	void *buf = mmap(NULL, st.st_size, PROT_READ, MAP_PRIVATE, planfd, 0);
	if (buf == MAP_FAILED) { dprintf(2, "ociruntime-init: mmap plan: %s\n", strerror(errno)); return 2; }
	close(planfd);
	struct plan p;
	char err[256];
	if (plan_decode(buf, st.st_size, &p, err, sizeof(err)) < 0) {
		bailx("%s", err);
	}
	g_sync_fd = p.sync_fd;
	g_trace = p.trace;
	stage1(&p);
	return 1;
}
