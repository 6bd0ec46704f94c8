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

/* Open (creating if needed) a mount target: a directory, or an empty file when the source is not a dir. */
static int mount_target(int rootfd, const char *dst, int is_dir, uint64_t resolve)
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

static void do_mount(struct mount_op *m)
{
	int copyup = (m->kind & MOUNT_COPYUP) != 0;
	m->kind &= ~MOUNT_COPYUP;
	int is_bind = m->kind == MOUNT_KIND_BIND || m->kind == MOUNT_KIND_RBIND;
	int is_dir = 1;
	uint64_t resolve = 0;
	if (is_bind) {
		struct stat st;
		if (stat(m->src, &st) < 0) bail("bind mount source %s (for %s)", m->src, m->dst);
		is_dir = S_ISDIR(st.st_mode);
	}
	/* procfs and sysfs must be mounted on a real directory, never through a symlink
	 * (CVE-2019-19921, CVE-2023-27561, CVE-2025-54867) */
	if (!is_bind && (strcmp(m->fstype, "proc") == 0 || strcmp(m->fstype, "sysfs") == 0))
		resolve = OCI_RESOLVE_NO_SYMLINKS;
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
		if (mount(m->src, tp, NULL, bf, NULL) < 0) bail("bind mount %s on %s", m->src, m->dst);
	} else {
		if (mount(*m->src ? m->src : m->fstype, tp, m->fstype, m->flags, *m->data ? m->data : NULL) < 0)
			bail("mount %s (type %s, options \"%s\") on %s", m->src, m->fstype, m->data, m->dst);
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
	if (is_bind && extra && remount_bind(tp, extra) < 0)
		bail("remount bind mount %s with flags 0x%lx", m->dst, extra);
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
		if (m->idmap_fd < 0) continue;
		int t = ioctl(m->idmap_fd, NS_GET_NSTYPE);
		if (t != CLONE_NEWUSER)
			bailx("/mounts/%u: the id mapping's fd %d is not a user namespace", m->idmap_index, m->idmap_fd);
		unsigned of = OCI_OPEN_TREE_CLONE | OCI_OPEN_TREE_CLOEXEC;
		if ((m->kind & ~MOUNT_COPYUP) == MOUNT_KIND_RBIND) of |= OCI_AT_RECURSIVE;
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
	g_test_delay_us = p->test_remount_delay_us;
	if (p->root_flags & ROOTFS_NO_MOUNTNS) {
		/* No mount namespace: the config's mounts land in the runtime's own namespace, under the
		 * rootfs only (as runc does, minus touching the propagation of "/", which would change the
		 * host's). `delete` unmounts everything below the rootfs again. */
		umask(0);
		g_rootfd = open(p->rootfs, O_PATH | O_DIRECTORY | O_CLOEXEC);
		if (g_rootfd < 0) bail("open rootfs %s", p->rootfs);
		for (uint32_t i = 0; i < p->nmounts; i++) do_mount(&p->mounts[i]);
		for (uint32_t i = 0; i < p->ndevices; i++) make_device(p, i);
		for (uint32_t i = 0; i < p->nsymlinks; i++) make_symlink(&p->symlinks[i]);
		umask(022);
		return;
	}
	umask(0);
	/* never let our mounts propagate to the host: rslave first; rootfsPropagation is applied to the new
	 * root after pivot_root (so "unbindable" does not forbid the rootfs bind, and "shared" cannot leak
	 * the container's mounts into the host's namespace) */
	if (mount(NULL, "/", NULL, MS_SLAVE | MS_REC, NULL) < 0) bail("make / rslave");
	if (p->root_propagation & MS_SHARED) parent_mount_private(p->rootfs);
	if (mount(p->rootfs, p->rootfs, NULL, MS_BIND | MS_REC, NULL) < 0) bail("bind mount rootfs %s", p->rootfs);
	g_rootfd = open(p->rootfs, O_PATH | O_DIRECTORY | O_CLOEXEC);
	if (g_rootfd < 0) bail("open rootfs %s", p->rootfs);
	for (uint32_t i = 0; i < p->nmounts; i++) do_mount(&p->mounts[i]);
	attach_device_nodes(p, g_rootfd);
	for (uint32_t i = 0; i < p->ndevices; i++) make_device(p, i);
	detach_device_nodes(p, g_rootfd);
	for (uint32_t i = 0; i < p->nsymlinks; i++) make_symlink(&p->symlinks[i]);
	/* the process cwd, created inside the root after the mounts that may contain it (runc does too) */
	for (uint32_t i = 0; i < p->nmkdirs; i++) {
		int fd = mkdir_in_root(g_rootfd, p->mkdirs[i].path, p->mkdirs[i].mode);
		if (fd < 0) bail("mkdir %s in the rootfs", p->mkdirs[i].path);
		close(fd);
	}
	umask(022);
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
	if ((p->root_propagation & ~(unsigned)MS_REC) != MS_SLAVE && mount(NULL, "/", NULL, p->root_propagation, NULL) < 0)
		bail("set rootfsPropagation 0x%x of /", p->root_propagation);
	if ((p->root_flags & ROOTFS_READONLY) && remount_bind("/", MS_RDONLY) < 0) bail("remount root read-only");
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

void masked_and_readonly(struct plan *p)
{
	for (uint32_t i = 0; i < p->nreadonly; i++) {
		const char *path = p->readonly[i];
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
	for (uint32_t i = 0; i < p->nmasked; i++) {
		const char *path = p->masked[i];
		int fd = open_in_root(g_rootfd, path, O_PATH, 0);
		if (fd < 0) { if (errno == ENOENT) continue; bail("open masked path %s", path); }
		struct stat st;
		if (fstat(fd, &st) < 0) bail("stat masked path %s", path);
		int m;
		if (S_ISDIR(st.st_mode)) {
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
		close(m);
		close(fd);
	}
	if (devnull >= 0) close(devnull);
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
