/* rootfs.c - everything below the rootfs, done through fds resolved by the kernel inside the root
 * (openat2 RESOLVE_IN_ROOT): mount targets, mkdir, mknod, symlinks, masked and readonly paths.
 * A symlink in the image can never redirect an operation onto a host path (CVE-2021-30465,
 * CVE-2024-45310, CVE-2025-31133, CVE-2026-47766 and friends). */
#include "init.h"
#include "sys.h"
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <dirent.h>
#include <sched.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/statvfs.h>
#include <sys/sysmacros.h>
#include <sys/xattr.h>
#include <unistd.h>

#define PROC_SUPER_MAGIC 0x9fa0
#ifndef NS_GET_NSTYPE
#define NS_GET_NSTYPE _IO(0xb7, 0x3)
#endif
#define IN_ROOT (OCI_RESOLVE_IN_ROOT | OCI_RESOLVE_NO_MAGICLINKS)

static int g_rootfd = -1;
static const char *g_rootfs;  /* the rootfs path (a bind source below it is opened inside the root) */
static uint32_t g_test_delay_us; /* OP_TEST_REMOUNT_DELAY: TEST ONLY */
static const char *g_mount_label; /* linux.mountLabel (OP_MOUNT_LABEL), NULL without one */

int open_in_root(int rootfd, const char *path, int flags, uint64_t resolve)
{
	while (*path == '/') path++;
	if (!*path) path = ".";
	int fd;
	do fd = sys_openat2(rootfd, path, (uint64_t)flags | O_CLOEXEC, 0, IN_ROOT | resolve);
	while (fd < 0 && errno == EAGAIN);
	return fd;
}

/* mkdir -p inside the root; returns an O_PATH fd of the directory. */
static int mkdir_in_root(int rootfd, const char *path, mode_t mode)
{
	int fd = open_in_root(rootfd, path, O_PATH | O_DIRECTORY, 0);
	if (fd >= 0 || errno != ENOENT) return fd;
	char buf[PATH_MAX];
	if (snprintf(buf, sizeof(buf), "%s", path) >= (int)sizeof(buf)) { errno = ENAMETOOLONG; return -1; }
	/* strip trailing slashes */
	size_t l = strlen(buf);
	while (l > 1 && buf[l - 1] == '/') buf[--l] = 0;
	char *slash = strrchr(buf, '/');
	int parent;
	const char *base;
	if (slash) {
		*slash = 0;
		parent = mkdir_in_root(rootfd, *buf ? buf : "/", mode);
		base = slash + 1;
	} else {
		parent = dup(rootfd);
		base = buf;
	}
	if (parent < 0) return -1;
	if (mkdirat(parent, base, mode) < 0 && errno != EEXIST) { int e = errno; close(parent); errno = e; return -1; }
	close(parent);
	return open_in_root(rootfd, path, O_PATH | O_DIRECTORY, 0);
}

/* Split "/a/b/c" into an O_PATH fd of "/a/b" (created if missing) and "c". */
static int open_parent(int rootfd, const char *path, char *base, size_t baselen)
{
	char buf[PATH_MAX];
	if (snprintf(buf, sizeof(buf), "%s", path) >= (int)sizeof(buf)) { errno = ENAMETOOLONG; return -1; }
	size_t l = strlen(buf);
	while (l > 1 && buf[l - 1] == '/') buf[--l] = 0;
	char *slash = strrchr(buf, '/');
	const char *b = slash ? slash + 1 : buf;
	if (!*b || strcmp(b, "..") == 0 || strcmp(b, ".") == 0) { errno = EINVAL; return -1; }
	snprintf(base, baselen, "%s", b);
	if (slash) *slash = 0;
	return mkdir_in_root(rootfd, slash && *buf ? buf : "/", 0755);
}

static void fdpath(char *buf, size_t len, int fd) { snprintf(buf, len, "/proc/self/fd/%d", fd); }

/* dst names a symlink whose target does not exist (an image's /etc/hosts -> /tmp/hosts): its
 * target as a path inside the root, in out; NULL when dst is no symlink. */
static const char *dangling_target(int rootfd, const char *dst, char *out, size_t outlen)
{
	char parent[PATH_MAX];
	if (snprintf(parent, sizeof(parent), "%s", dst) >= (int)sizeof(parent)) return NULL;
	size_t l = strlen(parent);
	while (l > 1 && parent[l - 1] == '/') parent[--l] = 0;
	char *slash = strrchr(parent, '/');
	if (!slash) return NULL;
	*slash = 0;
	const char *base = slash + 1;
	int pfd = open_in_root(rootfd, *parent ? parent : "/", O_PATH | O_DIRECTORY, 0);
	if (pfd < 0) return NULL;
	char target[PATH_MAX];
	ssize_t n = readlinkat(pfd, base, target, sizeof(target) - 1);
	close(pfd);
	if (n <= 0) return NULL;
	target[n] = 0;
	if (target[0] == '/') snprintf(out, outlen, "%s", target);
	else snprintf(out, outlen, "%s/%s", parent, target);
	return out;
}

static int mount_target_at(int rootfd, const char *dst, int is_dir, uint64_t resolve);

/* Open (creating if needed) a mount target: a directory, or an empty file when the source is not a dir.
 * A destination that is a dangling symlink gets its target created, inside the root (runc >= 1.2,
 * pathrs MkdirAllInRoot/CreateInRoot); never for procfs/sysfs, which refuse symlinks altogether. */
static int mount_target(int rootfd, const char *dst, int is_dir, uint64_t resolve)
{
	int fd = mount_target_at(rootfd, dst, is_dir, resolve);
	char buf[2][PATH_MAX];
	for (int hops = 0; fd < 0 && errno == ENOENT && !resolve && hops < 40; hops++) {
		const char *next = dangling_target(rootfd, dst, buf[hops & 1], sizeof(buf[0]));
		if (!next) { errno = ENOENT; break; }
		dst = next;
		fd = mount_target_at(rootfd, dst, is_dir, resolve);
	}
	return fd;
}

