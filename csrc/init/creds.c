/* creds.c - rlimits, user and groups, capabilities, executable lookup. */
#include "init.h"
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/syscall.h>
#include <unistd.h>

/* kernel ABI (linux/capability.h), spelled out so that any libc's headers do */
#define OCI_CAP_V3 0x20080522
struct oci_cap_hdr { uint32_t version; int pid; };
struct oci_cap_data { uint32_t effective, permitted, inheritable; };
#ifndef PR_CAP_AMBIENT
#define PR_CAP_AMBIENT 47
#define PR_CAP_AMBIENT_RAISE 2
#define PR_CAP_AMBIENT_CLEAR_ALL 4
#endif

static const char *rlimit_name(uint32_t r)
{
	static const char *names[] = { "CPU", "FSIZE", "DATA", "STACK", "CORE", "RSS", "NPROC", "NOFILE", "MEMLOCK",
				       "AS", "LOCKS", "SIGPENDING", "MSGQUEUE", "NICE", "RTPRIO", "RTTIME" };
	return r < sizeof(names) / sizeof(names[0]) ? names[r] : "?";
}

void apply_rlimits(struct plan *p)
{
	for (uint32_t i = 0; i < p->nrlimits; i++) {
		step("rlimit", (int)i, rlimit_name(p->rlimits[i].resource));
		struct rlimit rl = { (rlim_t)p->rlimits[i].soft, (rlim_t)p->rlimits[i].hard };
		/* runc's wording, plus the name and values */
		if (setrlimit((int)p->rlimits[i].resource, &rl) < 0)
			bail("error setting rlimit type %u (RLIMIT_%s soft %llu hard %llu)", p->rlimits[i].resource,
			     rlimit_name(p->rlimits[i].resource), (unsigned long long)p->rlimits[i].soft,
			     (unsigned long long)p->rlimits[i].hard);
	}
}

static const char *cap_name(int cap)
{
	static const char *names[] = {
		"CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_DAC_READ_SEARCH", "CAP_FOWNER", "CAP_FSETID", "CAP_KILL",
		"CAP_SETGID", "CAP_SETUID", "CAP_SETPCAP", "CAP_LINUX_IMMUTABLE", "CAP_NET_BIND_SERVICE",
		"CAP_NET_BROADCAST", "CAP_NET_ADMIN", "CAP_NET_RAW", "CAP_IPC_LOCK", "CAP_IPC_OWNER", "CAP_SYS_MODULE",
		"CAP_SYS_RAWIO", "CAP_SYS_CHROOT", "CAP_SYS_PTRACE", "CAP_SYS_PACCT", "CAP_SYS_ADMIN", "CAP_SYS_BOOT",
		"CAP_SYS_NICE", "CAP_SYS_RESOURCE", "CAP_SYS_TIME", "CAP_SYS_TTY_CONFIG", "CAP_MKNOD", "CAP_LEASE",
		"CAP_AUDIT_WRITE", "CAP_AUDIT_CONTROL", "CAP_SETFCAP", "CAP_MAC_OVERRIDE", "CAP_MAC_ADMIN",
		"CAP_SYSLOG", "CAP_WAKE_ALARM", "CAP_BLOCK_SUSPEND", "CAP_AUDIT_READ", "CAP_PERFMON", "CAP_BPF",
		"CAP_CHECKPOINT_RESTORE",
	};
	return cap >= 0 && cap < (int)(sizeof(names) / sizeof(names[0])) ? names[cap] : "unknown capability";
}

/* Go's lower-case errno text ("operation not permitted") */
static const char *errno_text(int e)
{
	static char buf[128];
	snprintf(buf, sizeof(buf), "%s", strerror(e));
	if (buf[0] >= 'A' && buf[0] <= 'Z') buf[0] = (char)(buf[0] - 'A' + 'a');
	return buf;
}

static void drop_bounding(uint64_t keep)
{
	for (int cap = 0; cap < 64; cap++) {
		if (keep & (1ULL << cap)) continue;
		if (prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) < 0) {
			if (errno == EINVAL) break; /* past the kernel's last cap */
			bail("drop capability %d from the bounding set", cap);
		}
	}
}

