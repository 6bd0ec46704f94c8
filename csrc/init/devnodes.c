/* devnodes.c - linux.devices in a user namespace, made as without one (crun's way): mknod is denied
 * inside a user namespace, and a bind of the host's node needs one to exist at the same path. Stage-1,
 * still in the runtime's user and mount namespaces, makes each DEVICE_HOSTNODE node (major/minor, mode,
 * owner mapped to host ids by the runtime) on a private tmpfs that is never attached anywhere in the
 * host (fsopen/fsmount: a detached mount, nosuid,noexec). The container init moves that tmpfs to a
 * temporary directory below the container's /dev, binds each node onto its path (make_device), and
 * detaches and removes the temporary directory again. The tmpfs belongs to the initial user namespace,
 * so its device nodes work in the container (a filesystem mounted inside the user namespace is nodev). */
#include "init.h"
#include "sys.h"
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#define DEVNODES_DIR "/dev/.ociruntime-devnodes"

static void node_name(char *buf, size_t len, uint32_t i) { snprintf(buf, len, "n%u", i); }

void prepare_device_nodes(struct plan *p)
{
	for (uint32_t i = 0; i < p->ndevices; i++) {
		struct device_op *d = &p->devices[i];
		if (d->bind != DEVICE_HOSTNODE) continue;
		if (p->devnodes_fd < 0) {
			int fs = sys_fsopen("tmpfs", OCI_FSOPEN_CLOEXEC);
			if (fs < 0) bail("fsopen tmpfs for device nodes");
			if (sys_fsconfig(fs, OCI_FSCONFIG_SET_STRING, "source", "tmpfs", 0) < 0 ||
			    sys_fsconfig(fs, OCI_FSCONFIG_SET_STRING, "mode", "0755", 0) < 0 ||
			    sys_fsconfig(fs, OCI_FSCONFIG_CMD_CREATE, NULL, NULL, 0) < 0)
				bail("create the tmpfs for device nodes");
			p->devnodes_fd = sys_fsmount(fs, OCI_FSMOUNT_CLOEXEC, OCI_MOUNT_ATTR_NOSUID | OCI_MOUNT_ATTR_NOEXEC);
			if (p->devnodes_fd < 0) bail("mount the tmpfs for device nodes");
			close(fs);
		}
		char name[16];
		node_name(name, sizeof(name), i);
		if (mknodat(p->devnodes_fd, name, d->mode, makedev(d->major, d->minor)) < 0)
			bail("mknod device %s (outside the user namespace)", d->path);
		if (fchownat(p->devnodes_fd, name, d->uid, d->gid, AT_SYMLINK_NOFOLLOW) < 0)
			bail("chown device %s to %u:%u", d->path, d->uid, d->gid);
		if (fchmodat(p->devnodes_fd, name, d->mode & 07777, 0) < 0) bail("chmod device %s", d->path);
	}
}

void attach_device_nodes(struct plan *p, int rootfd)
{
	if (p->devnodes_fd < 0) return;
	int dev = open_in_root(rootfd, "/dev", O_PATH | O_DIRECTORY, OCI_RESOLVE_NO_SYMLINKS);
	if (dev < 0) bail("open /dev for device nodes");
	char dp[64];
	snprintf(dp, sizeof(dp), "/proc/self/fd/%d", dev);
	int dfd = open(dp, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	close(dev);
	if (dfd < 0) bail("open /dev for device nodes");
	if (mkdirat(dfd, DEVNODES_DIR + 5, 0700) < 0) bail("mkdir %s", DEVNODES_DIR);
	int tfd = openat(dfd, DEVNODES_DIR + 5, O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	close(dfd);
	if (tfd < 0) bail("open %s", DEVNODES_DIR);
	if (sys_move_mount(p->devnodes_fd, "", tfd, "", OCI_MOVE_MOUNT_F_EMPTY_PATH | OCI_MOVE_MOUNT_T_EMPTY_PATH) < 0)
		bail("attach the device nodes at %s", DEVNODES_DIR);
	close(tfd);
	/* from now on the fd names the attached tmpfs' root (a detached mount's fd follows it) */
}

int hostnode_fd(struct plan *p, uint32_t index)
{
	char name[16];
	node_name(name, sizeof(name), index);
	return openat(p->devnodes_fd, name, O_PATH | O_NOFOLLOW | O_CLOEXEC);
}

void detach_device_nodes(struct plan *p, int rootfd)
{
	if (p->devnodes_fd < 0) return;
	char fp[64];
	snprintf(fp, sizeof(fp), "/proc/self/fd/%d", p->devnodes_fd);
	if (umount2(fp, MNT_DETACH) < 0) bail("detach %s", DEVNODES_DIR);
	close(p->devnodes_fd);
	p->devnodes_fd = -1;
	int dev = open_in_root(rootfd, "/dev", O_PATH | O_DIRECTORY, OCI_RESOLVE_NO_SYMLINKS);
	if (dev < 0) bail("open /dev");
	char dp[64];
	snprintf(dp, sizeof(dp), "/proc/self/fd/%d", dev);
	int dfd = open(dp, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	close(dev);
	if (dfd < 0 || unlinkat(dfd, DEVNODES_DIR + 5, AT_REMOVEDIR) < 0) bail("remove %s", DEVNODES_DIR);
	close(dfd);
}