static int mount_target_at(int rootfd, const char *dst, int is_dir, uint64_t resolve)
{
	int fd;
	if (is_dir) {
		fd = open_in_root(rootfd, dst, O_PATH | O_DIRECTORY, resolve);
		if (fd < 0 && errno == ENOENT) fd = mkdir_in_root(rootfd, dst, 0755);
		if (fd >= 0 && resolve) { close(fd); fd = open_in_root(rootfd, dst, O_PATH | O_DIRECTORY, resolve); }
		return fd;
	}
	fd = open_in_root(rootfd, dst, O_PATH, resolve);
	if (fd >= 0 || errno != ENOENT) return fd;
	char base[NAME_MAX + 1];
	int parent = open_parent(rootfd, dst, base, sizeof(base));
	if (parent < 0) return -1;
	char pp[64];
	fdpath(pp, sizeof(pp), parent);
	/* create the file through the parent's fd, never following a symlink */
	int dfd = open(pp, O_DIRECTORY | O_RDONLY | O_CLOEXEC);
	close(parent);
	if (dfd < 0) return -1;
	int f = openat(dfd, base, O_CREAT | O_EXCL | O_WRONLY | O_NOFOLLOW | O_CLOEXEC, 0644);
	if (f < 0 && errno != EEXIST) { int e = errno; close(dfd); errno = e; return -1; }
	if (f >= 0) close(f);
	close(dfd);
	return open_in_root(rootfd, dst, O_PATH, resolve);
}

static unsigned long locked_flags(const char *path)
{
	struct statvfs sv;
	unsigned long f = 0;
	if (statvfs(path, &sv) < 0) return 0;
	if (sv.f_flag & ST_RDONLY) f |= MS_RDONLY;
	if (sv.f_flag & ST_NOSUID) f |= MS_NOSUID;
	if (sv.f_flag & ST_NODEV) f |= MS_NODEV;
	if (sv.f_flag & ST_NOEXEC) f |= MS_NOEXEC;
	if (sv.f_flag & ST_NOATIME) f |= MS_NOATIME;
	if (sv.f_flag & ST_NODIRATIME) f |= MS_NODIRATIME;
	if (sv.f_flag & ST_RELATIME) f |= MS_RELATIME;
	return f;
}

/* remount a bind mount with flags; in a user namespace locked flags must be kept */
static int remount_bind(const char *target, unsigned long flags)
{
	if (mount(NULL, target, NULL, MS_REMOUNT | MS_BIND | flags, NULL) == 0) return 0;
	if (errno != EPERM) return -1;
	return mount(NULL, target, NULL, MS_REMOUNT | MS_BIND | flags | locked_flags(target), NULL);
}

/* runc >= 1.2: a bind mount whose options name any flag (setting or clearing) is remounted with exactly
 * those flags. Where the kernel refuses (a user namespace locks the source's rdonly, nosuid, nodev,
 * noexec and atime flags), the locked flags the options do not mention are kept, and asking to clear
 * one of them is an error, as runc's "mount --bind -o remount" fallback. */
static void remount_bind_exact(const char *target, const char *dst, unsigned long flags, unsigned long cleared)
{
	if (mount(NULL, target, NULL, MS_REMOUNT | MS_BIND | flags, NULL) == 0) return;
	if (errno != EPERM) bail("remount bind mount %s with flags 0x%lx", dst, flags);
	unsigned long locked = locked_flags(target);
	unsigned long bad = locked & cleared;
	if (bad)
		bailx("failed to set user-requested vfs flags on bind-mount %s: cannot clear locked flags 0x%lx: "
		      "operation not permitted", dst, bad);
	if (mount(NULL, target, NULL, MS_REMOUNT | MS_BIND | flags | locked, NULL) < 0)
		bail("remount bind mount %s with locked flags 0x%lx re-applied", dst, locked);
}

/* tmpcopyup: copy a directory tree (owner, mode, symlinks, device nodes) fd to fd, never following
 * a symlink; both ends are inside the container's root. */