static void set_caps(uint64_t eff, uint64_t perm, uint64_t inh)
{
	struct oci_cap_hdr h = { OCI_CAP_V3, 0 };
	struct oci_cap_data d[2] = {
		{ (uint32_t)eff, (uint32_t)perm, (uint32_t)inh },
		{ (uint32_t)(eff >> 32), (uint32_t)(perm >> 32), (uint32_t)(inh >> 32) },
	};
	if (syscall(SYS_capset, &h, d) < 0) bail("capset");
}

/* runc setupUser: no setgroups in a user namespace whose /proc/self/setgroups is "deny" (an
 * unprivileged user's single-id map: rootless podman without sub-ids, or the runtime's own); read
 * here, after every namespace was entered, so that the runtime's own user namespace counts too */
static int setgroups_denied(void)
{
	char buf[8] = { 0 };
	int fd = open("/proc/self/setgroups", O_RDONLY | O_CLOEXEC);
	if (fd < 0) return 0;
	ssize_t n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	return n >= 4 && strncmp(buf, "deny", 4) == 0;
}

/* runc fixStdioPermissions: stdin/stdout/stderr are handed to the process user before the switch, so a
 * non-root process can reopen its own stdio (/dev/stdout on a pipe, as containerd, podman and Docker
 * run every container). Only the uid changes (runc). Never a null device (1:3), whichever /dev/null it
 * is: chowning the host's would hand it to the container's user. EINVAL/EPERM (an owner or id that is
 * not mapped in the user namespace) leave it as it is, as runc. */
static void hand_stdio_to_user(struct plan *p)
{
	for (int fd = 0; fd <= 2; fd++) {
		struct stat st;
		if (fstat(fd, &st) < 0) continue;
		if (st.st_uid == p->uid) continue;
		if (S_ISCHR(st.st_mode) && major(st.st_rdev) == 1 && minor(st.st_rdev) == 3) continue;
		if (fchown(fd, p->uid, (gid_t)-1) < 0 && errno != EINVAL && errno != EPERM)
			bail("hand stdio fd %d to uid %u", fd, p->uid);
	}
}

void apply_user_and_caps(struct plan *p)
{
	step("bounding set", -1, NULL);
	if (p->has_caps) drop_bounding(p->caps[0]);
	step("credentials", -1, NULL);
	if (p->has_user) {
		if (prctl(PR_SET_KEEPCAPS, 1, 0, 0, 0) < 0) bail("prctl(PR_SET_KEEPCAPS)");
		hand_stdio_to_user(p);
		if ((p->user_flags & USER_SETGROUPS) && !setgroups_denied()) {
			if (setgroups(p->ngroups, (gid_t *)p->groups) < 0) bail("setgroups");
		}
		if (setresgid(p->gid, p->gid, p->gid) < 0) bail("setresgid %u", p->gid);
		if (setresuid(p->uid, p->uid, p->uid) < 0) bail("setresuid %u", p->uid);
		if (prctl(PR_SET_KEEPCAPS, 0, 0, 0, 0) < 0) bail("prctl(PR_SET_KEEPCAPS)");
	}
	step("capabilities", -1, NULL);
	if (p->has_caps) {
		set_caps(p->caps[1], p->caps[2], p->caps[3]);
		prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0);
		/* as runc >= 1.3: an ambient cap that cannot be raised (not also permitted+inheritable) is a
		 * warning, not an error */
		for (int cap = 0; cap < 64; cap++)
			if ((p->caps[4] & (1ULL << cap)) && prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_RAISE, cap, 0, 0) < 0)
				warn_runtime("can't raise ambient capability %s: %s", cap_name(cap), errno_text(errno));
	}
	umask(p->umask == UMASK_UNSET ? 022 : (mode_t)p->umask);
}

static void user_home(struct plan *p, char *home, size_t len)
{
	snprintf(home, len, "HOME=/");
	FILE *f = fopen("/etc/passwd", "re");
	if (!f) return;
	char line[4096];
	while (fgets(line, sizeof(line), f)) {
		/* name:pass:uid:gid:gecos:home:shell */
		char *fields[7] = { 0 };
		char *s = line;
		int n = 0;
		while (n < 7) {
			fields[n++] = s;
			char *c = strchr(s, ':');
			if (!c) break;
			*c = 0;
			s = c + 1;
		}
		if (n < 6) continue;
		char *end;
		unsigned long uid = strtoul(fields[2], &end, 10);
		if (*fields[2] == 0 || *end || uid != (p->has_user ? p->uid : 0)) continue;
		fields[5][strcspn(fields[5], "\n")] = 0;
		snprintf(home, len, "HOME=%s", fields[5]);
		break;
	}
	fclose(f);
}

