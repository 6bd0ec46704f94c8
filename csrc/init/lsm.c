/* lsm.c - AppArmor profile and SELinux label of the process to be exec'd.
 *
 * Both LSMs take the new label for the next execve through a file of the task's own procfs directory:
 * "exec <profile>" into attr/apparmor/exec (or the older attr/exec), the SELinux context into attr/exec.
 * Which file and which bytes is decided by the runtime (ociruntime/lsm.py, OP_LSM_ATTR); here we only make
 * sure the bytes reach the real procfs file of this very thread:
 *   - a private procfs instance (fsopen/fsmount, never attached anywhere the container can touch), or, if
 *     the kernel refuses one, the container's /proc opened without following symlinks;
 *   - either way fstatfs == PROC_SUPER_MAGIC on the directory and on the opened file, and the walk to it
 *     neither leaves that mount nor follows a magic link (CVE-2019-16884, CVE-2023-28642, CVE-2025-52881).
 * The kernel itself refuses writes to another task's attr files.
 */
#include "init.h"
#include "sys.h"
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <unistd.h>

#define PROC_SUPER_MAGIC 0x9fa0

static const char *lsm_name(uint32_t lsm) { return lsm == LSM_APPARMOR ? "AppArmor profile" : "SELinux label"; }

static int is_procfs(int fd)
{
	struct statfs sf;
	return fstatfs(fd, &sf) == 0 && sf.f_type == PROC_SUPER_MAGIC;
}

/* A procfs root fd for this process's pid namespace, the container cannot have tampered with. */
static int private_proc(void)
{
	int fs = sys_fsopen("proc", OCI_FSOPEN_CLOEXEC);
	if (fs < 0) return -1;
	/* only the pid directories: nothing else is needed (kernels before 5.8 do not know it: fine) */
	sys_fsconfig(fs, OCI_FSCONFIG_SET_STRING, "subset", "pid", 0);
	int m = -1;
	if (sys_fsconfig(fs, OCI_FSCONFIG_CMD_CREATE, NULL, NULL, 0) == 0)
		m = sys_fsmount(fs, OCI_FSMOUNT_CLOEXEC, 0);
	close(fs);
	return m;
}

static int open_procroot(const struct lsm_op *l)
{
	int root = open("/", O_PATH | O_DIRECTORY | O_CLOEXEC);
	if (root < 0) bail("open / to apply the %s", lsm_name(l->lsm));
	int dir;
	if (l->flags & LSM_F_FAKE_PROC) {
		dir = open_in_root(root, l->procroot, O_PATH | O_DIRECTORY, OCI_RESOLVE_NO_SYMLINKS);
		if (dir < 0) bail("open %s (test-only fake procfs) to apply the %s", l->procroot, lsm_name(l->lsm));
	} else {
		dir = private_proc();
		if (dir < 0) {
			dir = open_in_root(root, l->procroot, O_PATH | O_DIRECTORY, OCI_RESOLVE_NO_SYMLINKS);
			if (dir < 0) bail("open %s in the container to apply the %s", l->procroot, lsm_name(l->lsm));
		}
		if (!is_procfs(dir)) bailx("%s in the container is not procfs: cannot apply the %s", l->procroot, lsm_name(l->lsm));
	}
	close(root);
	return dir;
}

void apply_lsm_labels(struct plan *p)
{
	for (uint32_t i = 0; i < p->nlsms; i++) {
		const struct lsm_op *l = &p->lsms[i];
		const char *what = lsm_name(l->lsm);
		int dir = open_procroot(l);
		/* thread-self is an ordinary symlink ("<pid>/task/<tid>"), resolved beneath dir on the same mount */
		int fd;
		do fd = sys_openat2(dir, l->subpath, O_WRONLY | O_CLOEXEC | O_NOCTTY, 0,
				    OCI_RESOLVE_BENEATH | OCI_RESOLVE_NO_MAGICLINKS | OCI_RESOLVE_NO_XDEV);
		while (fd < 0 && errno == EAGAIN);
		if (fd < 0) bail("open %s/%s to apply the %s", l->procroot, l->subpath, what);
		if (l->flags & LSM_F_FAKE_PROC) {
			struct stat st;
			if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode))
				bailx("%s/%s (test-only fake procfs) is not a regular file", l->procroot, l->subpath);
		} else if (!is_procfs(fd)) {
			bailx("%s/%s is not on procfs: cannot apply the %s", l->procroot, l->subpath, what);
		}
		size_t n = strlen(l->value);
		ssize_t w;
		do w = write(fd, l->value, n);
		while (w < 0 && errno == EINTR);
		if (w < 0) bail("apply the %s (write \"%s\" to %s/%s)", what, l->value, l->procroot, l->subpath);
		if ((size_t)w != n) bailx("apply the %s: short write to %s/%s", what, l->procroot, l->subpath);
		close(fd);
		close(dir);
	}
}
