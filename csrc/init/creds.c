/* creds.c - rlimits, user and groups, capabilities, executable lookup. */
#include "init.h"
#include <errno.h>
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
		struct rlimit rl = { (rlim_t)p->rlimits[i].soft, (rlim_t)p->rlimits[i].hard };
		/* runc's wording, plus the name and values */
		if (setrlimit((int)p->rlimits[i].resource, &rl) < 0)
			bail("error setting rlimit type %u (RLIMIT_%s soft %llu hard %llu)", p->rlimits[i].resource,
			     rlimit_name(p->rlimits[i].resource), (unsigned long long)p->rlimits[i].soft,
			     (unsigned long long)p->rlimits[i].hard);
	}
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
	if (p->has_caps) drop_bounding(p->caps[0]);
	if (p->has_user) {
		if (prctl(PR_SET_KEEPCAPS, 1, 0, 0, 0) < 0) bail("prctl(PR_SET_KEEPCAPS)");
		hand_stdio_to_user(p);
		if (p->user_flags & USER_SETGROUPS) {
			if (setgroups(p->ngroups, (gid_t *)p->groups) < 0) bail("setgroups");
		}
		if (setresgid(p->gid, p->gid, p->gid) < 0) bail("setresgid %u", p->gid);
		if (setresuid(p->uid, p->uid, p->uid) < 0) bail("setresuid %u", p->uid);
		if (prctl(PR_SET_KEEPCAPS, 0, 0, 0, 0) < 0) bail("prctl(PR_SET_KEEPCAPS)");
	}
	if (p->has_caps) {
		set_caps(p->caps[1], p->caps[2], p->caps[3]);
		prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0);
		/* as runc: an ambient cap that is not also permitted+inheritable is silently not raised */
		for (int cap = 0; cap < 64; cap++)
			if (p->caps[4] & (1ULL << cap))
				prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_RAISE, cap, 0, 0);
	}
	umask(p->umask == UMASK_UNSET ? 022 : (mode_t)p->umask);
}

/* runc: when the process env has no HOME, it is the user's home from the container's /etc/passwd,
 * or "/" when there is none (user.LookupUid on the container's files). */
void default_home(struct plan *p)
{
	for (uint32_t i = 0; i < p->env.n; i++)
		if (strncmp(p->env.v[i], "HOME=", 5) == 0) return;
	static char home[4096 + 5];
	snprintf(home, sizeof(home), "HOME=/");
	FILE *f = fopen("/etc/passwd", "re");
	if (f) {
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
			if (*fields[5]) snprintf(home, sizeof(home), "HOME=%s", fields[5]);
			break;
		}
		fclose(f);
	}
	const char **env = calloc(p->env.n + 2, sizeof(char *));
	if (!env) bail("malloc");
	memcpy(env, p->env.v, p->env.n * sizeof(char *));
	env[p->env.n] = home;
	p->env.v = env;
	p->env.n++;
}

static int is_executable(const char *path)
{
	struct stat st;
	if (stat(path, &st) < 0) return -1;
	if (S_ISDIR(st.st_mode)) { errno = EISDIR; return -1; }
	if (access(path, X_OK) < 0) return -1;
	return 0;
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