/* runc prepareEnv (>= 1.2): a variable given twice keeps its last value (at the place of that last
 * occurrence), an empty HOME is dropped, and without a non-empty HOME the user's home from the
 * container's /etc/passwd is appended ("/" when the uid has no entry). Called inside the container,
 * before the user switch (runc: in finalizeNamespace, after the first chdir). */
void prepare_env(struct plan *p)
{
	const char **env = calloc(p->env.n + 2, sizeof(char *));
	if (!env) bail("malloc");
	uint32_t n = 0;
	int home_set = 0;
	for (uint32_t i = 0; i < p->env.n; i++) {
		const char *kv = p->env.v[i];
		const char *eq = strchr(kv, '=');
		size_t klen = eq ? (size_t)(eq - kv) : strlen(kv);
		int later = 0;
		for (uint32_t j = i + 1; j < p->env.n && !later; j++)
			later = strncmp(p->env.v[j], kv, klen) == 0 &&
				(p->env.v[j][klen] == '=' || (!eq && p->env.v[j][klen] == 0));
		if (later) continue;
		if (klen == 4 && strncmp(kv, "HOME", 4) == 0) {
			if (!eq || !eq[1]) continue; /* empty: replaced below */
			home_set = 1;
		}
		env[n++] = kv;
	}
	if (!home_set) {
		static char home[4096 + 5];
		user_home(p, home, sizeof(home));
		env[n++] = home;
	}
	env[n] = NULL;
	p->env.v = env;
	p->env.n = n;
}

/* runc finalizeNamespace: the cwd is entered while still privileged (so a directory only root may
 * search works for another user), and once more after the user switch if that first try was denied
 * (a directory only the container's user may enter). Returns 1 when done. */
int enter_cwd(struct plan *p, int after_user)
{
	if (!p->cwd || !*p->cwd) return 1;
	if (chdir(p->cwd) == 0) return 1;
	if (!after_user && (errno == EACCES || errno == EPERM)) return 0;
	bail("chdir to cwd (\"%s\") set in config.json failed", p->cwd);
}

#ifndef SYS_faccessat2
#define SYS_faccessat2 439
#endif
#ifndef AT_EACCESS
#define AT_EACCESS 0x200
#endif

/* Go's exec.LookPath (runc >= 1.2): faccessat2(AT_EACCESS) checks with the effective ids and the
 * effective capabilities (CAP_DAC_OVERRIDE makes a file with any exec bit executable), where access()
 * would use the real uid and, for a non-root one, no capabilities at all; where faccessat2 is missing
 * or denied by seccomp, any exec bit will do. */
static int is_executable(const char *path)
{
	struct stat st;
	if (stat(path, &st) < 0) return -1;
	if (S_ISDIR(st.st_mode)) { errno = EISDIR; return -1; }
	if (syscall(SYS_faccessat2, AT_FDCWD, path, X_OK, AT_EACCESS) == 0) return 0;
	if (errno != ENOSYS && errno != EPERM) return -1;
	if (st.st_mode & 0111) return 0;
	errno = EACCES;
	return -1;
}

/* exec.LookPath semantics (runc resolves args[0] during create: a missing binary fails create). */
const char *lookup_exec(struct plan *p, char *buf, size_t buflen)
{
	if (!p->args.n) bailx("process.args must not be empty");
	const char *name = p->args.v[0];
	if (strchr(name, '/')) {
		if (is_executable(name) < 0) {
			if (errno == ENOENT) bailx("exec: \"%s\": stat %s: no such file or directory", name, name);
			bail("exec: \"%s\"", name);
		}
		return name;
	}
	const char *path = "";
	for (uint32_t i = 0; i < p->env.n; i++)
		if (strncmp(p->env.v[i], "PATH=", 5) == 0) path = p->env.v[i] + 5;
	const char *s = path;
	while (*s || s == path) {
		const char *e = strchr(s, ':');
		size_t n = e ? (size_t)(e - s) : strlen(s);
		if (n == 0) snprintf(buf, buflen, "./%s", name);
		else snprintf(buf, buflen, "%.*s/%s", (int)n, s, name);
		if (is_executable(buf) == 0) return buf;
		if (!e) break;
		s = e + 1;
	}
	bailx("exec: \"%s\": executable file not found in $PATH", name);
}