static void copy_tree(int src, int dst, const char *what)
{
	int d = dup(src);
	if (d < 0) bail("tmpcopyup %s: dup", what);
	DIR *dir = fdopendir(d);
	if (!dir) bail("tmpcopyup %s: opendir", what);
	struct dirent *e;
	while ((e = readdir(dir))) {
		if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
		struct stat st;
		if (fstatat(src, e->d_name, &st, AT_SYMLINK_NOFOLLOW) < 0) bail("tmpcopyup %s: stat %s", what, e->d_name);
		if (S_ISDIR(st.st_mode)) {
			if (mkdirat(dst, e->d_name, st.st_mode & 07777) < 0) bail("tmpcopyup %s: mkdir %s", what, e->d_name);
			int s2 = openat(src, e->d_name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
			int d2 = openat(dst, e->d_name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
			if (s2 < 0 || d2 < 0) bail("tmpcopyup %s: open %s", what, e->d_name);
			copy_tree(s2, d2, what);
			close(s2);
			close(d2);
		} else if (S_ISREG(st.st_mode)) {
			int in = openat(src, e->d_name, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
			int out = openat(dst, e->d_name, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, st.st_mode & 07777);
			if (in < 0 || out < 0) bail("tmpcopyup %s: open %s", what, e->d_name);
			char buf[65536];
			ssize_t n;
			while ((n = read(in, buf, sizeof(buf))) > 0)
				if (write_all(out, buf, n) < 0) bail("tmpcopyup %s: write %s", what, e->d_name);
			if (n < 0) bail("tmpcopyup %s: read %s", what, e->d_name);
			close(in);
			close(out);
		} else if (S_ISLNK(st.st_mode)) {
			char target[PATH_MAX];
			ssize_t n = readlinkat(src, e->d_name, target, sizeof(target) - 1);
			if (n < 0) bail("tmpcopyup %s: readlink %s", what, e->d_name);
			target[n] = 0;
			if (symlinkat(target, dst, e->d_name) < 0) bail("tmpcopyup %s: symlink %s", what, e->d_name);
		} else {
			if (mknodat(dst, e->d_name, st.st_mode, st.st_rdev) < 0) bail("tmpcopyup %s: mknod %s", what, e->d_name);
		}
		if (fchownat(dst, e->d_name, st.st_uid, st.st_gid, AT_SYMLINK_NOFOLLOW) < 0) bail("tmpcopyup %s: chown %s", what, e->d_name);
		if (!S_ISLNK(st.st_mode) && fchmodat(dst, e->d_name, st.st_mode & 07777, 0) < 0) bail("tmpcopyup %s: chmod %s", what, e->d_name);
	}
	closedir(dir);
}

/* The mount id of an fd (/proc/self/fdinfo: every kernel, no statx needed), -1 if unknown. */
static long fd_mnt_id(int fd)
{
	char path[64], line[256];
	snprintf(path, sizeof(path), "/proc/self/fdinfo/%d", fd);
	FILE *f = fopen(path, "re");
	if (!f) return -1;
	long id = -1;
	while (fgets(line, sizeof(line), f))
		if (sscanf(line, "mnt_id: %ld", &id) == 1) break;
	fclose(f);
	return id;
}

/* After mount(): the destination re-opened by path must be the mount just made, not whatever a
 * rename/symlink swap in a shared volume put there meanwhile (runc >= 1.4 checks this too): the same
 * resolved path as the target had, on a different mount than the target's. The flags, propagation and
 * attributes then go to that fd, never to a path resolved again. */
static void verify_new_mount(int tfd, const char *want, long old_mnt, const char *dst)
{
	char got[PATH_MAX], fp[64];
	snprintf(fp, sizeof(fp), "/proc/self/fd/%d", tfd);
	ssize_t n = readlink(fp, got, sizeof(got) - 1);
	if (n < 0) bail("read back the mount destination %s", dst);
	got[n] = 0;
	long mnt = fd_mnt_id(tfd);
	if (strcmp(got, want) != 0 || mnt < 0 || mnt == old_mnt)
		bailx("mount destination %s changed while it was being mounted (now %s): refusing to apply its "
		      "flags elsewhere (a symlink or rename race in a shared volume?)", dst, got);
}

/* runc mountCgroupV2: the container's cgroup mount on a pure v2 host is a fresh cgroup2; where the kernel
 * refuses it with EPERM (a user namespace in the host's cgroup namespace) or EBUSY (the destination is
 * already that same cgroup2 mount, e.g. under a bound /sys), the plan's fallback is bind-mounted instead:
 * /sys/fs/cgroup, or with a cgroup namespace the container's own cgroup. The rootless cgroup manager's
 * container may have no cgroup of its own (ENOENT): the destination is masked by a read-only tmpfs.
 * Returns 1 for the bind (its flags are set on the re-opened mount), 0 for the mask. */
static int cgroup2_fallback(struct mount_op *m, const char *tp)
{
	if (mount(m->cg2_fallback, tp, NULL, MS_BIND | (m->flags & MS_REC), NULL) == 0) return 1;
	if (errno != ENOENT || !(m->cg2_flags & CG2_MASK_MISSING))
		bail("bind mount %s on %s (a cgroup2 mount was refused)", m->cg2_fallback, m->dst);
	char data[4096] = "";
	if (g_mount_label) snprintf(data, sizeof(data), "context=\"%s\"", g_mount_label);
	if (mount("tmpfs", tp, "tmpfs", MS_RDONLY, *data ? data : NULL) < 0)
		bail("mask %s with a read-only tmpfs (a cgroup2 mount was refused, %s is missing)", m->dst,
		     m->cg2_fallback);
	return 0;
}

static void do_mount(struct mount_op *m)
{
	int copyup = (m->kind & MOUNT_COPYUP) != 0;
	int clears = (m->kind & MOUNT_CLEARS) != 0;
	int idmap_in_root = (m->kind & MOUNT_IDMAP_IN_ROOT) != 0;
	unsigned long cleared = 0;
	static const unsigned long lockable[] = { MS_RDONLY, MS_NOSUID, MS_NODEV, MS_NOEXEC, MS_NOATIME,
						  MS_NODIRATIME, MS_RELATIME };
	for (unsigned i = 0; i < sizeof(lockable) / sizeof(lockable[0]); i++)
		if (m->kind & (1u << (MOUNT_CLR_SHIFT + i))) cleared |= lockable[i];
	m->kind &= 0xffu;
	int is_bind = m->kind == MOUNT_KIND_BIND || m->kind == MOUNT_KIND_RBIND;
	int is_dir = 1;
	uint64_t resolve = 0;
	const char *src = m->src;
	char srcpath[64];
	int srcfd = -1;
	if (is_bind && m->tree_fd < 0 && g_rootfs) {
		/* runc: a source inside the container's root is opened now, in the container's mount
		 * namespace (after the earlier mounts), resolved inside the root */
		size_t rl = strlen(g_rootfs);
		if (strncmp(m->src, g_rootfs, rl) == 0 && (m->src[rl] == '/' || m->src[rl] == 0)) {
			srcfd = open_in_root(g_rootfd, m->src + rl, O_PATH, 0);
			if (srcfd < 0) bail("bind mount source %s (for %s)", m->src, m->dst);
			fdpath(srcpath, sizeof(srcpath), srcfd);
			src = srcpath;
		}
	}
	if (is_bind && idmap_in_root) {
		/* an idmapped bind of such a source: cloned here, the runtime sets the mapping (it holds the
		 * mapping's user namespace and the privilege over the source's filesystem) */
		if (srcfd < 0) bailx("idmapped mount %s: its source %s is not inside the root", m->dst, m->src);
		unsigned of = OCI_OPEN_TREE_CLONE | OCI_OPEN_TREE_CLOEXEC | AT_EMPTY_PATH;
		if (m->kind == MOUNT_KIND_RBIND) of |= OCI_AT_RECURSIVE;
		int tree = sys_open_tree(srcfd, "", of);
		if (tree < 0) bail("/mounts/%u: clone the bind mount source %s", m->idmap_index, m->src);
		struct sync_hdr h = { SYNC_IDMAP_FD, (int32_t)m->idmap_index };
		if (g_trace) trace_flush();
		if (send_fd(g_sync_fd, tree, &h, sizeof(h)) < 0) bail("send the idmapped mount of %s to the runtime", m->src);
		sync_expect(SYNC_IDMAP_ACK, NULL, NULL);
		close(srcfd);
		srcfd = -1;
		m->tree_fd = tree;
	}
	if (is_bind && m->tree_fd < 0) { /* a prepared tree (idmapped, opened by the runtime): its root tells */
		struct stat st;
		if (stat(src, &st) < 0) bail("bind mount source %s (for %s)", m->src, m->dst);
		is_dir = S_ISDIR(st.st_mode);
	}
	/* procfs and sysfs must be mounted on a real directory, never through a symlink
	 * (CVE-2019-19921, CVE-2023-27561, CVE-2025-54867) */
	if (!is_bind && (strcmp(m->fstype, "proc") == 0 || strcmp(m->fstype, "sysfs") == 0)) {
		resolve = OCI_RESOLVE_NO_SYMLINKS;
		/* runc's check and wording: an existing destination that is not a directory (a symlink, a file) */
		int e = open_in_root(g_rootfd, m->dst, O_PATH | O_NOFOLLOW, OCI_RESOLVE_NO_SYMLINKS);
		struct stat st;
		if (e >= 0 && fstat(e, &st) == 0 && !S_ISDIR(st.st_mode))
			bailx("filesystem \"%s\" must be mounted on ordinary directory (%s is a %s)", m->fstype, m->dst,
			      S_ISLNK(st.st_mode) ? "symlink" : "file, not a directory");
		if (e < 0 && errno == ELOOP) /* a symlink on the way */
			bailx("filesystem \"%s\" must be mounted on ordinary directory (%s goes through a symlink)",
			      m->fstype, m->dst);
		if (e >= 0) close(e);
	}
	int lower = -1;
	if (copyup) {
		lower = open_in_root(g_rootfd, m->dst, O_RDONLY | O_DIRECTORY, 0);
		if (lower < 0 && errno != ENOENT) bail("tmpcopyup: open %s", m->dst);
	}
	if (m->tree_fd >= 0) { /* idmapped: the detached tree stage-1 made; its root tells file or directory */
		struct stat st;
		if (fstat(m->tree_fd, &st) < 0) bail("stat the idmapped mount of %s (for %s)", m->src, m->dst);
		is_dir = S_ISDIR(st.st_mode);
	}
	/* runc >= 1.2 (createOpenMountpoint): a tmpfs takes the mode of the directory it covers, unless
	 * the options say otherwise (a later mode= wins) */
	char tmpfs_data[4096];
	if (!is_bind && m->tree_fd < 0 && strcmp(m->fstype, "tmpfs") == 0) {
		int old = open_in_root(g_rootfd, m->dst, O_PATH, 0);
		struct stat ost;
		if (old >= 0 && fstat(old, &ost) == 0) {
			snprintf(tmpfs_data, sizeof(tmpfs_data), "mode=%04o%s%s", (unsigned)(ost.st_mode & 07777),
				 *m->data ? "," : "", m->data);
			m->data = tmpfs_data;
		}
		if (old >= 0) close(old);
	}
	/* runc: a read-only tmpfs (and a read-only /dev) is mounted read-write, so that mounts, devices
	 * and symlinks can be made below it, and made read-only once the rootfs is done */
	if ((m->flags & MS_RDONLY) && ((!is_bind && strcmp(m->fstype, "tmpfs") == 0) || strcmp(m->dst, "/dev") == 0)) {
		m->late_ro = 1;
		m->flags &= ~(uint32_t)MS_RDONLY;
	}
	int tfd = mount_target(g_rootfd, m->dst, is_dir, resolve);
	if (tfd < 0) bail("mount destination %s", m->dst);
	char tp[64];
	fdpath(tp, sizeof(tp), tfd);
	char want[PATH_MAX];
	ssize_t wl = readlink(tp, want, sizeof(want) - 1);
	if (wl < 0) bail("resolve mount destination %s", m->dst);
	want[wl] = 0;
	long old_mnt = fd_mnt_id(tfd);
	if (m->tree_fd >= 0) {
		if (sys_move_mount(m->tree_fd, "", tfd, "", OCI_MOVE_MOUNT_F_EMPTY_PATH | OCI_MOVE_MOUNT_T_EMPTY_PATH) < 0)
			bail("mount the idmapped mount of %s on %s", m->src, m->dst);
		close(m->tree_fd);
		m->tree_fd = -1;
	} else if (is_bind) {
		unsigned long bf = MS_BIND | (m->kind == MOUNT_KIND_RBIND ? MS_REC : 0);
		if (mount(src, tp, NULL, bf, NULL) < 0) bail("bind mount %s on %s", m->src, m->dst);
		if (srcfd >= 0) close(srcfd);
	} else {
		if (mount(*m->src ? m->src : m->fstype, tp, m->fstype, m->flags, *m->data ? m->data : NULL) < 0) {
			if (!(m->cg2_fallback && (errno == EPERM || errno == EBUSY)))
				bail("mount %s (type %s, options \"%s\") on %s", m->src, m->fstype, m->data, m->dst);
			is_bind = cgroup2_fallback(m, tp);
		}
	}
	close(tfd);
	if (g_test_delay_us) usleep(g_test_delay_us);
	/* re-open: the fd must now name the new mount, still inside the root */
	tfd = open_in_root(g_rootfd, m->dst, O_PATH, resolve);
	if (tfd < 0) bail("re-open mount destination %s", m->dst);
	verify_new_mount(tfd, want, old_mnt, m->dst);
	if (lower >= 0) {
		int upper = open_in_root(g_rootfd, m->dst, O_RDONLY | O_DIRECTORY, resolve);
		if (upper < 0) bail("tmpcopyup: open the new tmpfs on %s", m->dst);
		struct stat st;
		if (fstat(lower, &st) < 0) bail("tmpcopyup: stat %s", m->dst);
		copy_tree(lower, upper, m->dst);
		if (fchown(upper, st.st_uid, st.st_gid) < 0 || fchmod(upper, st.st_mode & 07777) < 0)
			bail("tmpcopyup: set owner and mode of %s", m->dst);
		close(upper);
		close(lower);
	}
	fdpath(tp, sizeof(tp), tfd);
	/* runc: mqueue takes no context= option; the label goes on its root directory instead */
	if (g_mount_label && !is_bind && strcmp(m->fstype, "mqueue") == 0 &&
	    setxattr(tp, "security.selinux", g_mount_label, strlen(g_mount_label), 0) < 0)
		bail("set the SELinux label of %s", m->dst);
	unsigned long extra = m->flags & ~(unsigned long)(MS_BIND | MS_REC | MS_REMOUNT);
	if (is_bind && (extra || clears)) remount_bind_exact(tp, m->dst, extra, cleared);
	for (uint32_t i = 0; i < m->npflags; i++)
		if (mount(NULL, tp, NULL, m->pflags[i], NULL) < 0)
			bail("set propagation 0x%x of %s", m->pflags[i], m->dst);
	if (m->attr_set || m->attr_clr) {
		struct oci_mount_attr a = { m->attr_set, m->attr_clr, 0, 0 };
		if (sys_mount_setattr(tfd, "", AT_EMPTY_PATH | OCI_AT_RECURSIVE, &a) < 0)
			bail("set recursive mount attributes of %s", m->dst);
	}
	close(tfd);
}

/* Idmapped bind mounts (mounts[].uidMappings/gidMappings, the idmap/ridmap options), made in stage-1
 * while it is still in the runtime's user and mount namespaces: MOUNT_ATTR_IDMAP needs CAP_SYS_ADMIN over
 * the source's filesystem (the host's user namespace) and over the mapping's user namespace, which a
 * container init in its own user namespace lacks. The source is cloned into a detached tree
 * (OPEN_TREE_CLONE, with AT_RECURSIVE for rbind), the tree gets the mapping (recursively for ridmap),
 * and the container init inherits the tree's fd and moves it onto the destination (do_mount). The
 * user namespace fds are slots the runtime filled; they are closed here. */
void prepare_idmapped_mounts(struct plan *p)
{
	for (uint32_t i = 0; i < p->nmounts; i++) {
		struct mount_op *m = &p->mounts[i];
		if (m->idmap_fd < 0 && (m->kind & MOUNT_FROM_RUNTIME)) {
			/* a bind source the container's root cannot reach (runc >= 1.1 opens it for the container) */
			unsigned of = OCI_OPEN_TREE_CLONE | OCI_OPEN_TREE_CLOEXEC;
			if ((m->kind & 0xffu) == MOUNT_KIND_RBIND) of |= OCI_AT_RECURSIVE;
			m->tree_fd = sys_open_tree(AT_FDCWD, m->src, of);
			if (m->tree_fd < 0) bail("clone the bind mount source %s (for %s)", m->src, m->dst);
			continue;
		}
		if (m->idmap_fd < 0 || (m->kind & MOUNT_IDMAP_IN_ROOT)) continue; /* in the root: see do_mount */
		int t = ioctl(m->idmap_fd, NS_GET_NSTYPE);
		if (t != CLONE_NEWUSER)
			bailx("/mounts/%u: the id mapping's fd %d is not a user namespace", m->idmap_index, m->idmap_fd);
		unsigned of = OCI_OPEN_TREE_CLONE | OCI_OPEN_TREE_CLOEXEC;
		if ((m->kind & 0xffu) == MOUNT_KIND_RBIND) of |= OCI_AT_RECURSIVE;
		int tree = sys_open_tree(AT_FDCWD, m->src, of);
		if (tree < 0) bail("/mounts/%u: clone the bind mount source %s", m->idmap_index, m->src);
		struct oci_mount_attr a = { OCI_MOUNT_ATTR_IDMAP, 0, 0, (uint64_t)m->idmap_fd };
		unsigned sf = AT_EMPTY_PATH | ((m->idmap_flags & IDMAP_RECURSIVE) ? OCI_AT_RECURSIVE : 0);
		if (sys_mount_setattr(tree, "", sf, &a) < 0) {
			if (errno == EINVAL)
				bailx("/mounts/%u: cannot idmap the mount of %s on %s: its filesystem%s does not support "
				      "idmapped mounts on this kernel (mount_setattr MOUNT_ATTR_IDMAP: Invalid argument)",
				      m->idmap_index, m->src, m->dst,
				      (m->idmap_flags & IDMAP_RECURSIVE) ? " (or that of a mount below it)" : "");
			bail("/mounts/%u: set the id mapping of %s (for %s)", m->idmap_index, m->src, m->dst);
		}
		m->tree_fd = tree;
	}
	for (uint32_t i = 0; i < p->nmounts; i++)
		if (p->mounts[i].idmap_fd >= 0) {
			close(p->mounts[i].idmap_fd); /* mounts sharing a mapping share the fd: EBADF after the first */
			p->mounts[i].idmap_fd = -1;
		}
}

/* In a user namespace a device node is the host's own, bind-mounted: nosuid,noexec on it (as crun), set
 * on a detached clone before it is attached, so no other path ever gets them or misses them. */
static void bind_device_node(int srcfd, const char *src, int tfd)
{
	int tree = srcfd >= 0 ? sys_open_tree(srcfd, "", OCI_OPEN_TREE_CLONE | OCI_OPEN_TREE_CLOEXEC | AT_EMPTY_PATH)
			      : sys_open_tree(AT_FDCWD, src, OCI_OPEN_TREE_CLONE | OCI_OPEN_TREE_CLOEXEC);
	if (tree < 0) bail("clone the host's device node %s", src);
	struct oci_mount_attr a = { OCI_MOUNT_ATTR_NOSUID | OCI_MOUNT_ATTR_NOEXEC, 0, 0, 0 };
	if (sys_mount_setattr(tree, "", AT_EMPTY_PATH, &a) < 0) bail("make the bind of device %s nosuid,noexec", src);
	if (sys_move_mount(tree, "", tfd, "", OCI_MOVE_MOUNT_F_EMPTY_PATH | OCI_MOVE_MOUNT_T_EMPTY_PATH) < 0)
		bail("bind mount device %s", src);
	close(tree);
}

static void make_device(struct plan *p, uint32_t index)
{
	struct device_op *d = &p->devices[index];
	char base[NAME_MAX + 1];
	int parent = open_parent(g_rootfd, d->path, base, sizeof(base));
	if (parent < 0) bail("create parent directory of device %s", d->path);
	char pp[64];
	fdpath(pp, sizeof(pp), parent);
	int dfd = open(pp, O_DIRECTORY | O_RDONLY | O_CLOEXEC);
	close(parent);
	if (dfd < 0) bail("open parent of device %s", d->path);
	if (d->bind) {
		/* in a user namespace mknod is not allowed: bind the host's node (or the one stage-1 made,
		 * DEVICE_HOSTNODE) onto an empty file */
		int f = openat(dfd, base, O_CREAT | O_WRONLY | O_NOFOLLOW | O_CLOEXEC, 0644);
		if (f < 0) bail("create bind target for device %s", d->path);
		close(f);
		int tfd = open_in_root(g_rootfd, d->path, O_PATH | O_NOFOLLOW, 0);
		if (tfd < 0) bail("open device target %s", d->path);
		int src = -1;
		if (d->bind == DEVICE_HOSTNODE && (src = hostnode_fd(p, index)) < 0) bail("open the node made for %s", d->path);
		bind_device_node(src, d->path, tfd);
		if (src >= 0) close(src);
		close(tfd);
	} else {
		if (mknodat(dfd, base, d->mode, makedev(d->major, d->minor)) < 0) {
			if (errno == EPERM) {
				/* runc createDeviceNode: a namespace we did not detect may still forbid mknod */
				d->bind = 1;
				close(dfd);
				make_device(p, index);
				return;
			}
			if (errno != EEXIST) bail("mknod %s", d->path);
		} else {
			if (fchownat(dfd, base, d->uid, d->gid, AT_SYMLINK_NOFOLLOW) < 0) bail("chown %s", d->path);
			int f = openat(dfd, base, O_PATH | O_NOFOLLOW | O_CLOEXEC);
			if (f < 0) bail("open %s", d->path);
			char fp[64];
			fdpath(fp, sizeof(fp), f);
			if (chmod(fp, d->mode & 07777) < 0) bail("chmod %s", d->path);
			close(f);
		}
	}
	close(dfd);
}

static void make_symlink(struct pair *s)
{
	char base[NAME_MAX + 1];
	int parent = open_parent(g_rootfd, s->b, base, sizeof(base));
	if (parent < 0) bail("create parent directory of %s", s->b);
	char pp[64];
	fdpath(pp, sizeof(pp), parent);
	int dfd = open(pp, O_DIRECTORY | O_RDONLY | O_CLOEXEC);
	close(parent);
	if (dfd < 0) bail("open parent of %s", s->b);
	if (strcmp(s->b, "/dev/ptmx") == 0) unlinkat(dfd, base, 0); /* runc setupPtmx: always the pts one */
	if (symlinkat(s->a, dfd, base) < 0 && errno != EEXIST) bail("symlink %s -> %s", s->b, s->a);
	close(dfd);
}

/* pivot_root refuses a new root whose parent mount is shared (rootfsPropagation "shared"): make the
 * mount that contains the rootfs private, as runc rootfsParentMountPrivate does. */
static void parent_mount_private(const char *rootfs)
{
	FILE *f = fopen("/proc/self/mountinfo", "re");
	if (!f) bail("open /proc/self/mountinfo");
	char line[4096], best[PATH_MAX] = "/";
	size_t bestlen = 1;
	while (fgets(line, sizeof(line), f)) {
		char mp[PATH_MAX], opt[1024];
		if (sscanf(line, "%*s %*s %*s %*s %4095s %*s %1023s", mp, opt) != 2) continue;
		/* undo the \040-style escapes of mountinfo */
		char *r = mp, *w = mp;
		while (*r) {
			if (r[0] == '\\' && r[1] >= '0' && r[1] <= '3' && r[2] && r[3]) {
				*w++ = (char)((r[1] - '0') * 64 + (r[2] - '0') * 8 + (r[3] - '0'));
				r += 4;
			} else {
				*w++ = *r++;
			}
		}
		*w = 0;
		size_t l = strlen(mp);
		if (l > bestlen && strncmp(rootfs, mp, l) == 0 && rootfs[l] == '/') {
			snprintf(best, sizeof(best), "%s", mp);
			bestlen = l;
		}
	}
	fclose(f);
	if (mount(NULL, best, NULL, MS_PRIVATE, NULL) < 0) bail("make parent mount %s of the rootfs private", best);
}

void setup_rootfs(struct plan *p)
{
	g_mount_label = p->mount_label;
	g_rootfs = p->rootfs;
	g_test_delay_us = p->test_remount_delay_us;
	if (p->root_flags & ROOTFS_NO_MOUNTNS) {
		/* No mount namespace: the config's mounts land in the runtime's own namespace, under the
		 * rootfs only (as runc does, minus touching the propagation of "/", which would change the
		 * host's). `delete` unmounts everything below the rootfs again. */
		umask(0);
		g_rootfd = open(p->rootfs, O_PATH | O_DIRECTORY | O_CLOEXEC);
		if (g_rootfd < 0) bail("open rootfs %s", p->rootfs);
		for (uint32_t i = 0; i < p->nmounts; i++) { step("mount", (int)i, p->mounts[i].dst); do_mount(&p->mounts[i]); }
		for (uint32_t i = 0; i < p->ndevices; i++) { step("device", (int)i, p->devices[i].path); make_device(p, i); }
		step("symlinks", -1, NULL);
		for (uint32_t i = 0; i < p->nsymlinks; i++) make_symlink(&p->symlinks[i]);
		umask(022);
		if (fchdir(g_rootfd) < 0) bail("chdir to rootfs"); /* the createContainer hooks' cwd (runc) */
		return;
	}
	umask(0);
	step("rootfs", -1, p->rootfs);
	/* never let our mounts propagate to the host: rslave first; rootfsPropagation is applied to the new
	 * root after pivot_root (so "unbindable" does not forbid the rootfs bind, and "shared" cannot leak
	 * the container's mounts into the host's namespace) */
	if (mount(NULL, "/", NULL, MS_SLAVE | MS_REC, NULL) < 0) bail("make / rslave");
	if (p->root_propagation & MS_SHARED) parent_mount_private(p->rootfs);
	if (mount(p->rootfs, p->rootfs, NULL, MS_BIND | MS_REC, NULL) < 0) bail("bind mount rootfs %s", p->rootfs);
	g_rootfd = open(p->rootfs, O_PATH | O_DIRECTORY | O_CLOEXEC);
	if (g_rootfd < 0) bail("open rootfs %s", p->rootfs);
	for (uint32_t i = 0; i < p->nmounts; i++) { step("mount", (int)i, p->mounts[i].dst); do_mount(&p->mounts[i]); }
	attach_device_nodes(p, g_rootfd);
	for (uint32_t i = 0; i < p->ndevices; i++) { step("device", (int)i, p->devices[i].path); make_device(p, i); }
	detach_device_nodes(p, g_rootfd);
	step("symlinks", -1, NULL);
	for (uint32_t i = 0; i < p->nsymlinks; i++) make_symlink(&p->symlinks[i]);
	step("mkdir cwd", -1, NULL);
	/* the process cwd, created inside the root after the mounts that may contain it (runc does too) */
	for (uint32_t i = 0; i < p->nmkdirs; i++) {
		int fd = mkdir_in_root(g_rootfd, p->mkdirs[i].path, p->mkdirs[i].mode);
		if (fd < 0) bail("mkdir %s in the rootfs", p->mkdirs[i].path);
		close(fd);
	}
	umask(022);
	/* runc prepareRootfs: the createContainer hooks run with the rootfs as their working directory */
	if (fchdir(g_rootfd) < 0) bail("chdir to rootfs");
}

static void unescape_mountinfo(char *mp)
{
	char *r = mp, *w = mp;
	while (*r) {
		if (r[0] == '\\' && r[1] >= '0' && r[1] <= '3' && r[2] && r[3]) {
			*w++ = (char)((r[1] - '0') * 64 + (r[2] - '0') * 8 + (r[3] - '0'));
			r += 4;
		} else {
			*w++ = *r++;
		}
	}
	*w = 0;
}

/* --no-pivot (runc msMoveRoot): after MS_MOVE + chroot the host's procfs and sysfs mounts would stay in
 * the container's mount namespace, unreachable by path but "fully visible", which lets a process in a
 * nested user namespace mount a fresh procfs or sysfs (the kernel's mount_too_revealing check). Every
 * full (root "/") proc or sysfs mount outside the rootfs is detached first, or covered by a tmpfs where
 * it cannot be detached. Only in the container's own mount namespace, whose "/" is already rslave. */
static void hide_host_proc_sys(const char *rootfs)
{
	FILE *f = fopen("/proc/self/mountinfo", "re");
	if (!f) bail("open /proc/self/mountinfo");
	char (*mps)[PATH_MAX] = NULL;
	size_t n = 0, cap = 0;
	char line[8192];
	size_t rl = strlen(rootfs);
	while (fgets(line, sizeof(line), f)) {
		char root[PATH_MAX], mp[PATH_MAX], fstype[64];
		/* id parent major:minor root mountpoint options [optional...] - fstype source superopts */
		if (sscanf(line, "%*s %*s %*s %4095s %4095s", root, mp) != 2) continue;
		char *dash = strstr(line, " - ");
		if (!dash || sscanf(dash + 3, "%63s", fstype) != 1) continue;
		if (strcmp(root, "/") != 0 || (strcmp(fstype, "proc") != 0 && strcmp(fstype, "sysfs") != 0)) continue;
		unescape_mountinfo(mp);
		if (strncmp(mp, rootfs, rl) == 0 && (mp[rl] == '/' || mp[rl] == 0)) continue;
		if (n == cap) {
			cap = cap ? cap * 2 : 8;
			void *t = realloc(mps, cap * sizeof(*mps));
			if (!t) bail("malloc");
			mps = t;
		}
		snprintf(mps[n++], PATH_MAX, "%s", mp);
	}
	fclose(f);
	for (size_t i = 0; i < n; i++) {
		if (mount(NULL, mps[i], NULL, MS_SLAVE | MS_REC, NULL) < 0) {
			if (errno == ENOENT) continue; /* below one already detached */
			bail("make %s rslave before hiding it", mps[i]);
		}
		if (umount2(mps[i], MNT_DETACH) < 0) {
			if (errno != EINVAL && errno != EPERM) bail("detach the host's %s", mps[i]);
			if (mount("tmpfs", mps[i], "tmpfs", 0, NULL) < 0) bail("cover the host's %s", mps[i]);
		}
	}
	free(mps);
}

/* runc reOpenDevNull (when it set up /dev): stdio that is the null device is replaced by the
 * container's own /dev/null, opened read-write (a caller's read-only /dev/null stdin becomes O_RDWR).
 * Same device, but a file of a mount inside the container: CRIU cannot checkpoint a file of a mount
 * it does not see (conmon and `podman run -d` hand over the host's /dev/null).
 * Only onto the real null device (char 1:3, never through a symlink): else stdio stays as it came. */
static void reopen_dev_null(void)
{
	int fd = open_in_root(g_rootfd, "/dev/null", O_RDWR | O_NOFOLLOW, 0);
	if (fd < 0) return;
	struct stat null, st;
	if (fstat(fd, &null) == 0 && S_ISCHR(null.st_mode) && null.st_rdev == makedev(1, 3))
		for (int i = 0; i < 3; i++)
			if (fstat(i, &st) == 0 && S_ISCHR(st.st_mode) && st.st_rdev == null.st_rdev && dup3(fd, i, 0) < 0)
				bail("dup3 /dev/null onto fd %d", i);
	close(fd);
}

void finish_rootfs(struct plan *p)
{
	if (p->root_flags & ROOTFS_NO_MOUNTNS) {
		/* no mount namespace: no pivot_root in the host's namespace, only change root */
		if (chroot(p->rootfs) < 0 || chdir("/") < 0) bail("chroot %s", p->rootfs);
		close(g_rootfd);
		g_rootfd = open("/", O_PATH | O_DIRECTORY | O_CLOEXEC);
		if (g_rootfd < 0) bail("open new root");
		return;
	}
	if (fchdir(g_rootfd) < 0) bail("chdir to rootfs");
	if (p->root_flags & ROOTFS_NO_PIVOT) {
		hide_host_proc_sys(p->rootfs);
		if (fchdir(g_rootfd) < 0) bail("chdir to rootfs");
		if (mount(".", "/", NULL, MS_MOVE, NULL) < 0) bail("move rootfs onto /");
		if (chroot(".") < 0) bail("chroot");
	} else {
		/* pivot_root(".", ".") stacks the old root on top of the new one; detach it, after making
		 * the old root (only it: we fchdir to it first) rslave so the unmount cannot propagate */
		int oldroot = open("/", O_PATH | O_DIRECTORY | O_CLOEXEC);
		if (oldroot < 0) bail("open old root");
		if (syscall(SYS_pivot_root, ".", ".") < 0) bail("pivot_root %s", p->rootfs);
		if (fchdir(oldroot) < 0) bail("chdir to old root");
		close(oldroot);
		if (mount(NULL, ".", NULL, MS_SLAVE | MS_REC, NULL) < 0) bail("make old root rslave");
		if (umount2(".", MNT_DETACH) < 0) bail("unmount old root");
	}
	if (chdir("/") < 0) bail("chdir /");
	close(g_rootfd);
	g_rootfd = open("/", O_PATH | O_DIRECTORY | O_CLOEXEC);
	if (g_rootfd < 0) bail("open new root");
	step("rootfs propagation", -1, NULL);
	if ((p->root_propagation & ~(unsigned)MS_REC) != MS_SLAVE && mount(NULL, "/", NULL, p->root_propagation, NULL) < 0)
		bail("set rootfsPropagation 0x%x of /", p->root_propagation);
	if (p->root_flags & ROOTFS_READONLY) step("read-only root", -1, NULL);
	if ((p->root_flags & ROOTFS_READONLY) && remount_bind("/", MS_RDONLY) < 0) bail("remount root read-only");
	if (p->ndevices) reopen_dev_null();
}

static int open_dev_null(void)
{
	/* CVE-2025-31133: the image's /dev/null may be a symlink to /proc/sys/kernel/core_pattern */
	int fd = open_in_root(g_rootfd, "/dev/null", O_PATH | O_NOFOLLOW, 0);
	if (fd < 0) bail("open /dev/null in the container");
	struct stat st;
	if (fstat(fd, &st) < 0) bail("stat /dev/null");
	if (!S_ISCHR(st.st_mode) || major(st.st_rdev) != 1 || minor(st.st_rdev) != 3)
		bailx("/dev/null in the container is not the null device (char 1:3): refusing to use it for maskedPaths");
	return fd;
}

/* runc finalizeRootfs: the read-only tmpfs and /dev mounts mounted read-write by do_mount */
static void late_readonly(struct plan *p)
{
	for (uint32_t i = 0; i < p->nmounts; i++) {
		struct mount_op *m = &p->mounts[i];
		if (!m->late_ro) continue;
		int fd = open_in_root(g_rootfd, m->dst, O_PATH, 0);
		if (fd < 0) bail("re-open %s to make it read-only", m->dst);
		char tp[64];
		fdpath(tp, sizeof(tp), fd);
		unsigned long fl = (m->flags & ~(unsigned long)(MS_BIND | MS_REC | MS_REMOUNT)) | MS_RDONLY;
		if (remount_bind(tp, fl) < 0) bail("remount %s read-only", m->dst);
		close(fd);
	}
}

static int same_path(const char *a, const char *b)
{
	/* lexically: "//a/./b/" is "/a/b" */
	for (;;) {
		while (*a == '/' || (a[0] == '.' && (a[1] == '/' || !a[1]) && (a[-1] == '/'))) a++;
		while (*b == '/' || (b[0] == '.' && (b[1] == '/' || !b[1]) && (b[-1] == '/'))) b++;
		if (!*a || !*b) return !*a && !*b;
		while (*a && *a != '/' && *a == *b) { a++; b++; }
		if ((*a && *a != '/') || (*b && *b != '/')) return 0;
	}
}

void masked_and_readonly(struct plan *p)
{
	late_readonly(p);
	for (uint32_t i = 0; i < p->nreadonly; i++) {
		const char *path = p->readonly[i];
		step("readonly path", (int)i, path);
		int fd = open_in_root(g_rootfd, path, O_PATH, 0);
		if (fd < 0) { if (errno == ENOENT) continue; bail("open readonly path %s", path); }
		int tree = sys_open_tree(fd, "", OCI_OPEN_TREE_CLONE | OCI_OPEN_TREE_CLOEXEC | AT_EMPTY_PATH | OCI_AT_RECURSIVE);
		if (tree < 0) bail("clone mount of readonly path %s", path);
		struct oci_mount_attr a = { OCI_MOUNT_ATTR_RDONLY, 0, 0, 0 };
		if (sys_mount_setattr(tree, "", AT_EMPTY_PATH | OCI_AT_RECURSIVE, &a) < 0) bail("make %s read-only", path);
		if (sys_move_mount(tree, "", fd, "", OCI_MOVE_MOUNT_F_EMPTY_PATH | OCI_MOVE_MOUNT_T_EMPTY_PATH) < 0)
			bail("mount read-only %s", path);
		close(tree);
		close(fd);
	}
	int devnull = -1;
	int shared = -1; /* runc >= 1.3.6/1.4.3: every masked directory shows the same read-only tmpfs */
	for (uint32_t i = 0; i < p->nmasked; i++) {
		const char *path = p->masked[i];
		int dup_path = 0;
		for (uint32_t j = 0; j < i && !dup_path; j++) dup_path = same_path(p->masked[j], path);
		if (dup_path) continue; /* masked once */
		step("masked path", (int)i, path);
		int fd = open_in_root(g_rootfd, path, O_PATH, 0);
		if (fd < 0) { if (errno == ENOENT) continue; bail("open masked path %s", path); }
		struct stat st;
		if (fstat(fd, &st) < 0) bail("stat masked path %s", path);
		int m;
		if (S_ISDIR(st.st_mode) && shared >= 0) {
			m = sys_open_tree(shared, "", OCI_OPEN_TREE_CLONE | OCI_OPEN_TREE_CLOEXEC | AT_EMPTY_PATH);
		} else if (S_ISDIR(st.st_mode)) {
			int fs = sys_fsopen("tmpfs", OCI_FSOPEN_CLOEXEC);
			if (fs < 0) bail("fsopen tmpfs for %s", path);
			if (sys_fsconfig(fs, OCI_FSCONFIG_SET_STRING, "source", "tmpfs", 0) < 0 ||
			    sys_fsconfig(fs, OCI_FSCONFIG_SET_FLAG, "ro", NULL, 0) < 0 ||
			    (p->mount_label && sys_fsconfig(fs, OCI_FSCONFIG_SET_STRING, "context", p->mount_label, 0) < 0) ||
			    sys_fsconfig(fs, OCI_FSCONFIG_CMD_CREATE, NULL, NULL, 0) < 0)
				bail("create tmpfs for masked path %s", path);
			m = sys_fsmount(fs, OCI_FSMOUNT_CLOEXEC, OCI_MOUNT_ATTR_RDONLY);
			close(fs);
		} else {
			if (devnull < 0) devnull = open_dev_null();
			m = sys_open_tree(devnull, "", OCI_OPEN_TREE_CLONE | OCI_OPEN_TREE_CLOEXEC | AT_EMPTY_PATH);
		}
		if (m < 0) bail("prepare mask for %s", path);
		if (sys_move_mount(m, "", fd, "", OCI_MOVE_MOUNT_F_EMPTY_PATH | OCI_MOVE_MOUNT_T_EMPTY_PATH) < 0)
			bail("mask %s", path);
		if (S_ISDIR(st.st_mode) && shared < 0) {
			/* the first masked directory's tmpfs, now attached, is the source of the others' binds */
			shared = m;
			close(fd);
			continue;
		}
		close(m);
		close(fd);
	}
	if (devnull >= 0) close(devnull);
	if (shared >= 0) close(shared);
	close(g_rootfd); /* the waiting init holds nothing but stdio, the fifo and preserved fds */
	g_rootfd = -1;
}

void write_sysctls(struct plan *p)
{
	if (!p->nsysctls) return;
	/* CVE-2025-52881: write only through a verified procfs handle, never a string path */
	int proc = open_in_root(g_rootfd >= 0 ? g_rootfd : AT_FDCWD, "/proc", O_PATH | O_DIRECTORY, OCI_RESOLVE_NO_SYMLINKS);
	if (proc < 0) bail("open /proc for sysctls");
	struct statfs sf;
	if (fstatfs(proc, &sf) < 0 || sf.f_type != PROC_SUPER_MAGIC) bailx("/proc in the container is not procfs: cannot write sysctls");
	for (uint32_t i = 0; i < p->nsysctls; i++) {
		char path[PATH_MAX];
		step("sysctl", (int)i, p->sysctls[i].a);
		snprintf(path, sizeof(path), "sys/%s", p->sysctls[i].a);
		for (char *c = path + 4; *c; c++) if (*c == '.') *c = '/';
		int fd = sys_openat2(proc, path, O_WRONLY | O_CLOEXEC, 0,
				     OCI_RESOLVE_BENEATH | OCI_RESOLVE_NO_MAGICLINKS | OCI_RESOLVE_NO_SYMLINKS | OCI_RESOLVE_NO_XDEV);
		if (fd < 0) bail("open sysctl %s", p->sysctls[i].a);
		if (fstatfs(fd, &sf) < 0 || sf.f_type != PROC_SUPER_MAGIC) bailx("sysctl %s is not on procfs", p->sysctls[i].a);
		if (write_all(fd, p->sysctls[i].b, strlen(p->sysctls[i].b)) < 0) bail("write sysctl %s=%s", p->sysctls[i].a, p->sysctls[i].b);
		close(fd);
	}
	close(proc);
}
